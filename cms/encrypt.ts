import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { constants, createCipheriv, createHash, createPublicKey, diffieHellman, generateKeyPairSync, publicEncrypt, type KeyObject } from "node:crypto";
import { sha256Hex, systemRandom, type Random } from "../core/index.js";
import { PKI_OID, keyUsageNames, x509 } from "../pki/index.js";
import { sealAuthEnvelopedData } from "./auth-enveloped.js";
import { CmsError } from "./errors.js";
import { eccCmsSharedInfo, x963Kdf } from "./kdf.js";
import { assertWithinLimit } from "./limits.js";
import { CURVES, CURVE_BY_NAME, OID } from "./oids.js";

/**
 * The operator's half of RFC 8886 §4: encrypt a configuration to a device's certificate as
 * CMS EnvelopedData (RFC 5652 §6), so that only the device's private key opens it and
 * `openssl cms -decrypt` reads it. The choices, fixed:
 *
 * - EC key: ephemeral-static ECDH (RFC 5753 §3.1.1, KeyAgreeRecipientInfo v3), scheme
 *   dhSinglePass-stdDH-sha256kdf-scheme (1.3.132.1.11.1: ANSI X9.63 KDF with SHA-256 over
 *   ECC-CMS-SharedInfo, no ukm: the ephemeral key already makes every KEK fresh), and
 *   id-aes256-wrap (2.16.840.1.101.3.4.1.45, RFC 3394) of the content key; the originator
 *   key carries its named curve.
 * - RSA key: RSAES-OAEP key transport (RFC 3560; id-RSAES-OAEP 1.2.840.113549.1.1.7) with
 *   SHA-256 and MGF1-SHA-256, empty label (KeyTransRecipientInfo v0).
 * - Content: id-data under aes-256-cbc (2.16.840.1.101.3.4.1.42, RFC 3565), a fresh random
 *   256-bit key and 128-bit IV. Not AES-GCM: inside EnvelopedData OpenSSL 3.0 refuses it.
 * - Recipient named by issuerAndSerialNumber, as `openssl cms -encrypt` does.
 * - With `aead`: the same recipient in AuthEnvelopedData (RFC 5083) with AES-256-GCM
 *   content (RFC 5084), so the unit detects any change (cms/auth-enveloped.ts).
 *
 * The output is DER (definite lengths, the content in one primitive OCTET STRING).
 */

const MIN_RSA_BITS = 2048;

export interface RecipientKeyInfo {
  type: "ec" | "rsa";
  /** e.g. "EC P-256", "RSA-2048". */
  description: string;
  key: KeyObject;
  curve?: { oid: string; name: string };
}

/** The certificate's public key, if idmint encrypts to it: EC P-256/P-384/P-521, or RSA of 2048 bits or more. */
export function recipientKeyOf(cert: x509.X509Certificate): RecipientKeyInfo {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: "der", type: "spki" });
  } catch (e) {
    throw new CmsError("KEY_UNSUPPORTED", `the public key of ${cert.subject} cannot be read: idmint encrypts to EC (P-256/P-384/P-521) and RSA keys`, { cause: e });
  }
  if (key.asymmetricKeyType === "ec") {
    const oid = CURVE_BY_NAME[key.asymmetricKeyDetails?.namedCurve ?? ""];
    const curve = oid === undefined ? undefined : { oid, name: CURVES[oid]!.name };
    if (!curve) throw new CmsError("KEY_UNSUPPORTED", `the key of ${cert.subject} is on curve ${key.asymmetricKeyDetails?.namedCurve ?? "unknown"}: idmint encrypts to P-256, P-384 and P-521`);
    return { type: "ec", description: `EC ${curve.name}`, key, curve };
  }
  if (key.asymmetricKeyType === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) throw new CmsError("KEY_UNSUPPORTED", `the key of ${cert.subject} is RSA-${bits}: idmint encrypts to RSA keys of ${MIN_RSA_BITS} bits or more`);
    return { type: "rsa", description: `RSA-${bits}`, key };
  }
  throw new CmsError("KEY_UNSUPPORTED", `the key of ${cert.subject} is ${key.asymmetricKeyType ?? "of an unknown type"}: idmint encrypts to EC and RSA keys`);
}

