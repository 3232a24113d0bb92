/**
 * The station's side of RFC 9483's messages: what a unit's request asks for (its serial and
 * key request), and the answers (ip/cp, pkiConf, genp, error) built from the request's header.
 */
import { AsnConvert, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Certificate, GeneralName, Name } from "@peculiar/asn1-x509";
import { createHash, randomBytes } from "node:crypto";
import { x509, type SignedKeyRequest } from "../../pki/index.js";
import { DerSequence, PKIMessageDer } from "./der.js";
import {
  ErrorMsgContent,
  GenMsgContent,
  InfoTypeAndValue,
  PKIBody,
  PKIFailureInfo,
  PKIFreeText,
  PKIHeader,
  PKIMessage,
  PKIStatusInfo,
  PKI_STATUS,
  PVNO_CMP2000,
  type PKIFailure,
} from "./asn1.js";
import type { CertReqMsg } from "./crmf.js";

const OID_SERIAL_NUMBER = "2.5.4.5";
/** RFC 9480 §2.6 id-it-caCerts: the CA certificates a genm asks for. */
const ID_IT_CA_CERTS = "1.3.6.1.5.5.7.4.17";

/** What the unit asks for in an ir, cr or p10cr: its serial and its key request with proof of possession. */
export interface EnrolRequest {
  kind: "ir" | "cr" | "p10cr";
  serial: string;
  keyRequest: { csr: string } | { signedRequest: SignedKeyRequest };
}

/**
 * A unit's refusal reason as a station code and the PKIFailureInfo RFC 4210 §5.2.3 names for
 * it. Thrown while reading a request; the line's own refusals are mapped by `failureFor`.
 */
export class CmpRefusal extends Error {
  constructor(
    readonly failure: PKIFailure,
    message: string,
  ) {
    super(message);
  }
}

function subjectSerials(name: Name | undefined): string[] {
  return (name ?? []).flatMap((rdn) => rdn.filter((atv) => atv.type === OID_SERIAL_NUMBER).map((atv) => atv.value.toString()));
}

function oneSerial(name: Name | undefined): string {
  const serials = subjectSerials(name);
  if (serials.length !== 1 || !serials[0]) {
    throw new CmpRefusal("badCertTemplate", "the requested subject must carry exactly one serialNumber, the unit's serial (-subject /serialNumber=SN/CN=...)");
  }
  return serials[0];
}

/** RFC 9483 §4.1.1/§4.1.4: one request with a signature POP (RFC 4211 §4.1, without poposkInput). */
function fromCrmf(kind: "ir" | "cr", messages: CertReqMsg[]): EnrolRequest {
  if (messages.length !== 1) throw new CmpRefusal("badRequest", `an ${kind} must carry exactly one certificate request, not ${messages.length}`);
  const msg = messages[0]!;
  const template = msg.certReq.certTemplate;
  if (msg.certReq.certReqId !== 0) throw new CmpRefusal("badRequest", "the certReqId must be 0 (RFC 9483 §4.1.1)");
  if (!template.publicKey) throw new CmpRefusal("badCertTemplate", "the certificate template has no public key: the unit generates its own key (-newkey)");
  const pop = msg.popo?.signature;
  if (!pop || pop.poposkInput || !msg.certReqRaw) throw new CmpRefusal("badPOP", "the request has no signature proof of possession over its CertRequest (RFC 4211 §4.1)");
  const serial = oneSerial(template.subject);
  return {
    kind,
    serial,
    keyRequest: {
      signedRequest: {
        signed: new Uint8Array(msg.certReqRaw),
        spki: new Uint8Array(AsnConvert.serialize(template.publicKey)),
        signatureAlgorithm: { algorithm: pop.algorithmIdentifier.algorithm, parameters: pop.algorithmIdentifier.parameters ? new Uint8Array(pop.algorithmIdentifier.parameters) : undefined },
        signature: new Uint8Array(pop.signature),
        subjectSerials: [serial],
      },
    },
  };
}

/** The enrolment a request asks for, or a CmpRefusal naming what is wrong with it. */
export function enrolRequestOf(message: PKIMessage): EnrolRequest {
  const body = message.body;
  if (body.ir) return fromCrmf("ir", [...body.ir]);
  if (body.cr) return fromCrmf("cr", [...body.cr]);
  if (body.p10cr) {
    const der = AsnConvert.serialize(body.p10cr);
    return { kind: "p10cr", serial: oneSerial(body.p10cr.certificationRequestInfo.subject), keyRequest: { csr: x509.PemConverter.encode(der, "CERTIFICATE REQUEST") } };
  }
  throw new CmpRefusal("badRequest", "not an ir, cr or p10cr");
}

