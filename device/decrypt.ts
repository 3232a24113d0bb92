import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { createDecipheriv, createHash, createPublicKey, diffieHellman, privateDecrypt, randomBytes, constants, type KeyObject } from "node:crypto";
import { assertWithinLimit, readAuthEnvelopedData } from "../cms/index.js";
import { IdmintError, type ErrorKind } from "../core/index.js";
import { Hsm, formatPkcs11Uri, parsePkcs11Uri, type RsaPadding } from "../hsm/index.js";
import { assertSerialSyntax, eccCmsSharedInfo, parseCertificate, x963Kdf, x509, type KdfHash } from "../pki/index.js";
import type { Pkcs11KeystoreOptions } from "./keystore.js";
import { softUnitKey, unitsDbPath, withUnitFlash } from "./store.js";

/**
 * Device-side decryption of a configuration an operator encrypted to the unit's IDevID
 * (RFC 8886 §4.3): CMS EnvelopedData (RFC 5652 §6) opened with the unit's own key, whether
 * that key is a file (soft keystore) or an object in the unit's secure element (a PKCS#11
 * token, where ECDH runs inside the token and only the shared secret reaches the host).
 *
 * What is accepted (everything in the input is attacker-controlled):
 * - key agreement (RFC 5753 §3.1): ephemeral-static ECDH, dhSinglePass-stdDH-sha{1,224,256,
 *   384,512}kdf-scheme (and the cofactor variants, identical on the NIST curves, cofactor 1),
 *   with AES key wrap (RFC 3394) of 128, 192 or 256 bits; OpenSSL 3.0's default is the SHA-1
 *   KDF with the AES wrap matching the content cipher;
 * - key transport (RFC 3370 §4.2, RFC 3560): RSAES-OAEP with SHA-1/-224/-256/-384/-512 (MGF1
 *   with the same hash, empty label), and rsaEncryption (PKCS #1 v1.5, OpenSSL's default),
 *   unpadded here with the RFC 3218 §2.3.2 countermeasure: a bad block yields a random key,
 *   so a bad padding and a bad key fail the same way, at the content;
 * - content: id-data encrypted with AES-128/192/256-CBC (RFC 3565), or, in AuthEnvelopedData
 *   (RFC 5083), with AES-128/192/256-GCM (RFC 5084), whose tag is checked before any output.
 *
 * What EnvelopedData cannot do: it has no integrity protection for the content. A change to
 * the recipient information, the wrapped key or the structure is refused; a change to the
 * IV or the ciphertext is caught only when it breaks the CBC padding, otherwise it garbles
 * the output. AuthEnvelopedData refuses any change; --require-authenticated refuses the rest.
 */

export type UnitDecryptErrorCode =
  /** The input is not CMS EnvelopedData the unit can read (malformed, another content type, S/MIME without base64...). */
  | "CMS_INVALID"
  /** Well-formed, but uses an algorithm idmint does not accept (e.g. 3DES, AES-GCM, static-static ECDH). */
  | "CMS_UNSUPPORTED"
  /** The input is not encrypted, and --require-encrypted says it must be (RFC 8886 §4.3). */
  | "NOT_ENCRYPTED"
  /** The input is not AuthEnvelopedData (plaintext or EnvelopedData), and --require-authenticated says it must be. */
  | "NOT_AUTHENTICATED"
  /** None of the input's recipients is this unit. */
  | "NOT_FOR_THIS_UNIT"
  /** This unit's key does not open it: tampered, or encrypted to another key. */
  | "DECRYPT_FAILED"
  /** The unit cannot be found or has no usable key. */
  | "UNIT_KEY";

const DEFAULT_KIND: Record<UnitDecryptErrorCode, ErrorKind> = {
  CMS_INVALID: "input",
  CMS_UNSUPPORTED: "input",
  NOT_ENCRYPTED: "input",
  NOT_AUTHENTICATED: "verify",
  NOT_FOR_THIS_UNIT: "input",
  DECRYPT_FAILED: "verify",
  UNIT_KEY: "state",
};

export class UnitDecryptError extends IdmintError<UnitDecryptErrorCode> {
  constructor(code: UnitDecryptErrorCode, message: string, options?: { cause?: unknown; kind?: ErrorKind }) {
    super(options?.kind ?? DEFAULT_KIND[code], code, message, options);
    this.name = "UnitDecryptError";
  }
}

const OID = {
  data: "1.2.840.113549.1.7.1",
  envelopedData: "1.2.840.113549.1.7.3",
  signedData: "1.2.840.113549.1.7.2",
  authEnvelopedData: "1.2.840.113549.1.9.16.1.23",
  ecPublicKey: "1.2.840.10045.2.1",
  rsaEncryption: "1.2.840.113549.1.1.1",
  rsaesOaep: "1.2.840.113549.1.1.7",
  mgf1: "1.2.840.113549.1.1.8",
  pSpecified: "1.2.840.113549.1.1.9",
} as const;

type HashName = KdfHash;

const HASHES: Record<string, HashName> = {
  "1.3.14.3.2.26": "sha1",
  "2.16.840.1.101.3.4.2.4": "sha224",
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};

/** RFC 5753 §7.1.4 (and RFC 3278 for SHA-1): the key agreement scheme names the KDF's hash. */
const ECDH_SCHEMES: Record<string, { name: string; hash: HashName }> = {
  "1.3.133.16.840.63.0.2": { name: "dhSinglePass-stdDH-sha1kdf-scheme", hash: "sha1" },
  "1.3.132.1.11.0": { name: "dhSinglePass-stdDH-sha224kdf-scheme", hash: "sha224" },
  "1.3.132.1.11.1": { name: "dhSinglePass-stdDH-sha256kdf-scheme", hash: "sha256" },
  "1.3.132.1.11.2": { name: "dhSinglePass-stdDH-sha384kdf-scheme", hash: "sha384" },
  "1.3.132.1.11.3": { name: "dhSinglePass-stdDH-sha512kdf-scheme", hash: "sha512" },
  // Cofactor ECDH multiplies by the cofactor, which is 1 on P-256/P-384/P-521: the same Z.
  "1.3.133.16.840.63.0.3": { name: "dhSinglePass-cofactorDH-sha1kdf-scheme", hash: "sha1" },
  "1.3.132.1.14.0": { name: "dhSinglePass-cofactorDH-sha224kdf-scheme", hash: "sha224" },
  "1.3.132.1.14.1": { name: "dhSinglePass-cofactorDH-sha256kdf-scheme", hash: "sha256" },
  "1.3.132.1.14.2": { name: "dhSinglePass-cofactorDH-sha384kdf-scheme", hash: "sha384" },
  "1.3.132.1.14.3": { name: "dhSinglePass-cofactorDH-sha512kdf-scheme", hash: "sha512" },
};

