/**
 * RFC 4211 CRMF, the certificate request inside CMP's ir and cr, as asn1.js models (see
 * models.ts). The module is IMPLICIT TAGS, so every [n] below is implicit unless the tagged
 * type is a CHOICE (Name, POPOPrivKey), which X.680 §31.2.7 makes explicit whatever the
 * module default. Read up to what the station checks; asn1.js ignores what a SEQUENCE has
 * beyond its model (controls, regInfo).
 */
import asn1 from "asn1.js";
import { AlgorithmIdentifierModel, NameModel, SubjectPublicKeyInfoModel, decodeTracked, type AlgorithmIdentifierDer, type BitStringDer, type NameDer, type SubjectPublicKeyInfoDer } from "../../pki/index.js";
import { malformed, signedIntegers, type CmpMessage, type Int } from "./models.js";

/** RFC 4211 §5: CertTemplate, every field optional, read up to what the station checks. */
export interface CertTemplateDer {
  subject?: NameDer;
  publicKey?: SubjectPublicKeyInfoDer;
}
const CertTemplateModel = asn1.define<CertTemplateDer>("CertTemplate", function () {
  this.seq().obj(
    this.key("version").implicit(0).optional().int(),
    this.key("serialNumber").implicit(1).optional().int(),
    this.key("signingAlg").implicit(2).optional().use(AlgorithmIdentifierModel),
    this.key("issuer").explicit(3).optional().use(NameModel),
    this.key("validity").implicit(4).optional().seq(),
    this.key("subject").explicit(5).optional().use(NameModel),
    this.key("publicKey").implicit(6).optional().use(SubjectPublicKeyInfoModel),
  );
});
/** RFC 4211 §5: CertRequest ::= SEQUENCE { certReqId INTEGER, certTemplate CertTemplate, controls Controls OPTIONAL } (controls not read). */
const CertRequestModel = asn1.define<{ certReqId: Int; certTemplate: CertTemplateDer }>("CertRequest", function () {
  this.seq().obj(this.key("certReqId").int(), this.key("certTemplate").use(CertTemplateModel));
});
/** RFC 4211 §4.1: POPOSigningKey ::= SEQUENCE { poposkInput [0] OPTIONAL, algorithmIdentifier, signature BIT STRING } */
const POPOSigningKeyModel = asn1.define<{ poposkInput?: null; algorithmIdentifier: AlgorithmIdentifierDer; signature: BitStringDer }>("POPOSigningKey", function () {
  this.seq().obj(this.key("poposkInput").implicit(0).optional().seq(), this.key("algorithmIdentifier").use(AlgorithmIdentifierModel), this.key("signature").bitstr());
});
/** RFC 4211 §4: ProofOfPossession ::= CHOICE { raVerified [0] NULL, signature [1] POPOSigningKey, keyEncipherment [2] POPOPrivKey, keyAgreement [3] POPOPrivKey } */
export type ProofOfPossessionDer = { type: "signature"; value: { poposkInput?: null; algorithmIdentifier: AlgorithmIdentifierDer; signature: BitStringDer } } | { type: "raVerified" | "keyEncipherment" | "keyAgreement"; value: unknown };
const ProofOfPossessionModel = asn1.define<ProofOfPossessionDer>("ProofOfPossession", function () {
  this.choice({
    signature: this.implicit(1).use(POPOSigningKeyModel),
    raVerified: this.implicit(0).null_(),
    keyEncipherment: this.explicit(2).any(),
    keyAgreement: this.explicit(3).any(),
  });
});
/** RFC 4211 §3: CertReqMsg ::= SEQUENCE { certReq CertRequest, popo ProofOfPossession OPTIONAL, regInfo OPTIONAL } (regInfo not read). */
const CertReqMsgModel = asn1.define<{ certReq: { certReqId: Int; certTemplate: CertTemplateDer }; popo?: ProofOfPossessionDer }>("CertReqMsg", function () {
  this.seq().obj(this.key("certReq").use(CertRequestModel), this.key("popo").optional().use(ProofOfPossessionModel));
});
const CertReqMessagesModel = asn1.define<Array<{ certReq: { certReqId: Int; certTemplate: CertTemplateDer }; popo?: ProofOfPossessionDer }>>("CertReqMessages", function () {
  this.seqof(CertReqMsgModel);
});

/** One CertReqMsg of an ir or cr, with its CertRequest's DER as sent: the signature POP is over those bytes (RFC 4211 §4.1). */
export interface CertReqMsgDer {
  certReqId: number;
  template: CertTemplateDer;
  certReqDer: Buffer;
  popo?: ProofOfPossessionDer;
}

/** The CertReqMsgs of an ir or cr body, or CMP_MALFORMED. */
export function certReqMessagesOf(message: CmpMessage): CertReqMsgDer[] {
  try {
    const { value, ranges, contents } = decodeTracked(CertReqMessagesModel, message.content);
    const certReqs = ranges.get("certReq") ?? [];
    // Read signed (asn1.js reads INTEGERs unsigned): 255 must not pass for -1.
    const ids = signedIntegers(message.content, contents, "certReq/certReqId");
    if (certReqs.length !== value.length || ids.length !== value.length) throw new Error("a CertReqMsg without its CertRequest");
    return value.map((msg, i) => ({ certReqId: ids[i]!, template: msg.certReq.certTemplate, certReqDer: message.content.subarray(...certReqs[i]!), popo: msg.popo }));
  } catch (cause) {
    throw malformed(`the ${message.bodyType} body is not a CertReqMessages`, cause);
  }
}
