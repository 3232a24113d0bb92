/**
 * The station's side of RFC 9483's messages: what a unit's request asks for (its serial and
 * key request), and the answers (ip/cp, pkiConf, genp, error) built from the request's header.
 */
import { AsnConvert, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes, OctetString } from "@peculiar/asn1-schema";
import { Certificate, GeneralName, Name } from "@peculiar/asn1-x509";
import { randomBytes } from "node:crypto";
import { x509, type SignedKeyRequest } from "../../pki/index.js";
import {
  CertifiedKeyPair,
  CertOrEncCert,
  CertRepMessage,
  CertResponse,
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

/** RFC 9483 §4.1.1: ip or cp with the certificate; caPubs only the vendor root (trusted through the MAC, §4.1.1 caPubs). */
export function certRepBody(kind: EnrolRequest["kind"], certificateDer: Uint8Array, root: Certificate | undefined): PKIBody {
  const rep = new CertRepMessage({
    caPubs: root ? [root] : undefined,
    response: [
      new CertResponse({
        certReqId: kind === "p10cr" ? -1 : 0,
        status: new PKIStatusInfo({ status: PKI_STATUS.accepted }),
        certifiedKeyPair: new CertifiedKeyPair({ certOrEncCert: new CertOrEncCert({ certificate: AsnConvert.parse(certificateDer, Certificate) }) }),
      }),
    ],
  });
  return new PKIBody(kind === "ir" ? { ip: rep } : { cp: rep });
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

/** A loose reading of a PKIMessage whose body is a type the station does not speak: enough to check its MAC and answer it. */
@AsnType({ type: AsnTypeTypes.Sequence })
class LooseMessage {
  @AsnProp({ type: PKIHeader, raw: true })
  header = new PKIHeader();
  headerRaw?: ArrayBuffer;

  @AsnProp({ type: AsnPropTypes.Any })
  body: ArrayBuffer = new ArrayBuffer(0);

  @AsnProp({ type: AsnPropTypes.BitString, context: 0, optional: true })
  protection?: ArrayBuffer;

  @AsnProp({ type: AsnPropTypes.Any, context: 1, optional: true })
  extraCerts?: ArrayBuffer;
}

/** A PKIMessage with a body the station does not read, as header, raw body and protection (for verifyPbm); undefined if it is no PKIMessage at all. */
export function unknownMessage(der: Uint8Array): PKIMessage | undefined {
  let loose: LooseMessage;
  try {
    loose = AsnConvert.parse(der, LooseMessage);
  } catch {
    return undefined;
  }
  const message = new PKIMessage({ header: loose.header, protection: loose.protection });
  message.headerRaw = loose.headerRaw;
  message.bodyRaw = loose.body;
  return message;
}
