/**
 * RFC 4211 CRMF, the certificate request inside CMP's ir/cr/kur. The module is IMPLICIT TAGS, so
 * every [n] below is implicit unless the tagged type is a CHOICE (Name, Time, GeneralName), which
 * X.680 §31.2.7 makes explicit whatever the module default.
 */
import { AsnArray, AsnIntegerArrayBufferConverter, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Extensions, GeneralName, Name, SubjectPublicKeyInfo, Time } from "@peculiar/asn1-x509";

/** RFC 4211 §5: AttributeTypeAndValue ::= SEQUENCE { type OBJECT IDENTIFIER, value ANY DEFINED BY type } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class AttributeTypeAndValue {
  @AsnProp({ type: AsnPropTypes.ObjectIdentifier })
  type = "";

  @AsnProp({ type: AsnPropTypes.Any })
  value: ArrayBuffer = new ArrayBuffer(0);

  constructor(params: Partial<AttributeTypeAndValue> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4211 §6: Controls ::= SEQUENCE SIZE(1..MAX) OF AttributeTypeAndValue */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: AttributeTypeAndValue })
export class Controls extends AsnArray<AttributeTypeAndValue> {
  constructor(items?: AttributeTypeAndValue[]) {
    super(items);
    Object.setPrototypeOf(this, Controls.prototype);
  }
}

/** RFC 4211 §5: OptionalValidity ::= SEQUENCE { notBefore [0] Time OPTIONAL, notAfter [1] Time OPTIONAL } (Time is a CHOICE: explicit). */
@AsnType({ type: AsnTypeTypes.Sequence })
export class OptionalValidity {
  @AsnProp({ type: Time, context: 0, optional: true })
  notBefore?: Time;

  @AsnProp({ type: Time, context: 1, optional: true })
  notAfter?: Time;

