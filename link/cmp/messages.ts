/**
 * The station's side of RFC 9483's messages: what a unit's request asks for (its serial and
 * key request), and the answers (ip/cp, pkiConf, genp, error) built from the request's header;
 * and what a unit reads of an answer (certRepOf, errorOf).
 */
import { createHash, randomBytes } from "node:crypto";
import { CertificateModel, CertificationRequestModel, SubjectPublicKeyInfoModel, arcs, oid, serialNumbers, x509, type NameDer, type SignedKeyRequest } from "../../pki/index.js";
import {
  CertConfirmContentModel,
  CertRepMessageModel,
  CertificatesModel,
  ErrorMsgContentModel,
  GenMsgContentModel,
  PKI_STATUS,
  PVNO_CMP2000,
  PVNO_CMP2021,
  bodyDer,
  decodeContent,
  decodeContentWithIds,
  failureInfo,
  failuresOf,
  intDer,
  intOf,
  type CertStatusDer,
  type CmpHeader,
  type CmpMessage,
  type PKIFailure,
} from "./models.js";
import { certReqMessagesOf, type CertReqMsgDer } from "./crmf.js";

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

function oneSerial(name: NameDer | undefined): string {
  let serials: string[];
  try {
    serials = name ? serialNumbers(name) : [];
  } catch {
    serials = [];
  }
  if (serials.length !== 1 || !serials[0]) {
    throw new CmpRefusal("badCertTemplate", "the requested subject must carry exactly one serialNumber, the unit's serial (-subject /serialNumber=SN/CN=...)");
  }
  return serials[0];
}

/** RFC 9483 §4.1.1/§4.1.4: one request with a signature POP (RFC 4211 §4.1, without poposkInput). */
function fromCrmf(kind: "ir" | "cr", messages: CertReqMsgDer[]): EnrolRequest {
  if (messages.length !== 1) throw new CmpRefusal("badRequest", `an ${kind} must carry exactly one certificate request, not ${messages.length}`);
  const msg = messages[0]!;
  const template = msg.template;
  if (msg.certReqId !== 0) throw new CmpRefusal("badRequest", "the certReqId must be 0 (RFC 9483 §4.1.1)");
  if (!template.publicKey) throw new CmpRefusal("badCertTemplate", "the certificate template has no public key: the unit generates its own key (-newkey)");
  const pop = msg.popo?.type === "signature" ? msg.popo.value : undefined;
  if (!pop || pop.poposkInput !== undefined || pop.signature.unused !== 0) throw new CmpRefusal("badPOP", "the request has no signature proof of possession over its CertRequest (RFC 4211 §4.1)");
  const serial = oneSerial(template.subject);
  return {
    kind,
    serial,
    keyRequest: {
      signedRequest: {
        signed: msg.certReqDer,
        // The template's [6] IMPLICIT key, written again as the SubjectPublicKeyInfo it is.
        spki: SubjectPublicKeyInfoModel.encode(template.publicKey, "der"),
        signatureAlgorithm: { algorithm: oid(pop.algorithmIdentifier.algorithm), parameters: pop.algorithmIdentifier.parameters },
        signature: pop.signature.data,
        subjectSerials: [serial],
      },
    },
  };
}