/** RFC 3565 §2.3.2: AES key wrap (RFC 3394), by KEK length. */
const KEY_WRAPS: Record<string, { name: string; cipher: string; bytes: number }> = {
  "2.16.840.1.101.3.4.1.5": { name: "id-aes128-wrap", cipher: "id-aes128-wrap", bytes: 16 },
  "2.16.840.1.101.3.4.1.25": { name: "id-aes192-wrap", cipher: "id-aes192-wrap", bytes: 24 },
  "2.16.840.1.101.3.4.1.45": { name: "id-aes256-wrap", cipher: "id-aes256-wrap", bytes: 32 },
};

/** RFC 3565 §4.1: AES-CBC content encryption, the IV in the parameters. */
const CONTENT_CIPHERS: Record<string, { name: string; cipher: string; bytes: number }> = {
  "2.16.840.1.101.3.4.1.2": { name: "aes-128-cbc", cipher: "aes-128-cbc", bytes: 16 },
  "2.16.840.1.101.3.4.1.22": { name: "aes-192-cbc", cipher: "aes-192-cbc", bytes: 24 },
  "2.16.840.1.101.3.4.1.42": { name: "aes-256-cbc", cipher: "aes-256-cbc", bytes: 32 },
};

const KNOWN_REFUSED_CIPHERS: Record<string, string> = {
  "1.2.840.113549.3.7": "des-ede3-cbc",
  "1.3.14.3.2.7": "des-cbc",
  "1.2.840.113549.3.2": "rc2-cbc",
  "2.16.840.1.101.3.4.1.6": "aes-128-gcm",
  "2.16.840.1.101.3.4.1.46": "aes-256-gcm",
};

const CURVES: Record<string, { name: "P-256" | "P-384" | "P-521"; fieldBytes: number }> = {
  "1.2.840.10045.3.1.7": { name: "P-256", fieldBytes: 32 },
  "1.3.132.0.34": { name: "P-384", fieldBytes: 48 },
  "1.3.132.0.35": { name: "P-521", fieldBytes: 66 },
};
const CURVE_BY_NAME: Record<string, string> = { prime256v1: "1.2.840.10045.3.1.7", secp384r1: "1.3.132.0.34", secp521r1: "1.3.132.0.35" };

/**
 * A unit's private key as decryption needs it, wherever it lives: ECDH for an EC key, RSA
 * decryption for an RSA key. Nothing else about the key is ever asked for.
 */
export type RecipientKey =
  | {
      type: "ec";
      /** OID of the key's named curve. */
      curveOid: string;
      /** Where the ECDH runs, for messages: "soft key" or "token". */
      where: string;
      /** Z, the x-coordinate of d·Q for the sender's point Q (SEC 1 §3.3.1; RFC 5753 §3.1.2 step 1). */
      ecdh(peerPoint: Uint8Array): Uint8Array;
    }
  | {
      type: "rsa";
      /** Where the RSA decryption runs, for messages: "soft key" or "token". */
      where: string;
      /** k, the length of the modulus in bytes: a ciphertext of any other length is not for this key. */
      modulusBytes: number;
      /**
       * RSAES-OAEP (RFC 8017 §7.1.2) with `hash`, MGF1 with the same hash and the empty label:
       * the message, or undefined when this key does not open the ciphertext. Throws when the
       * key's holder cannot do OAEP with that hash at all (a token: SoftHSM 2.6 has SHA-1 only).
       */
      decryptOaep(hash: HashName, ciphertext: Uint8Array): Uint8Array | undefined;
      /**
       * RSAES-PKCS1-v1_5 (RFC 8017 §7.2.2) of a k-byte ciphertext, with the RFC 3218 §2.3.2
       * countermeasure: a bad block, or a message that is not `length` bytes, gives `length`
       * random bytes instead, so a bad padding fails like a wrong key, at the content.
       */
      decryptPkcs1(ciphertext: Uint8Array, length: number): Uint8Array;
    };

/** A recipient key from a private key held in memory (a soft-keystore unit's key). */
export function softRecipientKey(privateKey: KeyObject): RecipientKey {
  if (privateKey.asymmetricKeyType === "rsa") {
    return {
      type: "rsa",
      where: "soft key",
      modulusBytes: Math.ceil((privateKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8),
      decryptOaep(hash, ciphertext) {
        try {
          return new Uint8Array(privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, ciphertext));
        } catch {
          return undefined;
        }
      },
      decryptPkcs1(ciphertext, length) {
        let block: Buffer;
        try {
          // Node refuses PKCS #1 v1.5 private decryption (CVE-2023-46809): do the raw RSA
          // operation and unpad here, without branching on where a bad block is bad.
          block = privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, ciphertext);
        } catch {
          return new Uint8Array(randomBytes(length));
        }
        const message = unpadPkcs1Type2(block, length);
        const cek = new Uint8Array(message ?? randomBytes(length));
        block.fill(0);
        return cek;
      },
    };
  }
  if (privateKey.asymmetricKeyType !== "ec") {
    throw new UnitDecryptError("UNIT_KEY", `the unit's key is ${privateKey.asymmetricKeyType ?? "of an unknown type"}: only EC and RSA keys can decrypt`, { kind: "input" });
  }
  const curveOid = CURVE_BY_NAME[privateKey.asymmetricKeyDetails?.namedCurve ?? ""];
  if (!curveOid) throw new UnitDecryptError("UNIT_KEY", `the unit's key is on curve ${privateKey.asymmetricKeyDetails?.namedCurve ?? "unknown"}: only P-256, P-384 and P-521 can decrypt`, { kind: "input" });
  const curve = CURVES[curveOid]!;
  return {
    type: "ec",
    curveOid,
    where: "soft key",
    ecdh(point) {
      return new Uint8Array(diffieHellman({ privateKey, publicKey: ecPublicKey(curve.name, point) }));
    },
  };
}