  constructor(params: Partial<OptionalValidity> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4211 §5: CertTemplate, every field optional; `issuer` [3] and `subject` [5] are Names (a CHOICE), so explicit. */
@AsnType({ type: AsnTypeTypes.Sequence })
export class CertTemplate {
  @AsnProp({ type: AsnPropTypes.Integer, context: 0, implicit: true, optional: true })
  version?: number;

  @AsnProp({ type: AsnPropTypes.Integer, context: 1, implicit: true, optional: true, converter: AsnIntegerArrayBufferConverter })
  serialNumber?: ArrayBuffer;

  @AsnProp({ type: AlgorithmIdentifier, context: 2, implicit: true, optional: true })
  signingAlg?: AlgorithmIdentifier;

  @AsnProp({ type: Name, context: 3, optional: true })
  issuer?: Name;

  @AsnProp({ type: OptionalValidity, context: 4, implicit: true, optional: true })
  validity?: OptionalValidity;

  @AsnProp({ type: Name, context: 5, optional: true })
  subject?: Name;

  @AsnProp({ type: SubjectPublicKeyInfo, context: 6, implicit: true, optional: true })
  publicKey?: SubjectPublicKeyInfo;

  @AsnProp({ type: AsnPropTypes.BitString, context: 7, implicit: true, optional: true })
  issuerUID?: ArrayBuffer;

  @AsnProp({ type: AsnPropTypes.BitString, context: 8, implicit: true, optional: true })
  subjectUID?: ArrayBuffer;

  @AsnProp({ type: Extensions, context: 9, implicit: true, optional: true })
  extensions?: Extensions;

  constructor(params: Partial<CertTemplate> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4211 §5: CertRequest ::= SEQUENCE { certReqId INTEGER, certTemplate CertTemplate, controls Controls OPTIONAL } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class CertRequest {
  @AsnProp({ type: AsnPropTypes.Integer })
  certReqId = 0;

  @AsnProp({ type: CertTemplate })
  certTemplate = new CertTemplate();

  @AsnProp({ type: Controls, optional: true })
  controls?: Controls;

  constructor(params: Partial<CertRequest> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4211 §4.1: PKMACValue ::= SEQUENCE { algId AlgorithmIdentifier, value BIT STRING } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class PKMACValue {
  @AsnProp({ type: AlgorithmIdentifier })
  algId = new AlgorithmIdentifier();

  @AsnProp({ type: AsnPropTypes.BitString })
  value: ArrayBuffer = new ArrayBuffer(0);

  constructor(params: Partial<PKMACValue> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4211 §4.1: authInfo CHOICE { sender [0] GeneralName (a CHOICE: explicit), publicKeyMAC PKMACValue } */
@AsnType({ type: AsnTypeTypes.Choice })
export class POPOAuthInfo {
  @AsnProp({ type: GeneralName, context: 0 })
  sender?: GeneralName;

  @AsnProp({ type: PKMACValue })
  publicKeyMAC?: PKMACValue;

  constructor(params: Partial<POPOAuthInfo> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4211 §4.1: POPOSigningKeyInput ::= SEQUENCE { authInfo, publicKey SubjectPublicKeyInfo } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class POPOSigningKeyInput {
  @AsnProp({ type: POPOAuthInfo })
  authInfo = new POPOAuthInfo();

  @AsnProp({ type: SubjectPublicKeyInfo })
  publicKey = new SubjectPublicKeyInfo();

  constructor(params: Partial<POPOSigningKeyInput> = {}) {
    Object.assign(this, params);
  }
}

/**
 * RFC 4211 §4.1: POPOSigningKey ::= SEQUENCE { poposkInput [0] POPOSigningKeyInput OPTIONAL,
 * algorithmIdentifier AlgorithmIdentifier, signature BIT STRING }. Without poposkInput the
 * signature is over DER(CertRequest).
 */
@AsnType({ type: AsnTypeTypes.Sequence })
export class POPOSigningKey {
  @AsnProp({ type: POPOSigningKeyInput, context: 0, implicit: true, optional: true })
  poposkInput?: POPOSigningKeyInput;

  @AsnProp({ type: AlgorithmIdentifier })
  algorithmIdentifier = new AlgorithmIdentifier();

  @AsnProp({ type: AsnPropTypes.BitString })
  signature: ArrayBuffer = new ArrayBuffer(0);

  constructor(params: Partial<POPOSigningKey> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4211 §4: POPOPrivKey, for keys that cannot sign; only the simple alternatives are declared. */
@AsnType({ type: AsnTypeTypes.Choice })
export class POPOPrivKey {
  @AsnProp({ type: AsnPropTypes.BitString, context: 0, implicit: true })
  thisMessage?: ArrayBuffer;

  @AsnProp({ type: AsnPropTypes.Integer, context: 1, implicit: true })
  subsequentMessage?: number;

  @AsnProp({ type: AsnPropTypes.BitString, context: 2, implicit: true })
  dhMAC?: ArrayBuffer;

  @AsnProp({ type: PKMACValue, context: 3, implicit: true })
  agreeMAC?: PKMACValue;

  constructor(params: Partial<POPOPrivKey> = {}) {
    Object.assign(this, params);
  }
}

/**
 * RFC 4211 §4: ProofOfPossession ::= CHOICE { raVerified [0] NULL, signature [1] POPOSigningKey,
 * keyEncipherment [2] POPOPrivKey, keyAgreement [3] POPOPrivKey } (POPOPrivKey is a CHOICE: explicit).
 */
@AsnType({ type: AsnTypeTypes.Choice })
export class ProofOfPossession {
  @AsnProp({ type: AsnPropTypes.Null, context: 0, implicit: true })
  raVerified?: null;

  @AsnProp({ type: POPOSigningKey, context: 1, implicit: true })
  signature?: POPOSigningKey;

  @AsnProp({ type: POPOPrivKey, context: 2 })
  keyEncipherment?: POPOPrivKey;

  @AsnProp({ type: POPOPrivKey, context: 3 })
  keyAgreement?: POPOPrivKey;

  constructor(params: Partial<ProofOfPossession> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4211 §3: CertReqMsg ::= SEQUENCE { certReq CertRequest, popo ProofOfPossession OPTIONAL, regInfo SEQUENCE OF AttributeTypeAndValue OPTIONAL } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class CertReqMsg {
  /** Kept as received: the signature POP is over these exact bytes (RFC 4211 §4.1). */
  @AsnProp({ type: CertRequest, raw: true })
  certReq = new CertRequest();
  certReqRaw?: ArrayBuffer;

  @AsnProp({ type: ProofOfPossession, optional: true })
  popo?: ProofOfPossession;

  @AsnProp({ type: AttributeTypeAndValue, repeated: "sequence", optional: true })
  regInfo?: AttributeTypeAndValue[];

  constructor(params: Partial<CertReqMsg> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 4211 §3: CertReqMessages ::= SEQUENCE SIZE (1..MAX) OF CertReqMsg */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: CertReqMsg })
export class CertReqMessages extends AsnArray<CertReqMsg> {
  constructor(items?: CertReqMsg[]) {
    super(items);
    Object.setPrototypeOf(this, CertReqMessages.prototype);
  }
}
