import { AsnArray, AsnConvert, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes, OctetString } from "@peculiar/asn1-schema";
import { Attribute, ContentInfo, EncryptedContent, EncryptedContentInfo, OriginatorInfo, id_data } from "@peculiar/asn1-cms";
import { AlgorithmIdentifier } from "@peculiar/asn1-x509";
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from "node:crypto";
import type { Random } from "../core/index.js";
import { CmsError } from "./errors.js";
import { AUTH_OID } from "./oids.js";

/**
 * CMS AuthEnvelopedData (RFC 5083) with AES-GCM (RFC 5084): EnvelopedData's recipients, and
 * content encryption that also authenticates, so a changed byte anywhere in the content, its
 * nonce or its tag is refused instead of decrypting into something else. Only the structure
 * and the content are here; the recipient infos (key agreement, key transport, the KDF) are
 * the ones EnvelopedData uses, passed in and out as DER.
 */

/** RFC 5084 §3.2: GCMParameters ::= SEQUENCE { aes-nonce OCTET STRING, aes-ICVlen AES-GCM-ICVlen DEFAULT 12 } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class GcmParameters {
  @AsnProp({ type: OctetString })
  nonce = new OctetString();

  @AsnProp({ type: AsnPropTypes.Integer, defaultValue: 12 })
  icvLen = 12;

  constructor(params: Partial<GcmParameters> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 5083 §2.1: AuthAttributes ::= SET SIZE (1..MAX) OF Attribute; UnauthAttributes likewise. */
@AsnType({ type: AsnTypeTypes.Set, itemType: Attribute })
export class AuthAttributes extends AsnArray<Attribute> {}

/**
 * RFC 5083 §2.1:
 * AuthEnvelopedData ::= SEQUENCE { version CMSVersion, originatorInfo [0] IMPLICIT OriginatorInfo OPTIONAL,
 *   recipientInfos RecipientInfos, authEncryptedContentInfo EncryptedContentInfo,
 *   authAttrs [1] IMPLICIT AuthAttributes OPTIONAL, mac MessageAuthenticationCode,
 *   unauthAttrs [2] IMPLICIT UnauthAttributes OPTIONAL }
 */
@AsnType({ type: AsnTypeTypes.Sequence })
export class AuthEnvelopedData {
  @AsnProp({ type: AsnPropTypes.Integer })
  version = 0;

  @AsnProp({ type: OriginatorInfo, context: 0, implicit: true, optional: true })
  originatorInfo?: OriginatorInfo;

  /**
   * RecipientInfos ::= SET SIZE (1..MAX) OF RecipientInfo, each kept as its own bytes for the
   * recipient code EnvelopedData uses (pkijs): re-encoding them in between would normalise
   * what that code checks (a BIT STRING's unused bits got through that way).
   */
  @AsnProp({ type: AsnPropTypes.Any, repeated: "set" })
  recipientInfos: ArrayBuffer[] = [];

  @AsnProp({ type: EncryptedContentInfo })
  authEncryptedContentInfo = new EncryptedContentInfo();

  @AsnProp({ type: AuthAttributes, context: 1, implicit: true, optional: true })
  authAttrs?: AuthAttributes;

  @AsnProp({ type: OctetString })
  mac = new OctetString();

  @AsnProp({ type: AuthAttributes, context: 2, implicit: true, optional: true })
  unauthAttrs?: AuthAttributes;

  constructor(params: Partial<AuthEnvelopedData> = {}) {
    Object.assign(this, params);
  }
}

/** RFC 5084 §3.1: the nonce length it recommends and OpenSSL writes. */
const NONCE_BYTES = 12;
/** RFC 5084 §3.2: the longest tag, which idmint writes. */
const TAG_BYTES = 16;

const GCM_CIPHERS: Record<string, { name: CipherGCMTypes; bytes: number }> = {
  [AUTH_OID.aes128Gcm]: { name: "aes-128-gcm", bytes: 16 },
  [AUTH_OID.aes192Gcm]: { name: "aes-192-gcm", bytes: 24 },
  [AUTH_OID.aes256Gcm]: { name: "aes-256-gcm", bytes: 32 },
};

/**
 * `content` as a ContentInfo (DER) holding AuthEnvelopedData: id-data under AES-256-GCM with
 * `cek` (32 bytes), a fresh 12-byte nonce and a 16-byte tag, to the one recipient whose
 * RecipientInfo (DER) carries `cek`. No authenticated attributes: the content is id-data.
 */
export function sealAuthEnvelopedData(recipientInfo: Uint8Array, cek: Uint8Array, content: Uint8Array, random: Random): Uint8Array {
  const nonce = random.bytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", cek, nonce, { authTagLength: TAG_BYTES });
  const ciphertext = Buffer.concat([cipher.update(content), cipher.final()]);
  const data = new AuthEnvelopedData({
    // RFC 5083 §2.1: the version is always 0.
    version: 0,
    recipientInfos: [recipientInfo.slice().buffer],
    authEncryptedContentInfo: new EncryptedContentInfo({
      contentType: id_data,
      contentEncryptionAlgorithm: new AlgorithmIdentifier({
        algorithm: AUTH_OID.aes256Gcm,
        parameters: AsnConvert.serialize(new GcmParameters({ nonce: new OctetString(nonce), icvLen: TAG_BYTES })),
      }),
      encryptedContent: new EncryptedContent({ value: new OctetString(ciphertext) }),
    }),
    mac: new OctetString(cipher.getAuthTag()),
  });
  return new Uint8Array(AsnConvert.serialize(new ContentInfo({ contentType: AUTH_OID.authEnvelopedData, content: AsnConvert.serialize(data) })));
}