/**
 * A recipient key in a PKCS#11 token: ECDH (Hsm.deriveEcdh) or RSA decryption
 * (Hsm.decryptRsa) runs in the token, the private key never leaves it.
 */
export function tokenRecipientKey(hsm: Hsm, keyUri: string, spki: Uint8Array, unitName = "the unit"): RecipientKey {
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  if (key.asymmetricKeyType === "rsa") return tokenRsaRecipientKey(hsm, keyUri, key, unitName);
  if (key.asymmetricKeyType !== "ec") {
    throw new UnitDecryptError("UNIT_KEY", `the unit's key in the token is ${key.asymmetricKeyType?.toUpperCase() ?? "of an unknown type"}: only EC and RSA keys can decrypt`, { kind: "input" });
  }
  const curveOid = CURVE_BY_NAME[key.asymmetricKeyDetails?.namedCurve ?? ""];
  if (!curveOid) throw new UnitDecryptError("UNIT_KEY", `the unit's key in the token is on an unsupported curve`, { kind: "input" });
  return {
    type: "ec",
    curveOid,
    where: "token",
    ecdh(point) {
      try {
        return hsm.deriveEcdh(keyUri, point);
      } catch (e) {
        if (e instanceof IdmintError && e.code === "KEY_NOT_PERMITTED") {
          throw new UnitDecryptError("UNIT_KEY", `${unitName}'s key in the token may not derive (CKA_DERIVE is false: it was made before unit keys allowed ECDH), so it cannot decrypt: provision a new unit`, { kind: "hsm", cause: e });
        }
        throw e;
      }
    },
  };
}