/** The station's refusal codes (pipeline, serials, pki, station) as PKIFailureInfo. */
const FAILURES: Record<string, PKIFailure> = {
  CSR_SIGNATURE: "badPOP",
  CSR_INVALID: "badCertTemplate",
  CSR_KEY_REFUSED: "badCertTemplate",
  CSR_SERIAL_MISMATCH: "badCertTemplate",
  SERIAL_SYNTAX: "badCertTemplate",
  SERIAL_UNKNOWN: "notAuthorized",
  SERIAL_TAKEN: "notAuthorized",
  SERIAL_SCRAPPED: "notAuthorized",
  ALLOCATION_WINDOW: "notAuthorized",
  ALLOCATION_STATION: "notAuthorized",
  SERIAL_PROVISIONED: "duplicateCertReq",
  SERIAL_RESERVED: "duplicateCertReq",
  SERIAL_BUSY: "duplicateCertReq",
  KEY_REUSED: "duplicateCertReq",
  UNIT_TIMEOUT: "systemUnavail",
  LINE_STOPPED: "systemUnavail",
  HSM_UNREACHABLE: "systemUnavail",
};

export function failureFor(code: string): PKIFailure {
  return FAILURES[code] ?? "systemFailure";
}

/** The header of an answer: RFC 9483 §3.1, the request's transactionID, its senderNonce as our recipNonce, a fresh senderNonce. */
export function answerHeader(request: PKIHeader | undefined, sender: Name): PKIHeader {
  return new PKIHeader({
    pvno: request?.pvno === 3 ? 3 : PVNO_CMP2000,
    sender: new GeneralName({ directoryName: sender }),
    recipient: request?.sender ?? new GeneralName({ directoryName: new Name() }),
    messageTime: new Date(),
    senderKID: request?.senderKID,
    transactionID: request?.transactionID,
    senderNonce: new OctetString(randomBytes(16)),
    recipNonce: request?.senderNonce,
  });
}

/** RFC 4210 §5.3.21: an error message with one failure bit and a one-line reason. */
export function errorBody(failure: PKIFailure, text: string): PKIBody {
  return new PKIBody({
    error: new ErrorMsgContent({
      pKIStatusInfo: new PKIStatusInfo({ status: PKI_STATUS.rejection, statusString: new PKIFreeText([text.slice(0, 300)]), failInfo: PKIFailureInfo.of(failure) }),
    }),
  });
}

/** RFC 4210 §5.3.4 CertOrEncCert with the certificate kept as DER (the answer's, never parsed). */
@AsnType({ type: AsnTypeTypes.Choice })
class CertOrEncCertDer {
  @AsnProp({ type: AsnPropTypes.Any, context: 0 })
  certificate?: ArrayBuffer;
}

@AsnType({ type: AsnTypeTypes.Sequence })
class CertifiedKeyPairDer {
  @AsnProp({ type: CertOrEncCertDer })
  certOrEncCert = new CertOrEncCertDer();
}

@AsnType({ type: AsnTypeTypes.Sequence })
class CertResponseDer {
  @AsnProp({ type: AsnPropTypes.Integer })
  certReqId = 0;

  @AsnProp({ type: PKIStatusInfo })
  status = new PKIStatusInfo();

  @AsnProp({ type: CertifiedKeyPairDer, optional: true })
  certifiedKeyPair?: CertifiedKeyPairDer;
}

@AsnType({ type: AsnTypeTypes.Sequence })
class CertRepMessageDer {
  @AsnProp({ type: DerSequence, context: 1, optional: true })
  caPubs?: DerSequence;

  @AsnProp({ type: CertResponseDer, repeated: "sequence" })
  response: CertResponseDer[] = [];
}

/** PKIBody's ip [1] and cp [3] alternatives over CertRepMessageDer: encodes as PKIBody does. */
@AsnType({ type: AsnTypeTypes.Choice })
class CertRepBodyDer {
  @AsnProp({ type: CertRepMessageDer, context: 1 })
  ip?: CertRepMessageDer;

  @AsnProp({ type: CertRepMessageDer, context: 3 })
  cp?: CertRepMessageDer;
}

/**
 * RFC 9483 §4.1.1: the DER of an ip or cp body with the certificate; caPubs only the vendor
 * root (trusted through the MAC, §4.1.1 caPubs). Built from the certificates' DER as they are,
 * since parsing and serializing them again was most of the station's work per answer.
 */