export interface AuthEnveloped {
  /** Each RecipientInfo as it was in the input, for the recipient code EnvelopedData uses too. */
  recipientInfos: Uint8Array<ArrayBuffer>[];
  contentCipher: { name: string; bytes: number };
  nonce: Uint8Array;
  ciphertext: Uint8Array;
  /**
   * The content under `cek`, or undefined when the tag does not match (a changed input, or
   * a wrong key): nothing of the content is returned before the tag is checked.
   */
  open(cek: Uint8Array): Uint8Array | undefined;
}

const invalid = (why: string, cause?: unknown) => new CmsError("CMS_INVALID", `the input is not a valid CMS AuthEnvelopedData (${why}): give the file the operator encrypted`, { cause });

function parse<T>(der: ArrayBuffer | Uint8Array, type: new () => T, what: string): T {
  try {
    return AsnConvert.parse(der, type);
  } catch (e) {
    throw invalid(`${what} does not parse`, e);
  }
}

/**
 * Reads a ContentInfo (DER, its lengths already checked) holding AuthEnvelopedData, and
 * checks all that can be checked without a key. Everything in it is attacker-controlled.
 */
export function readAuthEnvelopedData(contentInfo: Uint8Array): AuthEnveloped {
  const ci = parse(contentInfo, ContentInfo, "its ContentInfo");
  if (ci.contentType !== AUTH_OID.authEnvelopedData) throw invalid(`its content type is ${ci.contentType}`);
  const data = parse(ci.content, AuthEnvelopedData, "the AuthEnvelopedData");
  if (data.version !== 0) throw invalid(`version ${data.version}, not 0 (RFC 5083 §2.1)`);
  if (data.recipientInfos.length === 0) throw invalid("it has no recipients");
  // authAttrs would be the tag's additional data (RFC 5083 §2.2); OpenSSL never writes them for id-data.
  if (data.authAttrs) throw new CmsError("CMS_UNSUPPORTED", "the AuthEnvelopedData has authenticated attributes, which idmint does not read: encrypt with `idmint operator encrypt --aead` or `openssl cms -encrypt -aes-256-gcm`");

  const eci = data.authEncryptedContentInfo;
  if (eci.contentType !== id_data) throw new CmsError("CMS_UNSUPPORTED", `the encrypted content is of type ${eci.contentType}, not data: idmint decrypts configurations, not nested CMS`);
  const alg = eci.contentEncryptionAlgorithm;
  const cipher = GCM_CIPHERS[alg.algorithm];
  if (!cipher) throw new CmsError("CMS_UNSUPPORTED", `AuthEnvelopedData content encrypted with ${alg.algorithm} is not accepted: encrypt with AES-256-GCM (\`openssl cms -encrypt -aes-256-gcm\`)`);
  if (!alg.parameters) throw invalid("the AES-GCM parameters are missing");
  const params = parse(alg.parameters, GcmParameters, "the AES-GCM parameters");
  const nonce = new Uint8Array(params.nonce.buffer);
  if (nonce.byteLength !== NONCE_BYTES) throw new CmsError("CMS_UNSUPPORTED", `the AES-GCM nonce is ${nonce.byteLength} bytes: idmint reads the ${NONCE_BYTES}-byte nonces RFC 5084 recommends`);
  // RFC 5084 §3.2: AES-GCM-ICVlen ::= INTEGER (12 | 13 | 14 | 15 | 16).
  if (!Number.isInteger(params.icvLen) || params.icvLen < 12 || params.icvLen > 16) throw invalid(`the AES-GCM tag length ${params.icvLen} is not 12 to 16`);
  const tag = new Uint8Array(data.mac.buffer);
  if (tag.byteLength !== params.icvLen) throw invalid(`its mac is ${tag.byteLength} bytes, not the ${params.icvLen} its parameters say`);
  const content = eci.encryptedContent;
  if (!content) throw new CmsError("CMS_UNSUPPORTED", "the encrypted content is detached: idmint reads only CMS with the content inside");
  const ciphertext = content.value
    ? new Uint8Array(content.value.buffer)
    : new Uint8Array(Buffer.concat((content.constructedValue ?? []).map((piece) => new Uint8Array(piece.buffer))));

  return {
    recipientInfos: data.recipientInfos.map((ri) => new Uint8Array(ri)),
    contentCipher: { name: cipher.name, bytes: cipher.bytes },
    nonce,
    ciphertext,
    open(cek) {
      if (cek.byteLength !== cipher.bytes) return undefined;
      const d = createDecipheriv(cipher.name, cek, nonce, { authTagLength: tag.byteLength });
      d.setAuthTag(tag);
      const plaintext = d.update(ciphertext);
      try {
        d.final(); // NIST SP 800-38D §7.2 step 8: the tag is checked here, after the whole content
      } catch {
        plaintext.fill(0);
        return undefined;
      }
      return new Uint8Array(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
    },
  };
}
