/**
 * RFC 4210 CMP (as updated by RFC 9480) and RFC 4211 CRMF as asn1.js models (see
 * pki/der-models.ts): the PKIMessage a unit and the station exchange, read and written with
 * every certificate and CSR in it kept as DER. The @peculiar/asn1-schema declarations these
 * replace built an asn1js object for every node of every certificate in a message and
 * serialized them again: ~4 ms of CPU a unit on each side of the wire.
 *
 * The CMP module is EXPLICIT TAGS, so every [n] of it wraps its type (CRMF, IMPLICIT TAGS, is
 * in crmf.ts). asn1.js reads
 * INTEGERs as unsigned BNs, and an `any` as the bytes to the end of its parent: a model reads
 * `any` only as the last element, and finds earlier elements' bytes with decodeTracked.
 */
import asn1, { type Model } from "asn1.js";
import type BN from "bn.js";
import { AlgorithmIdentifierModel, AnyDerModel, NameModel, arcs, decodeTracked, type AlgorithmIdentifierDer, type Arcs, type BitStringDer, type NameDer } from "../../pki/index.js";
import { UnitError } from "../errors.js";

/** RFC 9480 §2.20: pvno is cmp2000 (2), or cmp2021 (3) when a message needs RFC 9480's additions. */
export const PVNO_CMP2000 = 2;
export const PVNO_CMP2021 = 3;
/** RFC 4210 §5.1.3.1: id-PasswordBasedMac. */
export const ID_PASSWORD_BASED_MAC = "1.2.840.113533.7.66.13";

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

/** RFC 4210 §5.2.3: PKIStatus. */
export const PKI_STATUS = { accepted: 0, grantedWithMods: 1, rejection: 2, waiting: 3, revocationWarning: 4, revocationNotification: 5, keyUpdateWarning: 6 } as const;

/** An INTEGER as asn1.js reads it (a BN, unsigned) or as we write it (intDer). */
export type Int = number | BN | Buffer;

/**
 * An INTEGER as a number, or CMP_MALFORMED: no field read this way needs more than 31 bits (an
 * attacker's 64-bit status must not reach BN's toNumber, which throws). As asn1.js read it, it
 * is unsigned: a signed field (certReqId) is read with decodeContentWithIds.
 */
export function intOf(value: Int): number {
  if (typeof value === "number") return value;
  if (Buffer.isBuffer(value)) return value.readIntBE(0, value.length);
  if (value.bitLength() > 31) throw malformed(`an INTEGER of ${value.bitLength()} bits where a small one belongs`, undefined);
  return value.toNumber();
}

/** An INTEGER to write: asn1.js writes numbers from 0 up, so a small negative one goes as its two's-complement octet. */
export function intDer(n: number): number | Buffer {
  return n >= 0 ? n : Buffer.of(n & 0xff);
}

/** A SEQUENCE read by position only (decodeTracked says where it is): a certificate in a list. */
const SkippedSequenceModel = asn1.define<null>("SEQUENCE", function () {
  this.seq();
});

/** RFC 4210 §5.1.1: PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String, declared where used as seqof(Utf8StringModel). */
const Utf8StringModel = asn1.define<string>("UTF8String", function () {
  this.utf8str();
});

/** RFC 5280 §4.2.1.6 GeneralName; otherName, x400Address and ediPartyName are not read (RFC 9483 §3.1 names parties by directoryName). */
export type GeneralNameDer =
  | { type: "directoryName"; value: NameDer }
  | { type: "rfc822Name" | "dNSName" | "uniformResourceIdentifier"; value: string }
  | { type: "iPAddress"; value: Buffer }
  | { type: "registeredID"; value: Arcs };
const GeneralNameModel = asn1.define<GeneralNameDer>("GeneralName", function () {
  this.choice({
    directoryName: this.explicit(4).use(NameModel),
    rfc822Name: this.implicit(1).ia5str(),
    dNSName: this.implicit(2).ia5str(),
    uniformResourceIdentifier: this.implicit(6).ia5str(),
    iPAddress: this.implicit(7).octstr(),
    registeredID: this.implicit(8).objid(),
  });
});

/** RFC 4210 §5.3.19: InfoTypeAndValue ::= SEQUENCE { infoType OBJECT IDENTIFIER, infoValue ANY DEFINED BY infoType OPTIONAL } */
export interface InfoTypeAndValueDer {
  infoType: Arcs;
  infoValue?: Buffer;
}
const InfoTypeAndValueModel = asn1.define<InfoTypeAndValueDer>("InfoTypeAndValue", function () {
  this.seq().obj(this.key("infoType").objid(), this.key("infoValue").optional().any());
});
/** GenMsgContent and GenRepContent ::= SEQUENCE OF InfoTypeAndValue (RFC 4210 §5.3.19-20). */
export const GenMsgContentModel = asn1.define<InfoTypeAndValueDer[]>("GenMsgContent", function () {
  this.seqof(InfoTypeAndValueModel);
});

