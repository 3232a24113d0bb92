/**
 * RFC 4210 CMP as updated by RFC 9480: the PKIMessage a unit and the station exchange. The
 * module is EXPLICIT TAGS, so every [n] here wraps its type. Declared with @peculiar/asn1-schema,
 * reusing the X.509, CSR and CRMF types rather than walking DER by hand.
 */
import { AsnArray, AsnConvert, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes, BitString, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Certificate, GeneralName } from "@peculiar/asn1-x509";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { UnitError } from "../errors.js";
import { CertReqMessages } from "./crmf.js";

/** RFC 9480 §2.20: pvno is cmp2000 (2), or cmp2021 (3) when a message needs RFC 9480's additions. */
export const PVNO_CMP2000 = 2;
export const PVNO_CMP2021 = 3;
/** RFC 4210 §5.1.3.1: id-PasswordBasedMac. */
export const ID_PASSWORD_BASED_MAC = "1.2.840.113533.7.66.13";

/** PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: AsnPropTypes.Utf8String })
export class PKIFreeText extends AsnArray<string> {
  constructor(items?: string[]) {
    super(items);
    Object.setPrototypeOf(this, PKIFreeText.prototype);
  }
}

/** RFC 4210 §5.3.19: InfoTypeAndValue ::= SEQUENCE { infoType OBJECT IDENTIFIER, infoValue ANY DEFINED BY infoType OPTIONAL } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class InfoTypeAndValue {
  @AsnProp({ type: AsnPropTypes.ObjectIdentifier })
  infoType = "";

  @AsnProp({ type: AsnPropTypes.Any, optional: true })
  infoValue?: ArrayBuffer;

  constructor(params: Partial<InfoTypeAndValue> = {}) {
    Object.assign(this, params);
  }
}

/** GenMsgContent and GenRepContent ::= SEQUENCE OF InfoTypeAndValue (RFC 4210 §5.3.19-20). */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: InfoTypeAndValue })
export class GenMsgContent extends AsnArray<InfoTypeAndValue> {
  constructor(items?: InfoTypeAndValue[]) {
    super(items);
    Object.setPrototypeOf(this, GenMsgContent.prototype);
  }
}

/** RFC 4210 §5.1.1: PKIHeader. sender/recipient are GeneralNames, often an empty directoryName. */
@AsnType({ type: AsnTypeTypes.Sequence })
export class PKIHeader {
  @AsnProp({ type: AsnPropTypes.Integer })
  pvno = PVNO_CMP2000;

  @AsnProp({ type: GeneralName })
  sender = new GeneralName();

  @AsnProp({ type: GeneralName })
  recipient = new GeneralName();

  @AsnProp({ type: AsnPropTypes.GeneralizedTime, context: 0, optional: true })
  messageTime?: Date;

  @AsnProp({ type: AlgorithmIdentifier, context: 1, optional: true })
  protectionAlg?: AlgorithmIdentifier;

  @AsnProp({ type: OctetString, context: 2, optional: true })
  senderKID?: OctetString;

  @AsnProp({ type: OctetString, context: 3, optional: true })
  recipKID?: OctetString;

  @AsnProp({ type: OctetString, context: 4, optional: true })
  transactionID?: OctetString;

  @AsnProp({ type: OctetString, context: 5, optional: true })
  senderNonce?: OctetString;

  @AsnProp({ type: OctetString, context: 6, optional: true })
  recipNonce?: OctetString;

  @AsnProp({ type: PKIFreeText, context: 7, optional: true })
  freeText?: PKIFreeText;

  @AsnProp({ type: InfoTypeAndValue, context: 8, repeated: "sequence", optional: true })
  generalInfo?: InfoTypeAndValue[];