function tokenRsaRecipientKey(hsm: Hsm, keyUri: string, publicKey: KeyObject, unitName: string): RecipientKey {
  const decrypt = (ciphertext: Uint8Array, padding: RsaPadding): Uint8Array | undefined => {
    try {
      return hsm.decryptRsa(keyUri, ciphertext, padding);
    } catch (e) {
      if (e instanceof IdmintError && e.code === "KEY_NOT_PERMITTED") {
        throw new UnitDecryptError("UNIT_KEY", `${unitName}'s key in the token may not decrypt (CKA_DECRYPT is false: it was made before unit keys allowed decryption), so it cannot decrypt: provision a new unit`, { kind: "hsm", cause: e });
      }
      throw e;
    }
  };
  return {
    type: "rsa",
    where: "token",
    modulusBytes: Math.ceil((publicKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8),
    decryptOaep(hash, ciphertext) {
      // SoftHSM 2.6 does CKM_RSA_PKCS_OAEP with SHA-1 only (MGF1-SHA-1, empty label).
      if (hash !== "sha1") {
        throw new UnitDecryptError(
          "CMS_UNSUPPORTED",
          `the input uses RSAES-OAEP with ${hash}, which ${unitName}'s token cannot decrypt (it does OAEP with SHA-1 only): encrypt with \`openssl cms -encrypt\` (PKCS #1 v1.5, its default) or with OAEP and SHA-1`,
        );
      }
      return decrypt(ciphertext, "oaep-sha1");
    },
    decryptPkcs1(ciphertext, length) {
      // The token unpads (CKM_RSA_PKCS) and fails on a bad block (decryptRsa gives undefined):
      // that, or a message of the wrong length, becomes a random
      // key as in the soft key's case (RFC 3218 §2.3.2), so it fails like a wrong key.
      const message = decrypt(ciphertext, "pkcs1");
      if (message !== undefined && message.length === length) return message;
      message?.fill(0);
      return new Uint8Array(randomBytes(length));
    },
  };
}

/** A P-256/384/521 public key from an uncompressed point; Node refuses points not on the curve. */
function ecPublicKey(curve: "P-256" | "P-384" | "P-521", point: Uint8Array): KeyObject {
  const fieldBytes = curve === "P-256" ? 32 : curve === "P-384" ? 48 : 66;
  const p = Buffer.from(point);
  if (p.length !== 1 + 2 * fieldBytes || p[0] !== 0x04) throw new Error(`not an uncompressed ${curve} point`);
  return createPublicKey({
    key: { kty: "EC", crv: curve, x: p.subarray(1, 1 + fieldBytes).toString("base64url"), y: p.subarray(1 + fieldBytes).toString("base64url") },
    format: "jwk",
  });
}

// ---------------------------------------------------------------------------------------
// Input framing: is it CMS (DER, PEM, S/MIME) or plaintext?

export type Framing = "der" | "pem" | "smime";

const BASE64_BODY = /^[A-Za-z0-9+/]*={0,2}$/;

function strictBase64(text: string, what: string): Uint8Array {
  const compact = text.replace(/[\r\n\t ]/g, "");
  if (!BASE64_BODY.test(compact) || compact.length % 4 !== 0) throw new UnitDecryptError("CMS_INVALID", `${what} is not valid base64: give the file as openssl wrote it`);
  return new Uint8Array(Buffer.from(compact, "base64"));
}

function isText(bytes: Uint8Array): string | undefined {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
  // Tabs, line feeds, form feeds and carriage returns are text; any other control character is not.
  return /[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(text) ? undefined : text;
}

/**
 * RFC 8886 §4.3 leaves it to the device to tell an encrypted configuration from a plain
 * one. Here: PEM armour (any "-----BEGIN" at the start) and S/MIME (a MIME header naming
 * pkcs7-mime) are encrypted framings, and so is anything that is not text (DER is binary);
 * only text without either framing is plaintext. So a damaged encrypted file is refused,
 * never taken for a plaintext configuration.
 */
export function unframe(input: Uint8Array): { framing: Framing; der: Uint8Array } | undefined {
  const text = isText(input);
  if (text === undefined) return { framing: "der", der: input };
  const start = text.replace(/^\uFEFF/, "").trimStart();
  if (start.startsWith("-----BEGIN")) {
    const m = /^-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n([\s\S]*?)-----END \1-----\s*$/.exec(start);
    if (!m) throw new UnitDecryptError("CMS_INVALID", "the input starts like PEM but is not one well-formed PEM block: give the file as openssl wrote it");
    if (m[1] !== "CMS" && m[1] !== "PKCS7") throw new UnitDecryptError("CMS_INVALID", `the input is a PEM block labelled ${m[1]}, not CMS: give the encrypted configuration (-----BEGIN CMS-----)`);
    return { framing: "pem", der: strictBase64(m[2]!, "the PEM block") };
  }
  const split = /\r?\n\r?\n/.exec(start);
  const header = split ? start.slice(0, split.index) : "";
  if (/^MIME-Version:/i.test(start) || /^Content-Type:\s*application\/(x-)?pkcs7-mime/im.test(header)) {
    if (!split || !/^Content-Type:\s*application\/(x-)?pkcs7-mime/im.test(header)) {
      throw new UnitDecryptError("CMS_INVALID", "the input is a MIME message but not S/MIME enveloped data (application/pkcs7-mime): give the encrypted configuration");
    }
    if (!/^Content-Transfer-Encoding:\s*base64\s*$/im.test(header)) {
      throw new UnitDecryptError("CMS_UNSUPPORTED", "the S/MIME message is not base64-encoded: have it written with `openssl cms -encrypt -outform DER` (or PEM)");
    }
    return { framing: "smime", der: strictBase64(start.slice(split.index + split[0].length), "the S/MIME body") };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// RFC 5753 §7.2: the KDF of ANSI X9.63 (SEC 1 §3.6.1) over ECC-CMS-SharedInfo.

// ---------------------------------------------------------------------------------------
// The envelope.

const invalid = (why: string, cause?: unknown) => new UnitDecryptError("CMS_INVALID", `the input is not a valid CMS EnvelopedData (${why}): give the file the operator encrypted`, { cause });
const unsupported = (what: string) => new UnitDecryptError("CMS_UNSUPPORTED", what);

interface Candidate {
  kind: "kari" | "ktri";
  /** Who the recipient is, for messages. */
  rid: Rid;
  tryOpen(key: RecipientKey): { cek: Uint8Array; keyEncryption: string; keyWrap?: string } | undefined;
}

type Rid = { issuer: Uint8Array; serial: Uint8Array; issuerText: string } | { ski: Uint8Array };

export interface EncryptedResult {
  encrypted: true;
  plaintext: Uint8Array;
  framing: Framing;
  recipient: "key agreement" | "key transport";
  /** e.g. dhSinglePass-stdDH-sha1kdf-scheme, id-RSAES-OAEP (sha256), rsaEncryption. */
  keyEncryption: string;
  /** e.g. id-aes256-wrap (key agreement only). */
  keyWrap?: string;
  /** e.g. aes-256-cbc, aes-256-gcm. */
  contentEncryption: string;
  /** AuthEnvelopedData: its tag proved the content unchanged. */
  authenticated: boolean;
}

export type DecryptResult = EncryptedResult | { encrypted: false; plaintext: Uint8Array };

function bytesOf(view: ArrayBuffer | Uint8Array): Uint8Array {
  return view instanceof Uint8Array ? view : new Uint8Array(view);
}

function der(obj: { toSchema(): asn1js.AsnType }): Uint8Array<ArrayBuffer> {
  return new Uint8Array(obj.toSchema().toBER(false));
}

function integerBytes(i: asn1js.Integer): Uint8Array {
  return new Uint8Array(i.valueBlock.valueHexView);
}

function ridOf(value: unknown): Rid {
  if (value instanceof pkijs.IssuerAndSerialNumber) {
    let issuerText = "(unreadable issuer)";
    try {
      issuerText = new x509.Name(new Uint8Array(der(value.issuer))).toString();
    } catch {
      // Only for messages.
    }
    return { issuer: der(value.issuer), serial: integerBytes(value.serialNumber), issuerText };
  }
  if (value instanceof pkijs.RecipientKeyIdentifier) return { ski: new Uint8Array(value.subjectKeyIdentifier.valueBlock.valueHexView) };
  if (value instanceof asn1js.OctetString) return { ski: new Uint8Array(value.valueBlock.valueHexView) };
  throw invalid("a recipient identifier is neither issuerAndSerialNumber nor subjectKeyIdentifier");
}

function describeRid(r: Rid): string {
  return "issuer" in r ? `certificate ${Buffer.from(r.serial).toString("hex")} of ${r.issuerText}` : `key identifier ${Buffer.from(r.ski).toString("hex")}`;
}

/** The unit's certificate as a CMS recipient identifier sees it. */
export interface RecipientIdentity {
  issuer: Uint8Array;
  serial: Uint8Array;
  ski?: Uint8Array;
  /** The certificate's SubjectPublicKeyInfo, DER. */
  spki: Uint8Array;
}

export function recipientIdentity(cert: x509.X509Certificate): RecipientIdentity {
  const c = pkijs.Certificate.fromBER(new Uint8Array(cert.rawData));
  const skiExt = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  return {
    issuer: der(c.issuer),
    serial: integerBytes(c.serialNumber),
    ski: skiExt ? new Uint8Array(Buffer.from(skiExt.keyId, "hex")) : undefined,
    spki: new Uint8Array(cert.publicKey.rawData),
  };
}

function ridMatches(r: Rid, id: RecipientIdentity): boolean {
  if ("issuer" in r) return Buffer.from(r.issuer).equals(Buffer.from(id.issuer)) && Buffer.from(r.serial).equals(Buffer.from(id.serial));
  return id.ski !== undefined && Buffer.from(r.ski).equals(Buffer.from(id.ski));
}

function algorithmParams(alg: pkijs.AlgorithmIdentifier): asn1js.AsnType | undefined {
  const p = alg.algorithmParams as asn1js.AsnType | undefined;
  if (p === undefined || p instanceof asn1js.Null) return undefined;
  return p;
}

function oaepParams(alg: pkijs.AlgorithmIdentifier): { hash: HashName } {
  // RFC 4055 §4.1: RSAES-OAEP-params, every field DEFAULT (SHA-1, MGF1-SHA-1, empty label).
  let hash: HashName = "sha1";
  let mgfHash: HashName = "sha1";
  const params = alg.algorithmParams as asn1js.AsnType | undefined;
  if (params !== undefined && !(params instanceof asn1js.Null)) {
    if (!(params instanceof asn1js.Sequence)) throw invalid("the RSAES-OAEP parameters are not a SEQUENCE");
    const hashOf = (a: pkijs.AlgorithmIdentifier, what: string): HashName => {
      const h = HASHES[a.algorithmId];
      if (!h) throw unsupported(`the RSAES-OAEP ${what} ${a.algorithmId} is not supported: use SHA-256`);
      return h;
    };
    for (const field of params.valueBlock.value) {
      const inner = (field as asn1js.Constructed).valueBlock?.value?.[0];
      if (field.idBlock.tagClass !== 3 || inner === undefined) throw invalid("an RSAES-OAEP parameter is not tagged");
      let a: pkijs.AlgorithmIdentifier;
      try {
        a = new pkijs.AlgorithmIdentifier({ schema: inner });
      } catch (e) {
        throw invalid("an RSAES-OAEP parameter is not an AlgorithmIdentifier", e);
      }
      if (field.idBlock.tagNumber === 0) hash = hashOf(a, "hash");
      else if (field.idBlock.tagNumber === 1) {
        if (a.algorithmId !== OID.mgf1) throw unsupported(`the RSAES-OAEP mask generation function ${a.algorithmId} is not supported: use MGF1`);
        let mgfAlg: pkijs.AlgorithmIdentifier;
        try {
          mgfAlg = new pkijs.AlgorithmIdentifier({ schema: a.algorithmParams });
        } catch (e) {
          throw invalid("the MGF1 parameters are not an AlgorithmIdentifier", e);
        }
        mgfHash = hashOf(mgfAlg, "MGF1 hash");
      } else if (field.idBlock.tagNumber === 2) {
        const label = a.algorithmParams as asn1js.OctetString | undefined;
        if (a.algorithmId !== OID.pSpecified || !(label instanceof asn1js.OctetString) || label.valueBlock.valueHexView.byteLength !== 0) {
          throw unsupported("RSAES-OAEP with a label is not supported: use the empty label");
        }
      } else throw invalid("an RSAES-OAEP parameter has an unknown tag");
    }
  }
  if (mgfHash !== hash) throw unsupported(`RSAES-OAEP with ${hash} and MGF1-${mgfHash} is not supported: use the same hash for both`);
  return { hash };
}

/** PKCS #1 v1.5 type 2 unpadding of a raw RSA block, without branching on where it fails. */
function unpadPkcs1Type2(block: Uint8Array, expectedLength: number): Uint8Array | undefined {
  let bad = (block[0]! ^ 0x00) | (block[1]! ^ 0x02);
  let zeroAt = 0;
  let found = 0;
  for (let i = 2; i < block.length; i++) {
    const isZero = block[i] === 0 ? 1 : 0;
    const first = isZero & (found ^ 1);
    zeroAt = first ? i : zeroAt;
    found |= isZero;
  }
  bad |= found ^ 1;
  bad |= zeroAt < 10 ? 1 : 0; // at least 8 octets of padding
  bad |= block.length - zeroAt - 1 !== expectedLength ? 1 : 0;
  return bad === 0 ? block.subarray(zeroAt + 1) : undefined;
}

function kariCandidates(kari: pkijs.KeyAgreeRecipientInfo, contentKeyBytes: number): Candidate[] {
  if (kari.version !== 3) throw invalid(`a KeyAgreeRecipientInfo has version ${kari.version}, not 3`);
  const scheme = ECDH_SCHEMES[kari.keyEncryptionAlgorithm.algorithmId];
  if (!scheme) throw unsupported(`key agreement ${kari.keyEncryptionAlgorithm.algorithmId} is not supported: use ephemeral-static ECDH (dhSinglePass-stdDH-sha256kdf-scheme)`);
  let wrapAlg: pkijs.AlgorithmIdentifier;
  try {
    wrapAlg = new pkijs.AlgorithmIdentifier({ schema: kari.keyEncryptionAlgorithm.algorithmParams });
  } catch (e) {
    throw invalid("the key agreement names no key wrap algorithm", e);
  }
  const wrap = KEY_WRAPS[wrapAlg.algorithmId];
  if (!wrap) throw unsupported(`key wrap ${wrapAlg.algorithmId} is not supported: use AES key wrap (id-aes256-wrap)`);
  if (algorithmParams(wrapAlg) !== undefined) throw invalid("the AES key wrap algorithm has parameters");
  if (kari.originator.variant !== 3) throw unsupported("static-static ECDH (an originator certificate instead of an ephemeral key) is not supported: use ephemeral-static ECDH");
  const originator = kari.originator.value as pkijs.OriginatorPublicKey;
  if (originator.algorithm.algorithmId !== OID.ecPublicKey) throw unsupported(`the originator key is ${originator.algorithm.algorithmId}, not an EC key`);
  const originatorCurve = originator.algorithm.algorithmParams instanceof asn1js.ObjectIdentifier ? originator.algorithm.algorithmParams.valueBlock.toString() : undefined;
  if (originator.algorithm.algorithmParams !== undefined && originatorCurve === undefined && !(originator.algorithm.algorithmParams instanceof asn1js.Null)) {
    throw unsupported("the originator key has explicit curve parameters: use a named curve");
  }
  if (originator.publicKey.valueBlock.unusedBits !== 0) throw invalid("the originator key's BIT STRING has unused bits");
  const point = new Uint8Array(originator.publicKey.valueBlock.valueHexView);
  const ukm = kari.ukm ? new Uint8Array(kari.ukm.valueBlock.valueHexView) : undefined;

  return kari.recipientEncryptedKeys.encryptedKeys.map((rek): Candidate => ({
    kind: "kari",
    rid: ridOf(rek.rid.value),
    tryOpen(key) {
      if (key.type !== "ec") return undefined;
      if (originatorCurve !== undefined && originatorCurve !== key.curveOid) return undefined;
      // RFC 5753 §3.1.2: Z from the ephemeral key, then KEK = KDF(Z, SharedInfo), then unwrap.
      let z: Uint8Array;
      try {
        z = key.ecdh(point);
      } catch (e) {
        if (e instanceof IdmintError && e.code !== "UNSUPPORTED_ALGORITHM") throw e;
        return undefined;
      }
      const kek = x963Kdf(scheme.hash, z, eccCmsSharedInfo(wrapAlg.algorithmId, ukm, wrap.bytes * 8), wrap.bytes);
      z.fill(0);
      let cek: Buffer;
      try {
        const d = createDecipheriv(wrap.cipher, kek, Buffer.from("A6A6A6A6A6A6A6A6", "hex"));
        cek = Buffer.concat([d.update(rek.encryptedKey.valueBlock.valueHexView), d.final()]);
      } catch {
        return undefined; // RFC 3394 §2.2.3: the integrity check failed
      } finally {
        kek.fill(0);
      }
      if (cek.length !== contentKeyBytes) return undefined;
      return { cek: new Uint8Array(cek), keyEncryption: scheme.name, keyWrap: wrap.name };
    },
  }));
}

function ktriCandidate(ktri: pkijs.KeyTransRecipientInfo, contentKeyBytes: number): Candidate {
  const rid = ridOf(ktri.rid);
  if (ktri.version !== ("issuer" in rid ? 0 : 2)) throw invalid(`a KeyTransRecipientInfo has version ${ktri.version}, which does not fit its recipient identifier`);
  const alg = ktri.keyEncryptionAlgorithm;
  const encryptedKey = Buffer.from(ktri.encryptedKey.valueBlock.valueHexView);
  if (alg.algorithmId === OID.rsaesOaep) {
    const { hash } = oaepParams(alg);
    return {
      kind: "ktri",
      rid,
      tryOpen(key) {
        if (key.type !== "rsa") return undefined;
        if (encryptedKey.length !== key.modulusBytes) return undefined;
        const cek = key.decryptOaep(hash, encryptedKey);
        if (cek === undefined) return undefined;
        if (cek.length !== contentKeyBytes) {
          cek.fill(0);
          return undefined;
        }
        return { cek, keyEncryption: `id-RSAES-OAEP (${hash})` };
      },
    };
  }
  if (alg.algorithmId === OID.rsaEncryption) {
    if (algorithmParams(alg) !== undefined) throw invalid("rsaEncryption has parameters other than NULL");
    return {
      kind: "ktri",
      rid,
      tryOpen(key) {
        if (key.type !== "rsa") return undefined;
        if (encryptedKey.length !== key.modulusBytes) return undefined;
        // RFC 3218 §2.3.2: a bad block gives a random key, so it fails like a wrong key, at the content.
        return { cek: key.decryptPkcs1(encryptedKey, contentKeyBytes), keyEncryption: "rsaEncryption (PKCS #1 v1.5)" };
      },
    };
  }
  throw unsupported(`key transport ${alg.algorithmId} is not supported: use RSAES-OAEP`);
}

/** RFC 5652 §6.1: the version an EnvelopedData with these parts must carry. */
function expectedVersions(env: pkijs.EnvelopedData): number[] {
  const kinds = env.recipientInfos.map((ri) => ri.variant);
  if (env.originatorInfo) return [2, 3, 4];
  if (kinds.some((v) => v === 4 || v === 5)) return [3];
  const allV0 = env.recipientInfos.every((ri) => (ri.value as { version?: number }).version === 0);
  return env.unprotectedAttrs === undefined && allV0 ? [0] : [2];
}

export interface Envelope {
  framing: Framing;
  /** AuthEnvelopedData (RFC 5083): the content has a tag, checked before any of it is returned. */
  authenticated: boolean;
  contentCipher: { name: string; bytes: number };
  /** The CBC IV, or the GCM nonce. */
  iv: Uint8Array;
  ciphertext: Uint8Array;
  candidates: Candidate[];
  /** The content under `cek`, or undefined when it does not open (bad CBC padding, or a GCM tag that does not match). */
  decryptContent(cek: Uint8Array): Uint8Array | undefined;
}

/** The recipients a unit's key pair can be: KEK, password and other recipients are for someone else. */
function candidatesOf(recipientInfos: pkijs.RecipientInfo[], contentKeyBytes: number): Candidate[] {
  const candidates: Candidate[] = [];
  for (const ri of recipientInfos) {
    if (ri.variant === 1) candidates.push(ktriCandidate(ri.value as pkijs.KeyTransRecipientInfo, contentKeyBytes));
    else if (ri.variant === 2) candidates.push(...kariCandidates(ri.value as pkijs.KeyAgreeRecipientInfo, contentKeyBytes));
  }
  return candidates;
}

/** RFC 5083 AuthEnvelopedData: its structure and AES-GCM content in cms/, its recipients as EnvelopedData's. */
function authEnvelope(framing: Framing, der: Uint8Array): Envelope {
  const aed = readAuthEnvelopedData(der);
  const infos = aed.recipientInfos.map((ri) => {
    try {
      return pkijs.RecipientInfo.fromBER(ri);
    } catch (e) {
      throw invalid("a RecipientInfo does not parse", e);
    }
  });
  const { contentCipher, nonce, ciphertext } = aed;
  return { framing, authenticated: true, contentCipher, iv: nonce, ciphertext, candidates: candidatesOf(infos, contentCipher.bytes), decryptContent: aed.open };
}

/** Parses CMS EnvelopedData (DER) and checks everything that can be checked without the key. */
export function parseEnvelope(framed: { framing: Framing; der: Uint8Array }): Envelope {
  const bytes = framed.der;
  const asn = asn1js.fromBER(bytes);
  if (asn.offset === -1) throw invalid(`not DER: ${asn.result.error || "unreadable"}`);
  if (asn.offset !== bytes.byteLength) throw invalid(`${bytes.byteLength - asn.offset} bytes follow the ContentInfo`);
  // asn1js forgives lengths that do not add up; encoding the parse again must give the
  // input back (DER, or BER with indefinite lengths), so no changed length byte gets by.
  if (!Buffer.from(asn.result.toBER(false)).equals(Buffer.from(bytes))) throw invalid("its lengths are inconsistent");
  let ci: pkijs.ContentInfo;
  try {
    ci = new pkijs.ContentInfo({ schema: asn.result });
  } catch (e) {
    throw invalid("not a ContentInfo", e);
  }
  if (ci.contentType === OID.authEnvelopedData) return authEnvelope(framed.framing, bytes);
  if (ci.contentType !== OID.envelopedData) throw invalid(`its content type is ${ci.contentType === OID.signedData ? "SignedData" : ci.contentType}, not EnvelopedData`);
  let data: pkijs.EnvelopedData;
  try {
    data = new pkijs.EnvelopedData({ schema: ci.content });
  } catch (e) {
    throw invalid("the EnvelopedData does not parse", e);
  }
  if (!expectedVersions(data).includes(data.version)) throw invalid(`version ${data.version} does not fit its contents (RFC 5652 §6.1)`);

  const eci = data.encryptedContentInfo;
  if (eci.contentType !== OID.data) throw unsupported(`the encrypted content is of type ${eci.contentType}, not data: idmint decrypts configurations, not nested CMS`);
  const cipherOid = eci.contentEncryptionAlgorithm.algorithmId;
  const contentCipher = CONTENT_CIPHERS[cipherOid];
  if (!contentCipher) {
    const known = KNOWN_REFUSED_CIPHERS[cipherOid];
    throw unsupported(`content encrypted with ${known ?? cipherOid} is not accepted in EnvelopedData: encrypt with AES-256-CBC (\`openssl cms -encrypt -aes256\`), or AES-256-GCM in AuthEnvelopedData (\`-aes-256-gcm\`)`);
  }
  const ivParam = eci.contentEncryptionAlgorithm.algorithmParams as asn1js.AsnType | undefined;
  if (!(ivParam instanceof asn1js.OctetString) || ivParam.valueBlock.valueHexView.byteLength !== 16) throw invalid("the AES-CBC IV is not a 16-byte OCTET STRING");
  if (!eci.encryptedContent) throw unsupported("the encrypted content is detached: idmint reads only CMS with the content inside");
  let ciphertext: Uint8Array;
  try {
    ciphertext = bytesOf(eci.getEncryptedContent());
  } catch (e) {
    throw invalid("the encrypted content is unreadable", e);
  }
  if (ciphertext.byteLength === 0 || ciphertext.byteLength % 16 !== 0) throw invalid("the encrypted content is not a whole number of AES blocks");

  const iv = new Uint8Array(ivParam.valueBlock.valueHexView);
  const decryptContent = (cek: Uint8Array): Uint8Array | undefined => {
    try {
      const d = createDecipheriv(contentCipher.cipher, cek, iv);
      return new Uint8Array(Buffer.concat([d.update(ciphertext), d.final()]));
    } catch {
      return undefined;
    }
  };
  return { framing: framed.framing, authenticated: false, contentCipher, iv, ciphertext, candidates: candidatesOf(data.recipientInfos, contentCipher.bytes), decryptContent };
}

/**
 * Opens an envelope with a unit's key. With `identity` (the unit's certificate) only the
 * recipients naming it are tried, and an envelope for someone else is NOT_FOR_THIS_UNIT;
 * without, every recipient of the key's type is tried.
 */
export function openEnvelope(envelope: Envelope, key: RecipientKey, identity?: RecipientIdentity, unitName = "this unit"): EncryptedResult {
  const ofKeyType = envelope.candidates.filter((c) => c.kind === (key.type === "ec" ? "kari" : "ktri"));
  const mine = identity ? ofKeyType.filter((c) => ridMatches(c.rid, identity)) : ofKeyType;
  if (mine.length === 0) {
    const named = envelope.candidates.map((c) => describeRid(c.rid));
    const to = named.length ? `to ${named.slice(0, 3).join("; ")}${named.length > 3 ? ` and ${named.length - 3} more` : ""}` : "to no key-pair recipient";
    throw new UnitDecryptError("NOT_FOR_THIS_UNIT", `the input is encrypted ${to}, not to ${unitName}'s ${key.type.toUpperCase()} key: fetch this unit's certificate and encrypt to it`);
  }
  let tagFailed = false;
  for (const c of mine) {
    const opened = c.tryOpen(key);
    if (!opened) continue;
    try {
      // Undefined: a wrong key (e.g. RFC 3218's random one) or a changed ciphertext, IV or tag.
      const plaintext = envelope.decryptContent(opened.cek);
      if (!plaintext) {
        tagFailed ||= envelope.authenticated;
        continue;
      }
      return {
        encrypted: true,
        plaintext,
        framing: envelope.framing,
        recipient: c.kind === "kari" ? "key agreement" : "key transport",
        keyEncryption: opened.keyEncryption,
        keyWrap: opened.keyWrap,
        contentEncryption: envelope.contentCipher.name,
        authenticated: envelope.authenticated,
      };
    } finally {
      opened.cek.fill(0);
    }
  }
  throw new UnitDecryptError(
    "DECRYPT_FAILED",
    tagFailed
      ? `the input's AES-GCM authentication tag does not match under ${unitName}'s key (${key.where}): it was changed after encryption, or encrypted to another key; ask the operator for a fresh copy`
      : `${unitName}'s key (${key.where}) does not open the input: it was changed after encryption, or encrypted to another key; ask the operator for a fresh copy`,
  );
}

/**
 * Decrypts `input` with `key`, or passes plaintext through (RFC 8886 §4.3) unless
 * `requireEncrypted`; `requireAuthenticated` refuses all but AuthEnvelopedData.
 */
export function decryptWithKey(
  input: Uint8Array,
  key: RecipientKey | (() => RecipientKey),
  options: { identity?: RecipientIdentity; requireEncrypted?: boolean; requireAuthenticated?: boolean; unitName?: string } = {},
): DecryptResult {
  assertWithinLimit("encrypted", input.byteLength, "the input");
  const framed = unframe(input);
  if (!framed) {
    if (options.requireAuthenticated) throw notAuthenticated("is not encrypted");
    if (options.requireEncrypted) {
      throw new UnitDecryptError("NOT_ENCRYPTED", "the input is not encrypted (no CMS EnvelopedData in DER, PEM or S/MIME) and --require-encrypted refuses plaintext (RFC 8886 §4.3): have the operator encrypt it to the unit");
    }
    assertWithinLimit("configuration", input.byteLength, "the plaintext configuration");
    return { encrypted: false, plaintext: input };
  }
  assertWithinLimit("cms", framed.der.byteLength, "the CMS in the input");
  const envelope = parseEnvelope(framed);
  if (options.requireAuthenticated && !envelope.authenticated) throw notAuthenticated(`is CMS EnvelopedData (${envelope.contentCipher.name}), which has no integrity protection`);
  const result = openEnvelope(envelope, typeof key === "function" ? key() : key, options.identity, options.unitName);
  assertWithinLimit("configuration", result.plaintext.byteLength, "the decrypted configuration");
  return result;
}

const notAuthenticated = (what: string) =>
  new UnitDecryptError("NOT_AUTHENTICATED", `the input ${what}, and --require-authenticated accepts only AuthEnvelopedData (AES-GCM): have the operator encrypt it with \`idmint operator encrypt --aead\``);

export interface UnitDecryptOptions {
  /** The simulator's units directory (`HOME/units`). */
  unitsDir: string;
  serial: string;
  input: Uint8Array;
  requireEncrypted?: boolean;
  requireAuthenticated?: boolean;
  /** For a unit whose key is in a PKCS#11 token: the module and the token (with its pin-source). */
  token?: Omit<Pkcs11KeystoreOptions, "tokenUri"> & { tokenUri?: string };
}

export interface UnitDecryptResult {
  serial: string;
  keystore: "soft" | "pkcs11";
  result: DecryptResult;
}

/**
 * `idmint unit decrypt`: the simulated unit `serial` opens a configuration with its own key,
 * as the real unit would (RFC 8886 §4.3). Its certificate (if installed) says which
 * recipient it is; a key in a token is used inside the token.
 */
export function decryptForUnit(o: UnitDecryptOptions): UnitDecryptResult {
  try {
    assertSerialSyntax(o.serial);
  } catch (e) {
    throw new UnitDecryptError("UNIT_KEY", (e as Error).message, { kind: "input", cause: e });
  }
  // Everything the unit holds is read first, so the flash is closed before a token opens.
  const { unit, softKey } = withUnitFlash(o.unitsDir, (flash) => {
    const unit = flash?.read(o.serial);
    if (!unit) throw new UnitDecryptError("UNIT_KEY", `there is no unit ${o.serial} in ${o.unitsDir}: check the serial and --home (units keep their keys in HOME/units/units.db)`);
    return { unit, softKey: unit.key?.keystore === "soft" ? softUnitKey(flash!, o.serial) : undefined };
  });
  if (unit.state === "new" || !unit.key || !unit.spki) throw new UnitDecryptError("UNIT_KEY", `unit ${o.serial} has no key yet: provision it first (idmint station run)`);
  const spki = new Uint8Array(unit.spki);
  let identity: RecipientIdentity | undefined;
  if (unit.state === "provisioned") {
    const broken = (why: string, cause?: unknown) => new UnitDecryptError("UNIT_KEY", `unit ${o.serial}'s certificate ${why}: delete its row from ${unitsDbPath(o.unitsDir)} and provision it again`, { cause });
    try {
      identity = recipientIdentity(parseCertificate(unit.certificate!, `unit ${o.serial}'s certificate`));
    } catch (e) {
      throw broken("is unreadable", e);
    }
    if (!Buffer.from(identity.spki).equals(unit.spki)) throw broken("is not for its key");
  }
  const unitName = `unit ${o.serial}`;
  const options = { identity, requireEncrypted: o.requireEncrypted, requireAuthenticated: o.requireAuthenticated, unitName };
  const ref = unit.key;
  if (ref.keystore === "soft") return { serial: o.serial, keystore: "soft", result: decryptWithKey(o.input, softRecipientKey(softKey!), options) };
  // The token is opened only when there is something to decrypt.
  let hsm: Hsm | undefined;
  try {
    const result = decryptWithKey(
      o.input,
      () => {
        if (!o.token?.tokenUri) {
          throw new UnitDecryptError("UNIT_KEY", `unit ${o.serial}'s key is in a PKCS#11 token (${ref.object}): give the units' token (--pkcs11-token, or simulator.unitTokenUri of the home)`, { kind: "usage" });
        }
        const token = parsePkcs11Uri(o.token.tokenUri);
        hsm = Hsm.open({ module: o.token.module, softhsmConf: o.token.softhsmConf, env: o.token.env });
        const keyUri = formatPkcs11Uri({ token: token.token, serial: token.serial, object: ref.object, type: "private", pinSource: token.pinSource });
        return tokenRecipientKey(hsm, keyUri, spki, unitName);
      },
      options,
    );
    return { serial: o.serial, keystore: "pkcs11", result };
  } finally {
    (hsm as Hsm | undefined)?.close();
  }
}