/** RFC 4210 §5.1.1: PKIHeader; messageTime in ms since the epoch. */
export interface CmpHeader {
  pvno: number;
  sender: GeneralNameDer;
  recipient: GeneralNameDer;
  messageTime?: number;
  protectionAlg?: AlgorithmIdentifierDer;
  senderKID?: Buffer;
  recipKID?: Buffer;
  transactionID?: Buffer;
  senderNonce?: Buffer;
  recipNonce?: Buffer;
  freeText?: string[];
  generalInfo?: InfoTypeAndValueDer[];
}
const PKIHeaderModel = asn1.define<Omit<CmpHeader, "pvno"> & { pvno: Int }>("PKIHeader", function () {
  this.seq().obj(
    this.key("pvno").int(),
    this.key("sender").use(GeneralNameModel),
    this.key("recipient").use(GeneralNameModel),
    this.key("messageTime").explicit(0).optional().gentime(),
    this.key("protectionAlg").explicit(1).optional().use(AlgorithmIdentifierModel),
    this.key("senderKID").explicit(2).optional().octstr(),
    this.key("recipKID").explicit(3).optional().octstr(),
    this.key("transactionID").explicit(4).optional().octstr(),
    this.key("senderNonce").explicit(5).optional().octstr(),
    this.key("recipNonce").explicit(6).optional().octstr(),
    this.key("freeText").explicit(7).optional().seqof(Utf8StringModel),
    this.key("generalInfo").explicit(8).optional().seqof(InfoTypeAndValueModel),
  );
});

export function headerDer(header: CmpHeader): Buffer {
  return PKIHeaderModel.encode(header, "der");
}

/** RFC 4210 §5.1.2: PKIBody's alternatives by tag, in the order tried when reading (a line's messages first, in their order). */
const BODY_TAGS = {
  p10cr: 4,
  cp: 3,
  certConf: 24,
  pkiconf: 19,
  ir: 0,
  ip: 1,
  cr: 2,
  error: 23,
  genm: 21,
  genp: 22,
  kur: 7,
  kup: 8,
  krr: 9,
  krp: 10,
  rr: 11,
  rp: 12,
  ccr: 13,
  ccp: 14,
  ckuann: 15,
  cann: 16,
  rann: 17,
  crlann: 18,
  nested: 20,
  pollReq: 25,
  pollRep: 26,
  popdecc: 5,
  popdecr: 6,
} as const;
export type BodyType = keyof typeof BODY_TAGS;

/** A body of `type` around its content's DER: [n] EXPLICIT is a constructed [n] holding that one element. */
const BodyModel = asn1.define<{ type: BodyType; value: Buffer }>("PKIBody", function () {
  this.choice(Object.fromEntries(Object.entries(BODY_TAGS).map(([type, tag]) => [type, this.explicit(tag).use(AnyDerModel)])));
});

export function bodyDer(type: BodyType, contentDer: Buffer): Buffer {
  return BodyModel.encode({ type, value: contentDer }, "der");
}

/** PKIConfirmContent ::= NULL (RFC 4210 §5.3.17). */
const NullModel = asn1.define<null>("NULL", function () {
  this.null_();
});
export const PKICONF_BODY = bodyDer("pkiconf", NullModel.encode(null, "der"));

/**
 * RFC 4210 §5.1: PKIMessage ::= SEQUENCE { header, body, protection [0] PKIProtection OPTIONAL,
 * extraCerts [1] SEQUENCE OF CMPCertificate OPTIONAL }. The body is read by its tag only
 * (a constructed [n], its content skipped): decodeTracked gives its bytes and its content's.
 */
const PKIMessageModel = asn1.define<{ header: Omit<CmpHeader, "pvno"> & { pvno: Int }; body: { type: BodyType }; protection?: BitStringDer }>("PKIMessage", function () {
  this.seq().obj(
    this.key("header").use(PKIHeaderModel),
    this.key("body").choice(Object.fromEntries(Object.entries(BODY_TAGS).map(([type, tag]) => [type, this.implicit(tag).seq()]))),
    this.key("protection").explicit(0).optional().bitstr(),
    this.key("extraCerts").explicit(1).optional().seqof(SkippedSequenceModel),
  );
});

/** RFC 4210 §5.1.3: ProtectedPart ::= SEQUENCE { header PKIHeader, body PKIBody }, what the protection covers, from their DER as they are. */
const ProtectedPartModel = asn1.define<{ header: Buffer; body: Buffer }>("ProtectedPart", function () {
  this.seq().obj(this.key("header").any(), this.key("body").any());
});

export function protectedPartDer(header: Buffer, body: Buffer): Buffer {
  return ProtectedPartModel.encode({ header, body }, "der");
}