/** The enrolment an ir, cr or p10cr asks for, or a CmpRefusal naming what is wrong with it; CMP_MALFORMED if its body is not what its tag says. */
export function enrolRequestOf(message: CmpMessage): EnrolRequest {
  const kind = message.bodyType;
  if (kind === "ir" || kind === "cr") return fromCrmf(kind, certReqMessagesOf(message));
  if (kind !== "p10cr") throw new CmpRefusal("badRequest", "not an ir, cr or p10cr");
  // The CSR goes to the line as it came; only its subject is read here, for the serial.
  const csr = decodeContent(message, CertificationRequestModel);
  return { kind, serial: oneSerial(csr.info.subject), keyRequest: { csr: x509.PemConverter.encode(new Uint8Array(message.content), "CERTIFICATE REQUEST") } };
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
export function answerHeader(request: CmpHeader | undefined, sender: NameDer): CmpHeader {
  return {
    pvno: request?.pvno === PVNO_CMP2021 ? PVNO_CMP2021 : PVNO_CMP2000,
    sender: { type: "directoryName", value: sender },
    recipient: request?.sender ?? { type: "directoryName", value: [] },
    messageTime: Date.now(),
    senderKID: request?.senderKID,
    transactionID: request?.transactionID,
    senderNonce: randomBytes(16),
    recipNonce: request?.senderNonce,
  };
}

/** RFC 4210 §5.3.21: an error message's body with one failure bit and a one-line reason. */
export function errorBody(failure: PKIFailure, text: string): Buffer {
  const status = { status: PKI_STATUS.rejection, statusString: [text.slice(0, 300)], failInfo: failureInfo(failure) };
  return bodyDer("error", ErrorMsgContentModel.encode({ pKIStatusInfo: status }, "der"));
}

/**
 * RFC 9483 §4.1.1: the DER of an ip or cp body with the certificate; caPubs only the vendor
 * root (trusted through the MAC, §4.1.1 caPubs). The certificates go in as the DER they are.
 */
export function certRepBody(kind: EnrolRequest["kind"], certificateDer: Buffer, rootDer: Buffer | undefined): Buffer {
  const response = { certReqId: intDer(kind === "p10cr" ? -1 : 0), status: { status: PKI_STATUS.accepted }, certifiedKeyPair: { certOrEncCert: { type: "certificate" as const, value: certificateDer } } };
  return bodyDer(kind === "ir" ? "ip" : "cp", CertRepMessageModel.encode({ caPubs: rootDer ? [rootDer] : undefined, response: [response] }, "der"));
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
export function certHash(certificateDer: Buffer): Buffer {
  const alg = oid(CertificateModel.decode(certificateDer, "der").signatureAlgorithm.algorithm);
  return createHash(SIGNATURE_HASHES[alg] ?? "sha256").update(certificateDer).digest();
}

/** RFC 4210 §5.3.18: a certConf's body confirming (or, with `rejected`, rejecting) the one certificate of `certReqId`. */
export function certConfBody(certificateDer: Buffer, certReqId: number, rejected?: string): Buffer {
  const status: CertStatusDer = { certHash: certHash(certificateDer), certReqId: intDer(certReqId) };
  if (rejected !== undefined) status.statusInfo = { status: PKI_STATUS.rejection, statusString: [rejected.slice(0, 200)] };
  return bodyDer("certConf", CertConfirmContentModel.encode([status], "der"));
}

/** RFC 9483 §4.3.1: genp; the CA certificates are given when asked for by id-it-caCerts, else the answer is empty. */
export function genpBody(request: CmpMessage, caCerts: Buffer[]): Buffer {
  const asked = decodeContent(request, GenMsgContentModel).some((itav) => oid(itav.infoType) === ID_IT_CA_CERTS);
  const content = asked ? [{ infoType: arcs(ID_IT_CA_CERTS), infoValue: CertificatesModel.encode(caCerts, "der") }] : [];
  return bodyDer("genp", GenMsgContentModel.encode(content, "der"));
}

/** An ip or cp as the unit reads it: its certificate as DER, never parsed here (the unit checks its own). */
export interface CertRepDer {
  certReqId: number;
  status: number;
  certificate?: Buffer;
}

/** The one response of an ip or cp, or undefined if the body is something else; CMP_MALFORMED if it is no CertRepMessage. */
export function certRepOf(message: CmpMessage): CertRepDer | undefined {
  if (message.bodyType !== "ip" && message.bodyType !== "cp") return undefined;
  const { value: rep, ids } = decodeContentWithIds(message, CertRepMessageModel, "response/certReqId");
  const response = rep.response.length === 1 ? rep.response[0]! : undefined;
  if (!response) return undefined;
  return { certReqId: ids[0]!, status: intOf(response.status.status), certificate: response.certifiedKeyPair?.certOrEncCert.value };
}

/** An error message's failures and text, or undefined if the body is something else; CMP_MALFORMED if it is no ErrorMsgContent. */
export function errorOf(message: CmpMessage): { failures: PKIFailure[]; text: string } | undefined {
  if (message.bodyType !== "error") return undefined;
  const status = decodeContent(message, ErrorMsgContentModel).pKIStatusInfo;
  return { failures: failuresOf(status.failInfo), text: status.statusString?.join("; ") ?? "" };
}

/** The CertStatus entries of a certConf, each certReqId read signed, or CMP_MALFORMED. */
export function certStatusesOf(message: CmpMessage): Array<CertStatusDer & { certReqId: number }> {
  const { value, ids } = decodeContentWithIds(message, CertConfirmContentModel, "certReqId");
  return value.map((status, i) => ({ ...status, certReqId: ids[i]! }));
}