/**
 * RFC 5280 §4.2.1.3: key agreement needs keyAgreement, key transport keyEncipherment. A
 * certificate without keyUsage restricts nothing.
 */
export function assertEncryptionUsage(cert: x509.X509Certificate, type: "ec" | "rsa"): void {
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (!ku) return;
  const [flag, name, scheme] =
    type === "ec" ? [x509.KeyUsageFlags.keyAgreement, "keyAgreement", "ECDH key agreement"] : [x509.KeyUsageFlags.keyEncipherment, "keyEncipherment", "RSA key transport"];
  if ((ku.usages & flag) === 0) {
    throw new CmsError("KEY_USAGE", `the certificate of ${cert.subject} does not allow ${name} (its keyUsage is ${keyUsageNames(ku.usages).join(", ") || "empty"}), which ${scheme} needs: encrypt to the device's IDevID`);
  }
}

const RFC3394_IV = Buffer.from("A6A6A6A6A6A6A6A6", "hex");

function keyAgreeRecipient(cert: pkijs.Certificate, recipient: RecipientKeyInfo, cek: Buffer): pkijs.RecipientInfo {
  const curve = recipient.curve!;
  // RFC 5753 §3.1.1: a fresh ephemeral key per message, its public point in originatorKey.
  const ephemeral = generateKeyPairSync("ec", { namedCurve: curve.name });
  // The point from the key's DER SPKI, not its JWK: on Node 20 a JWK export of a key just
  // generated may deadlock (see device/csr.ts, p256Encodings).
  const spki = pkijs.PublicKeyInfo.fromBER(ephemeral.publicKey.export({ type: "spki", format: "der" }));
  const point = Buffer.from(spki.subjectPublicKey.valueBlock.valueHexView);
  const z = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipient.key });
  // No ukm is sent, so ECC-CMS-SharedInfo has no entityUInfo (RFC 5753 §7.2).
  const kek = Buffer.from(x963Kdf("sha256", z, eccCmsSharedInfo(OID.aes256Wrap, undefined, 256), 32));
  z.fill(0);
  const wrap = createCipheriv("id-aes256-wrap", kek, RFC3394_IV);
  const wrapped = Buffer.concat([wrap.update(cek), wrap.final()]);
  kek.fill(0);
  const kari = new pkijs.KeyAgreeRecipientInfo({
    version: 3,
    originator: new pkijs.OriginatorIdentifierOrKey({
      variant: 3,
      value: new pkijs.OriginatorPublicKey({
        algorithm: new pkijs.AlgorithmIdentifier({ algorithmId: OID.ecPublicKey, algorithmParams: new asn1js.ObjectIdentifier({ value: curve.oid }) }),
        publicKey: new asn1js.BitString({ valueHex: point }),
      }),
    }),
    keyEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({
      algorithmId: OID.dhSinglePassStdDhSha256Kdf,
      algorithmParams: new pkijs.AlgorithmIdentifier({ algorithmId: OID.aes256Wrap }).toSchema(),
    }),
    recipientEncryptedKeys: new pkijs.RecipientEncryptedKeys({
      encryptedKeys: [
        new pkijs.RecipientEncryptedKey({
          rid: new pkijs.KeyAgreeRecipientIdentifier({ variant: 1, value: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }) }),
          encryptedKey: new asn1js.OctetString({ valueHex: wrapped }),
        }),
      ],
    }),
  });
  return new pkijs.RecipientInfo({ variant: 2, value: kari });
}

/** RFC 4055 §4.1 RSAES-OAEP-params for SHA-256: hashFunc [0] sha256, maskGenFunc [1] mgf1(sha256), the default empty label. */
function oaepSha256Params(): asn1js.Sequence {
  const sha256 = () => new pkijs.AlgorithmIdentifier({ algorithmId: OID.sha256 }).toSchema();
  return new asn1js.Sequence({
    value: [
      new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [sha256()] }),
      new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 1 }, value: [new pkijs.AlgorithmIdentifier({ algorithmId: OID.mgf1, algorithmParams: sha256() }).toSchema()] }),
    ],
  });
}