export function certRepBody(kind: EnrolRequest["kind"], certificateDer: Uint8Array, rootDer: ArrayBuffer | undefined): ArrayBuffer {
  const certifiedKeyPair = new CertifiedKeyPairDer();
  certifiedKeyPair.certOrEncCert.certificate = new Uint8Array(certificateDer).buffer;
  const response = Object.assign(new CertResponseDer(), { certReqId: kind === "p10cr" ? -1 : 0, status: new PKIStatusInfo({ status: PKI_STATUS.accepted }), certifiedKeyPair });
  const rep = Object.assign(new CertRepMessageDer(), { caPubs: rootDer ? new DerSequence([rootDer]) : undefined, response: [response] });
  return AsnConvert.serialize(Object.assign(new CertRepBodyDer(), kind === "ir" ? { ip: rep } : { cp: rep }));
}

/** A certificate's outer SEQUENCE with its TBS left as DER: its signature algorithm at little cost. */
@AsnType({ type: AsnTypeTypes.Sequence })
class SignedCertificate {
  @AsnProp({ type: AsnPropTypes.Any })
  tbsCertificate: ArrayBuffer = new ArrayBuffer(0);

  @AsnProp({ type: AlgorithmIdentifier })
  signatureAlgorithm = new AlgorithmIdentifier();

  @AsnProp({ type: AsnPropTypes.BitString })
  signature: ArrayBuffer = new ArrayBuffer(0);
}

/** RFC 9481 §2 signature algorithms to the hash each uses. */
const SIGNATURE_HASHES: Record<string, string> = {
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
};

/** RFC 4210 §5.3.18 (pvno 2): a certConf's certHash, the certificate hashed with its signature algorithm's hash. */
export function certHash(certificateDer: Uint8Array): Buffer {
  const alg = AsnConvert.parse(certificateDer, SignedCertificate).signatureAlgorithm.algorithm;
  return createHash(SIGNATURE_HASHES[alg] ?? "sha256").update(certificateDer).digest();
}

/** CMPCertificate list for genp's caCerts (RFC 9480 §4.3.1). */
@AsnType({ type: AsnTypeTypes.Sequence })
class CaCertsValue {
  @AsnProp({ type: Certificate, repeated: "sequence" })
  certs: Certificate[] = [];
}

/** RFC 9483 §4.3.1: genp; the CA certificates are given when asked for by id-it-caCerts, else the answer is empty. */
export function genpBody(request: PKIMessage, caCerts: Certificate[]): PKIBody {
  const asked = (request.body.genm ?? []).some((itav) => itav.infoType === ID_IT_CA_CERTS);
  const content = asked ? [new InfoTypeAndValue({ infoType: ID_IT_CA_CERTS, infoValue: AsnConvert.serialize(Object.assign(new CaCertsValue(), { certs: caCerts })) })] : [];
  return new PKIBody({ genp: new GenMsgContent(content) });
}

/** An ip or cp as the unit reads it: the certificates as DER, never parsed here (the unit checks its own). */
export interface CertRepDer {
  certReqId: number;
  status: PKIStatusInfo;
  certificate?: ArrayBuffer;
  caPubs: ArrayBuffer[];
}

/** The ip or cp in a body's DER, or undefined if the body is something else. */
export function certRepOf(bodyDer: ArrayBuffer): CertRepDer | undefined {
  let body: CertRepBodyDer;
  try {
    body = AsnConvert.parse(bodyDer, CertRepBodyDer);
  } catch {
    return undefined;
  }
  const rep = body.ip ?? body.cp;
  const response = rep?.response.length === 1 ? rep.response[0]! : undefined;
  if (!rep || !response) return undefined;
  return { certReqId: response.certReqId, status: response.status, certificate: response.certifiedKeyPair?.certOrEncCert.certificate, caPubs: [...(rep.caPubs ?? [])] };
}

/**
 * A PKIMessage as header, raw body, protection and extraCerts as DER (for verifyPbm), whatever
 * its body type; undefined if it is no PKIMessage at all.
 */
export function looseMessage(der: Uint8Array): { message: PKIMessage; extraCerts: ArrayBuffer[] } | undefined {
  let loose: PKIMessageDer;
  let header: PKIHeader;
  try {
    loose = AsnConvert.parse(der, PKIMessageDer);
    header = AsnConvert.parse(loose.header, PKIHeader);
  } catch {
    return undefined;
  }
  const message = new PKIMessage({ header, protection: loose.protection });
  message.headerRaw = loose.header;
  message.bodyRaw = loose.body;
  return { message, extraCerts: [...(loose.extraCerts ?? [])] };
}