  constructor(params: Partial<PKIHeader> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4210 §5.2.3: PKIFailureInfo ::= BIT STRING, bit numbers as named there. */
export const PKI_FAILURE_BITS = {
  badAlg: 0,
  badMessageCheck: 1,
  badRequest: 2,
  badTime: 3,
  badCertId: 4,
  badDataFormat: 5,
  wrongAuthority: 6,
  incorrectData: 7,
  missingTimeStamp: 8,
  badPOP: 9,
  certRevoked: 10,
  certConfirmed: 11,
  wrongIntegrity: 12,
  badRecipientNonce: 13,
  timeNotAvailable: 14,
  unacceptedPolicy: 15,
  unacceptedExtension: 16,
  addInfoNotAvailable: 17,
  badSenderNonce: 18,
  badCertTemplate: 19,
  signerNotTrusted: 20,
  transactionIdInUse: 21,
  unsupportedVersion: 22,
  notAuthorized: 23,
  systemUnavail: 24,
  systemFailure: 25,
  duplicateCertReq: 26,
} as const;
export type PKIFailure = keyof typeof PKI_FAILURE_BITS;

/** The named-bit BIT STRING; DER drops trailing zero bits, which BitString.fromNumber does. */
export class PKIFailureInfo extends BitString {
  static of(...failures: PKIFailure[]): PKIFailureInfo {
    const info = new PKIFailureInfo();
    info.fromNumber(failures.reduce((n, f) => n | (1 << PKI_FAILURE_BITS[f]), 0));
    return info;
  }

  failures(): PKIFailure[] {
    const n = this.toNumber();
    return (Object.keys(PKI_FAILURE_BITS) as PKIFailure[]).filter((f) => (n >> PKI_FAILURE_BITS[f]) & 1);
  }
}

/** RFC 4210 §5.2.3: PKIStatus. */
export const PKI_STATUS = { accepted: 0, grantedWithMods: 1, rejection: 2, waiting: 3, revocationWarning: 4, revocationNotification: 5, keyUpdateWarning: 6 } as const;

/** RFC 4210 §5.2.3: PKIStatusInfo ::= SEQUENCE { status PKIStatus, statusString PKIFreeText OPTIONAL, failInfo PKIFailureInfo OPTIONAL } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class PKIStatusInfo {
  @AsnProp({ type: AsnPropTypes.Integer })
  status: number = PKI_STATUS.accepted;

  @AsnProp({ type: PKIFreeText, optional: true })
  statusString?: PKIFreeText;

  @AsnProp({ type: PKIFailureInfo, optional: true })
  failInfo?: PKIFailureInfo;

  constructor(params: Partial<PKIStatusInfo> = {}) {
    Object.assign(this, params);
  }
}

/**
 * RFC 4210 §5.3.4: CertOrEncCert ::= CHOICE { certificate [0] CMPCertificate, encryptedCert [1] EncryptedKey }.
 * CMPCertificate's one alternative is an X.509 Certificate, which encodes as itself; an encrypted
 * certificate (for keys the CA generated) stays opaque.
 */
@AsnType({ type: AsnTypeTypes.Choice })
export class CertOrEncCert {
  @AsnProp({ type: Certificate, context: 0 })
  certificate?: Certificate;

  @AsnProp({ type: AsnPropTypes.Any, context: 1 })
  encryptedCert?: ArrayBuffer;

  constructor(params: Partial<CertOrEncCert> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4210 §5.3.4: CertifiedKeyPair ::= SEQUENCE { certOrEncCert, privateKey [0] OPTIONAL, publicationInfo [1] OPTIONAL } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class CertifiedKeyPair {
  @AsnProp({ type: CertOrEncCert })
  certOrEncCert = new CertOrEncCert();

  @AsnProp({ type: AsnPropTypes.Any, context: 0, optional: true })
  privateKey?: ArrayBuffer;

  @AsnProp({ type: AsnPropTypes.Any, context: 1, optional: true })
  publicationInfo?: ArrayBuffer;

  constructor(params: Partial<CertifiedKeyPair> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4210 §5.3.4: CertResponse ::= SEQUENCE { certReqId INTEGER, status PKIStatusInfo, certifiedKeyPair OPTIONAL, rspInfo OCTET STRING OPTIONAL } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class CertResponse {
  @AsnProp({ type: AsnPropTypes.Integer })
  certReqId = 0;

  @AsnProp({ type: PKIStatusInfo })
  status = new PKIStatusInfo();

  @AsnProp({ type: CertifiedKeyPair, optional: true })
  certifiedKeyPair?: CertifiedKeyPair;

  @AsnProp({ type: OctetString, optional: true })
  rspInfo?: OctetString;

  constructor(params: Partial<CertResponse> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4210 §5.3.4: CertRepMessage ::= SEQUENCE { caPubs [1] SEQUENCE OF CMPCertificate OPTIONAL, response SEQUENCE OF CertResponse } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class CertRepMessage {
  @AsnProp({ type: Certificate, context: 1, repeated: "sequence", optional: true })
  caPubs?: Certificate[];

  @AsnProp({ type: CertResponse, repeated: "sequence" })
  response: CertResponse[] = [];

  constructor(params: Partial<CertRepMessage> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4210 §5.3.18 + RFC 9480 §2.10: CertStatus ::= SEQUENCE { certHash OCTET STRING, certReqId INTEGER, statusInfo OPTIONAL, hashAlg [0] OPTIONAL } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class CertStatus {
  @AsnProp({ type: OctetString })
  certHash = new OctetString();

  @AsnProp({ type: AsnPropTypes.Integer })
  certReqId = 0;

  @AsnProp({ type: PKIStatusInfo, optional: true })
  statusInfo?: PKIStatusInfo;

  @AsnProp({ type: AlgorithmIdentifier, context: 0, optional: true })
  hashAlg?: AlgorithmIdentifier;

  constructor(params: Partial<CertStatus> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4210 §5.3.18: CertConfirmContent ::= SEQUENCE OF CertStatus */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: CertStatus })
export class CertConfirmContent extends AsnArray<CertStatus> {
  constructor(items?: CertStatus[]) {
    super(items);
    Object.setPrototypeOf(this, CertConfirmContent.prototype);
  }
}

/** RFC 4210 §5.3.21: ErrorMsgContent ::= SEQUENCE { pKIStatusInfo, errorCode INTEGER OPTIONAL, errorDetails PKIFreeText OPTIONAL } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class ErrorMsgContent {
  @AsnProp({ type: PKIStatusInfo })
  pKIStatusInfo = new PKIStatusInfo();

  @AsnProp({ type: AsnPropTypes.Integer, optional: true })
  errorCode?: number;

  @AsnProp({ type: PKIFreeText, optional: true })
  errorDetails?: PKIFreeText;

  constructor(params: Partial<ErrorMsgContent> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4210 §5.1.2: PKIBody, the alternatives the station speaks; any other tag fails to parse. */
@AsnType({ type: AsnTypeTypes.Choice })
export class PKIBody {
  @AsnProp({ type: CertReqMessages, context: 0 })
  ir?: CertReqMessages;

  @AsnProp({ type: CertRepMessage, context: 1 })
  ip?: CertRepMessage;

  @AsnProp({ type: CertReqMessages, context: 2 })
  cr?: CertReqMessages;

  @AsnProp({ type: CertRepMessage, context: 3 })
  cp?: CertRepMessage;

  @AsnProp({ type: CertificationRequest, context: 4 })
  p10cr?: CertificationRequest;

  /** PKIConfirmContent ::= NULL */
  @AsnProp({ type: AsnPropTypes.Null, context: 19 })
  pkiconf?: null;

  @AsnProp({ type: GenMsgContent, context: 21 })
  genm?: GenMsgContent;

  @AsnProp({ type: GenMsgContent, context: 22 })
  genp?: GenMsgContent;

  @AsnProp({ type: ErrorMsgContent, context: 23 })
  error?: ErrorMsgContent;

  @AsnProp({ type: CertConfirmContent, context: 24 })
  certConf?: CertConfirmContent;

  constructor(params: Partial<PKIBody> = {}) {
    Object.assign(this, params);
  }
}

/**
 * RFC 4210 §5.1: PKIMessage ::= SEQUENCE { header, body, protection [0] PKIProtection OPTIONAL,
 * extraCerts [1] SEQUENCE OF CMPCertificate OPTIONAL }. Header and body keep their received
 * bytes, since the protection is over exactly those (ProtectedPart, §5.1.3).
 */
@AsnType({ type: AsnTypeTypes.Sequence })
export class PKIMessage {
  @AsnProp({ type: PKIHeader, raw: true })
  header = new PKIHeader();
  headerRaw?: ArrayBuffer;

  @AsnProp({ type: PKIBody, raw: true })
  body = new PKIBody();
  bodyRaw?: ArrayBuffer;

  /** PKIProtection ::= BIT STRING */
  @AsnProp({ type: AsnPropTypes.BitString, context: 0, optional: true })
  protection?: ArrayBuffer;

  @AsnProp({ type: Certificate, context: 1, repeated: "sequence", optional: true })
  extraCerts?: Certificate[];

  constructor(params: Partial<PKIMessage> = {}) {
    Object.assign(this, params);
  }
}

/**
 * RFC 4210 §5.1.3: ProtectedPart ::= SEQUENCE { header PKIHeader, body PKIBody }, what the
 * protection covers; built from the DER of each, as received or as serialized, never re-encoded.
 */
@AsnType({ type: AsnTypeTypes.Sequence })
export class ProtectedPart {
  @AsnProp({ type: AsnPropTypes.Any })
  header: ArrayBuffer = new ArrayBuffer(0);

  @AsnProp({ type: AsnPropTypes.Any })
  body: ArrayBuffer = new ArrayBuffer(0);

  constructor(params: Partial<ProtectedPart> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4210 §5.1.3.1: PBMParameter ::= SEQUENCE { salt OCTET STRING, owf AlgorithmIdentifier, iterationCount INTEGER, mac AlgorithmIdentifier } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class PBMParameter {
  @AsnProp({ type: OctetString })
  salt = new OctetString();

  @AsnProp({ type: AlgorithmIdentifier })
  owf = new AlgorithmIdentifier();

  @AsnProp({ type: AsnPropTypes.Integer })
  iterationCount = 0;

  @AsnProp({ type: AlgorithmIdentifier })
  mac = new AlgorithmIdentifier();

  constructor(params: Partial<PBMParameter> = {}) {
    Object.assign(this, params);
  }
}

/** Parses a PKIMessage from its DER (attacker-controlled), or throws CMP_MALFORMED. */
export function parsePKIMessage(der: Uint8Array): PKIMessage {
  try {
    return AsnConvert.parse(der, PKIMessage);
  } catch (cause) {
    throw new UnitError("CMP_MALFORMED", "the request is not a PKIMessage with a body type the station speaks (RFC 4210 §5.1)", { cause });
  }
}
