import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { createDecipheriv } from "node:crypto";
import { readAuthEnvelopedData } from "./auth-enveloped.js";
import { CmsError, invalid, unsupported } from "./errors.js";
import { unframe, type Framing } from "./framing.js";
import { assertWithinLimit } from "./limits.js";
import { CONTENT_CIPHERS, KNOWN_REFUSED_CIPHERS, OID } from "./oids.js";
import type { RecipientKey } from "./recipient-key.js";
import { bytesOf, candidatesOf, describeRid, ridMatches, type Candidate, type RecipientIdentity } from "./recipients.js";

/**
 * Opening a configuration an operator encrypted to a unit's IDevID (RFC 8886 §4.3): CMS
 * EnvelopedData (RFC 5652 §6) or AuthEnvelopedData (RFC 5083) opened with a recipient key,
 * whether that key is in memory (a soft keystore) or an object in a secure element (a
 * PKCS#11 token, where ECDH runs inside the token and only the shared secret reaches the host).
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
  let asn: ReturnType<typeof asn1js.fromBER>;
  try {
    asn = asn1js.fromBER(bytes);
  } catch (e) {
    // asn1js reports most damage in its result, but throws for some (a time that does not parse).
    throw invalid("not DER", e);
  }
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
    throw new CmsError("NOT_FOR_THIS_UNIT", `the input is encrypted ${to}, not to ${unitName}'s ${key.type.toUpperCase()} key: fetch this unit's certificate and encrypt to it`);
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
  throw new CmsError(
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
      throw new CmsError("NOT_ENCRYPTED", "the input is not encrypted (no CMS EnvelopedData in DER, PEM or S/MIME) and --require-encrypted refuses plaintext (RFC 8886 §4.3): have the operator encrypt it to the unit");
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
  new CmsError("NOT_AUTHENTICATED", `the input ${what}, and --require-authenticated accepts only AuthEnvelopedData (AES-GCM): have the operator encrypt it with \`idmint operator encrypt --aead\``);