/** A PKIMessage as written: header and body as their DER, written once for both the MAC and the message. */
const PKIMessagePartsModel = asn1.define<{ header: Buffer; body: Buffer; protection?: BitStringDer; extraCerts?: Buffer[] }>("PKIMessage", function () {
  this.seq().obj(this.key("header").any(), this.key("body").any(), this.key("protection").explicit(0).optional().bitstr(), this.key("extraCerts").explicit(1).optional().seqof(AnyDerModel));
});

export function pkiMessageDer(header: Buffer, body: Buffer, protection: Buffer | undefined, extraCerts: Buffer[] | undefined): Buffer {
  return PKIMessagePartsModel.encode({ header, body, protection: protection && { unused: 0, data: protection }, extraCerts: extraCerts?.length ? extraCerts : undefined }, "der");
}

/** A PKIMessage as received: the header read, the header's and body's DER as sent (the protection covers them, §5.1.3), the body's content to read by its type. */
export interface CmpMessage {
  header: CmpHeader;
  headerDer: Buffer;
  bodyType: BodyType;
  bodyDer: Buffer;
  /** The body's one element inside its [n] tag. */
  content: Buffer;
  /** PKIProtection's bits. */
  protection?: Buffer;
  extraCerts: Buffer[];
}

export function malformed(what: string, cause: unknown): UnitError {
  return new UnitError("CMP_MALFORMED", `${what} (RFC 4210 §5.1)`, { cause });
}

/** Reads a PKIMessage from its DER (attacker-controlled), or throws CMP_MALFORMED. */
export function decodeMessage(der: Uint8Array): CmpMessage {
  const bytes = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  try {
    const { value, ranges, contents } = decodeTracked(PKIMessageModel, bytes);
    const at = (path: string) => bytes.subarray(...ranges.get(path)![0]!);
    const protection = value.protection;
    if (protection && protection.unused !== 0) throw new Error("PKIProtection with unused bits");
    return {
      header: { ...value.header, pvno: intOf(value.header.pvno) },
      headerDer: at("header"),
      bodyType: value.body.type,
      bodyDer: at("body"),
      content: bytes.subarray(...contents.get("body")![0]!),
      protection: protection?.data,
      extraCerts: (ranges.get("extraCerts") ?? []).slice(1).map((range) => bytes.subarray(...range)),
    };
  } catch (cause) {
    throw malformed("the request is not a DER PKIMessage", cause);
  }
}

/** Reads a body's content with `model`, or throws CMP_MALFORMED naming the body. */
export function decodeContent<T>(message: CmpMessage, model: Model<T>): T {
  return decodeContentWithIds(message, model, "").value;
}

/**
 * decodeContent, with the INTEGERs at `path` (e.g. "response/certReqId") read signed from their
 * content octets: asn1.js reads INTEGERs unsigned, so a p10cr's certReqId -1 (RFC 9480 §2.10)
 * and 255 would both come out as 255.
 */
export function decodeContentWithIds<T>(message: CmpMessage, model: Model<T>, path: string): { value: T; ids: number[] } {
  try {
    const { value, contents } = decodeTracked(model, message.content);
    return { value, ids: path ? signedIntegers(message.content, contents, path) : [] };
  } catch (cause) {
    throw malformed(`the ${message.bodyType} body is not one`, cause);
  }
}

/** The INTEGERs at `path` of `der` (decodeTracked's `contents`), read signed; throws on 0 octets or more than 6 (no certReqId). */
export function signedIntegers(der: Buffer, contents: Map<string, Array<[number, number]>>, path: string): number[] {
  return (contents.get(path) ?? []).map(([start, end]) => der.readIntBE(start, end - start));
}

/** RFC 4210 §5.2.3: PKIStatusInfo ::= SEQUENCE { status PKIStatus, statusString PKIFreeText OPTIONAL, failInfo PKIFailureInfo OPTIONAL } */
export interface PKIStatusInfoDer {
  status: Int;
  statusString?: string[];
  failInfo?: BitStringDer;
}
const PKIStatusInfoModel = asn1.define<PKIStatusInfoDer>("PKIStatusInfo", function () {
  this.seq().obj(this.key("status").int(), this.key("statusString").optional().seqof(Utf8StringModel), this.key("failInfo").optional().bitstr());
});

/** A named-bit BIT STRING of failures, in DER: bit 0 the first octet's high bit, trailing zero bits dropped (X.690 §11.2.2). */
export function failureInfo(...failures: PKIFailure[]): BitStringDer {
  const bits = failures.map((f) => PKI_FAILURE_BITS[f]);
  const last = Math.max(...bits);
  const data = Buffer.alloc((last >> 3) + 1);
  for (const bit of bits) data[bit >> 3]! |= 0x80 >> (bit & 7);
  return { unused: 7 - (last & 7), data };
}