function keyTransRecipient(cert: pkijs.Certificate, recipient: RecipientKeyInfo, cek: Buffer): pkijs.RecipientInfo {
  const encryptedKey = publicEncrypt({ key: recipient.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, cek);
  const ktri = new pkijs.KeyTransRecipientInfo({
    version: 0,
    rid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
    keyEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: OID.rsaesOaep, algorithmParams: oaepSha256Params() }),
    encryptedKey: new asn1js.OctetString({ valueHex: encryptedKey }),
  });
  return new pkijs.RecipientInfo({ variant: 1, value: ktri });
}

export interface EncryptResult {
  /** The CMS ContentInfo (EnvelopedData), DER. */
  der: Uint8Array;
  recipient: {
    subject: string;
    /** The subject's serialNumber attribute, if it has one (an IDevID's device serial). */
    serialNumber?: string;
    certificateSerial: string;
    /** SHA-256 of the certificate's DER, hex. */
    fingerprint: string;
    key: string;
  };
  keyEncryption: string;
  keyWrap?: string;
  contentType: "EnvelopedData" | "AuthEnvelopedData";
  contentEncryption: "aes-256-cbc" | "aes-256-gcm";
}

export interface EncryptOptions {
  /** AuthEnvelopedData with AES-256-GCM instead of EnvelopedData with AES-256-CBC. */
  aead?: boolean;
}

/**
 * Encrypts `content` to the holder of `certificate`'s private key. The certificate is taken
 * as given: check it first (`fetchDeviceCertificate` or `checkDeviceCertificate`).
 */
export function encryptToCertificate(certificate: x509.X509Certificate, content: Uint8Array, random: Random = systemRandom, options: EncryptOptions = {}): EncryptResult {
  assertWithinLimit("configuration", content.byteLength, "the configuration");
  const recipient = recipientKeyOf(certificate);
  assertEncryptionUsage(certificate, recipient.type);
  const cert = pkijs.Certificate.fromBER(new Uint8Array(certificate.rawData));

  const cek = Buffer.from(random.bytes(32));
  const ec = recipient.type === "ec";
  let der: Uint8Array;
  try {
    const ri = ec ? keyAgreeRecipient(cert, recipient, cek) : keyTransRecipient(cert, recipient, cek);
    der = options.aead ? sealAuthEnvelopedData(new Uint8Array(ri.toSchema().toBER(false)), cek, content, random) : envelopedData(ri, ec, cek, content, random);
  } finally {
    cek.fill(0);
  }
  return {
    der,
    recipient: {
      subject: certificate.subject,
      serialNumber: certificate.subjectName.getField(PKI_OID.serialNumber)[0],
      certificateSerial: certificate.serialNumber,
      fingerprint: sha256Hex(new Uint8Array(certificate.rawData)),
      key: recipient.description,
    },
    keyEncryption: ec ? "dhSinglePass-stdDH-sha256kdf-scheme" : "id-RSAES-OAEP (sha256, MGF1-sha256)",
    keyWrap: ec ? "id-aes256-wrap" : undefined,
    contentType: options.aead ? "AuthEnvelopedData" : "EnvelopedData",
    contentEncryption: options.aead ? "aes-256-gcm" : "aes-256-cbc",
  };
}

/** RFC 5652 §6.1 EnvelopedData with AES-256-CBC content under `cek`, as a ContentInfo (DER). */
function envelopedData(ri: pkijs.RecipientInfo, ec: boolean, cek: Buffer, content: Uint8Array, random: Random): Uint8Array {
  const iv = Buffer.from(random.bytes(16));
  const cipher = createCipheriv("aes-256-cbc", cek, iv);
  const ciphertext = Buffer.concat([cipher.update(content), cipher.final()]);
  const enveloped = new pkijs.EnvelopedData({
    // RFC 5652 §6.1: 0 when every recipient is a version 0 KeyTransRecipientInfo, else 2.
    version: ec ? 2 : 0,
    recipientInfos: [ri],
    encryptedContentInfo: new pkijs.EncryptedContentInfo({
      contentType: OID.data,
      contentEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: OID.aes256Cbc, algorithmParams: new asn1js.OctetString({ valueHex: iv }) }),
      encryptedContent: new asn1js.OctetString({ valueHex: ciphertext }),
      // One primitive OCTET STRING: pkijs would otherwise split it into a BER constructed one.
      disableSplit: true,
    }),
  });
  return new Uint8Array(new pkijs.ContentInfo({ contentType: OID.envelopedData, content: enveloped.toSchema() }).toSchema().toBER(false));
}
