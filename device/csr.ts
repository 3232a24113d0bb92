import type { KeyObject } from "node:crypto";
import type { UnitKeyAlgorithm } from "../link/index.js";
import { DeviceError } from "./errors.js";

/**
 * The few DER structures a unit writes, encoded directly (X.690 §10) rather than through
 * @peculiar/asn1-schema: building one CertificationRequestInfo with the schema classes
 * cost ~400 µs, ten times the key generation, and the simulator sits on the station
 * bench's hot path. Only encoding lives here; every CSR made here is parsed back by
 * pki's `checkCsr` (and by `openssl req -verify` in the tests), so a mistake cannot
 * pass silently.
 */

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n <= 0xff) return Buffer.from([0x81, n]);
  if (n <= 0xffff) return Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
}

function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  const body = content.length === 1 ? content[0]! : Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

const seq = (...c: Uint8Array[]) => tlv(0x30, ...c);
const hex = (h: string) => Buffer.from(h, "hex");

/** X.680 §41.4 PrintableString: A-Z a-z 0-9 space ' ( ) + , - . / : = ? */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]+$/;

export function isPrintableString(s: string): boolean {
  return PRINTABLE.test(s);
}

const OID_SERIAL_NUMBER = hex("0603550405"); // 2.5.4.5 (X.520)
const INTEGER_ZERO = hex("020100");
const EMPTY_ATTRIBUTES = hex("a000"); // [0] IMPLICIT SET OF Attribute, empty
// RFC 5758 §3.2: ecdsa-with-SHA256, parameters absent.
const ALG_ECDSA_SHA256 = hex("300a06082a8648ce3d040302");
// RFC 4055 §5: sha256WithRSAEncryption, parameters NULL.
const ALG_RSA_SHA256 = hex("300d06092a864886f70d01010b0500");

/** RFC 2986 §4.1 CertificationRequestInfo: version 0, subject serialNumber=<serial>, the key, no attributes. */
export function certificationRequestInfo(serial: string, spki: Uint8Array): Buffer {
  if (!isPrintableString(serial)) throw new DeviceError("SERIAL_NOT_PRINTABLE", `serial ${JSON.stringify(serial)} is not a PrintableString: give serials of A-Z a-z 0-9 and ' ( ) + , - . / : = ?`);
  const subject = seq(tlv(0x31, seq(OID_SERIAL_NUMBER, tlv(0x13, Buffer.from(serial, "latin1")))));
  return seq(INTEGER_ZERO, subject, spki, EMPTY_ATTRIBUTES);
}

/** RFC 2986 §4.2 CertificationRequest; `signature` is DER ECDSA-Sig-Value for EC, the PKCS#1 v1.5 block for RSA. */
export function certificationRequest(info: Uint8Array, algorithm: UnitKeyAlgorithm, signature: Uint8Array): Buffer {
  const alg = algorithm === "EC-P256" ? ALG_ECDSA_SHA256 : ALG_RSA_SHA256;
  return seq(info, alg, tlv(0x03, Buffer.from([0]), signature));
}

export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  let body = "";
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + "\n";
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

// RFC 5480 §2 SubjectPublicKeyInfo for id-ecPublicKey on secp256r1, up to the BIT STRING content.
const P256_SPKI_PREFIX = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
// RFC 5958 OneAsymmetricKey v0 with the same AlgorithmIdentifier, wrapping RFC 5915
// ECPrivateKey { version 1, privateKey OCTET STRING (32) ... } (parameters omitted, as
// OpenSSL writes it) ...
const P256_PKCS8_PREFIX = hex("308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420");
// ... and [1] publicKey BIT STRING (the uncompressed point).
const P256_PKCS8_PUBLIC = hex("a144034200");
// RFC 5915 ECPrivateKey as OpenSSL writes a P-256 key: version 1, the private key (32
// octets), [0] the curve, [1] the uncompressed point.
const P256_SEC1_PREFIX = hex("30770201010420");
const P256_SEC1_MIDDLE = hex("a00a06082a8648ce3d030107a144034200");
const P256_SEC1_LENGTH = P256_SEC1_PREFIX.length + 32 + P256_SEC1_MIDDLE.length + 65;

/**
 * DER SPKI and PKCS#8 of a new P-256 key pair, rebuilt from its SEC 1 form (~40 µs), where
 * OpenSSL 3's SPKI and PKCS#8 encoders take ~150 µs for the two. Not from its JWK: on Node
 * 20, exporting a key that generateKeyPairSync has just made as a JWK deadlocks the thread
 * now and then (the export holds the key's lock while it allocates, a garbage collection
 * then frees the finished key generation job, which takes the same lock); a loop of
 * generate-and-export hangs within a few hundred keys. Falls back to the encoders for
 * anything unexpected.
 */
export function p256Encodings(privateKey: KeyObject, publicKey: KeyObject): { spki: Buffer; pkcs8: Buffer } {
  const sec1 = privateKey.export({ type: "sec1", format: "der" });
  const middle = P256_SEC1_PREFIX.length + 32;
  if (sec1.length !== P256_SEC1_LENGTH || !sec1.subarray(0, P256_SEC1_PREFIX.length).equals(P256_SEC1_PREFIX) || !sec1.subarray(middle, middle + P256_SEC1_MIDDLE.length).equals(P256_SEC1_MIDDLE)) {
    return { spki: publicKey.export({ type: "spki", format: "der" }), pkcs8: privateKey.export({ type: "pkcs8", format: "der" }) };
  }
  const d = sec1.subarray(P256_SEC1_PREFIX.length, middle);
  const point = sec1.subarray(middle + P256_SEC1_MIDDLE.length);
  return {
    spki: Buffer.concat([P256_SPKI_PREFIX, point]),
    pkcs8: Buffer.concat([P256_PKCS8_PREFIX, d, P256_PKCS8_PUBLIC, point]),
  };
}