export function failuresOf(info: BitStringDer | undefined): PKIFailure[] {
  if (!info) return [];
  return (Object.keys(PKI_FAILURE_BITS) as PKIFailure[]).filter((f) => {
    const bit = PKI_FAILURE_BITS[f];
    return ((info.data[bit >> 3] ?? 0) & (0x80 >> (bit & 7))) !== 0;
  });
}

/** RFC 4210 §5.3.21: ErrorMsgContent ::= SEQUENCE { pKIStatusInfo, errorCode INTEGER OPTIONAL, errorDetails PKIFreeText OPTIONAL } */
export const ErrorMsgContentModel = asn1.define<{ pKIStatusInfo: PKIStatusInfoDer; errorCode?: Int; errorDetails?: string[] }>("ErrorMsgContent", function () {
  this.seq().obj(this.key("pKIStatusInfo").use(PKIStatusInfoModel), this.key("errorCode").optional().int(), this.key("errorDetails").optional().seqof(Utf8StringModel));
});

/** RFC 4210 §5.3.18 + RFC 9480 §2.10: CertStatus ::= SEQUENCE { certHash OCTET STRING, certReqId INTEGER, statusInfo OPTIONAL, hashAlg [0] OPTIONAL } */
export interface CertStatusDer {
  certHash: Buffer;
  certReqId: Int;
  statusInfo?: PKIStatusInfoDer;
  hashAlg?: AlgorithmIdentifierDer;
}
const CertStatusModel = asn1.define<CertStatusDer>("CertStatus", function () {
  this.seq().obj(
    this.key("certHash").octstr(),
    this.key("certReqId").int(),
    this.key("statusInfo").optional().use(PKIStatusInfoModel),
    this.key("hashAlg").explicit(0).optional().use(AlgorithmIdentifierModel),
  );
});
/** RFC 4210 §5.3.18: CertConfirmContent ::= SEQUENCE OF CertStatus */
export const CertConfirmContentModel = asn1.define<CertStatusDer[]>("CertConfirmContent", function () {
  this.seqof(CertStatusModel);
});

/**
 * RFC 4210 §5.3.4: CertRepMessage ::= SEQUENCE { caPubs [1] SEQUENCE OF CMPCertificate OPTIONAL,
 * response SEQUENCE OF CertResponse }, with CertResponse's certifiedKeyPair down to the
 * certificate ([0] of CertOrEncCert; an encrypted certificate is for keys the CA made). The
 * certificates are DER as they are; a unit reads the response only, not caPubs.
 */
export interface CertRepMessageDer {
  caPubs?: Buffer[];
  response: Array<{ certReqId: Int; status: PKIStatusInfoDer; certifiedKeyPair?: { certOrEncCert: { type: "certificate"; value: Buffer } } }>;
}
const CertOrEncCertModel = asn1.define<{ type: "certificate"; value: Buffer }>("CertOrEncCert", function () {
  this.choice({ certificate: this.explicit(0).use(AnyDerModel) });
});
const CertifiedKeyPairModel = asn1.define<NonNullable<CertRepMessageDer["response"][number]["certifiedKeyPair"]>>("CertifiedKeyPair", function () {
  this.seq().obj(this.key("certOrEncCert").use(CertOrEncCertModel));
});
const CertResponseModel = asn1.define<CertRepMessageDer["response"][number]>("CertResponse", function () {
  this.seq().obj(this.key("certReqId").int(), this.key("status").use(PKIStatusInfoModel), this.key("certifiedKeyPair").optional().use(CertifiedKeyPairModel));
});
export const CertRepMessageModel = asn1.define<CertRepMessageDer>("CertRepMessage", function () {
  this.seq().obj(this.key("caPubs").explicit(1).optional().seqof(AnyDerModel), this.key("response").seqof(CertResponseModel));
});

/** A SEQUENCE OF certificates given as DER: genp's caCerts value (RFC 9480 §4.3.1). */
export const CertificatesModel = asn1.define<Buffer[]>("SEQUENCE OF CMPCertificate", function () {
  this.seqof(AnyDerModel);
});

/** RFC 4210 §5.1.3.1: PBMParameter ::= SEQUENCE { salt OCTET STRING, owf AlgorithmIdentifier, iterationCount INTEGER, mac AlgorithmIdentifier } */
export interface PBMParameterDer {
  salt: Buffer;
  owf: AlgorithmIdentifierDer;
  iterationCount: Int;
  mac: AlgorithmIdentifierDer;
}
export const PBMParameterModel = asn1.define<PBMParameterDer>("PBMParameter", function () {
  this.seq().obj(this.key("salt").octstr(), this.key("owf").use(AlgorithmIdentifierModel), this.key("iterationCount").int(), this.key("mac").use(AlgorithmIdentifierModel));
});

