import { constants, createPublicKey, generateKeyPairSync, verify, type KeyObject, type VerifyKeyObjectInput } from "node:crypto";
import {
  CertificationRequestModel,
  decodeWhole,
  oid,
  serialNumbers,
} from "./der-models.js";
import { AsnConvert } from "@peculiar/asn1-schema";
import { SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { id_ecPublicKey, id_ecdsaWithSHA1, id_ecdsaWithSHA256, id_ecdsaWithSHA384, id_ecdsaWithSHA512 } from "@peculiar/asn1-ecc";
import {
  RsaSaPssParams,
  id_RSASSA_PSS,
  id_sha1,
  id_sha1WithRSAEncryption,
  id_sha256,
  id_sha256WithRSAEncryption,
  id_sha384,
  id_sha384WithRSAEncryption,
  id_sha512,
  id_sha512WithRSAEncryption,
} from "@peculiar/asn1-rsa";
import { sha256Hex } from "../core/index.js";
import { PkiError } from "./errors.js";
import { assertSerialSyntax } from "./profiles.js";
import { x509 } from "./x509.js";

export interface CheckedCsr {
  /** DER SubjectPublicKeyInfo of the unit's key: what the IDevID will certify. */
  publicKeySpki: Uint8Array<ArrayBuffer>;
  /**
   * SHA-256 (hex) of the key's canonical SPKI (an EC point uncompressed): one key has one
   * fingerprint however the unit encoded it, so invariant 4 (no key certified twice) holds.
   */
  keyFingerprint: string;
  keyType: "EC-P256" | "EC-P384" | "EC-P521" | `RSA-${number}`;
  subjectSerial: string;
}

// Named curves at or above P-256 security; no curve below P-256 (issue policy, SP 800-57).
const ALLOWED_CURVES: Record<string, CheckedCsr["keyType"]> = {
  prime256v1: "EC-P256",
  secp384r1: "EC-P384",
  secp521r1: "EC-P521",
};
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

/*
 * Why not @peculiar/x509's Pkcs10CertificateRequest: it re-encodes the key and imports it
 * twice (node:crypto and WebCrypto), 1.2-2.4 ms per CSR where the line has ~1 ms per unit.
 * The request is decoded once with asn1.js (der-models.ts: the schema parse was a fifth of
 * the station's event loop per unit), keeping the CertificationRequestInfo's own bytes for
 * the signature check; the key is imported once and the signature checked by node:crypto
 * over those bytes.
 */

/** A CSR as checkCsr reads it. */
interface ParsedCsr {
  /** The DER CertificationRequestInfo as sent: what the self-signature covers. */
  info: Buffer;
  /** The key's AlgorithmIdentifier and point (or RSA key), and its whole SPKI as sent. */
  keyAlgorithm: { algorithm: string; parameters?: Buffer };
  keyBits: Buffer;
  spki: Buffer;
  /** The subject's serialNumber values; throws if one is not a string. */
  subjectSerials(): string[];
  signatureAlgorithm: { algorithm: string; parameters?: Buffer };
  signature: Buffer;
}

// One PEM block of base64 lines: what units and `openssl req` write; anything else takes the general path.
const PLAIN_CSR_PEM = /^-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/\r\n]+={0,2}\r?\n)-----END (?:NEW )?CERTIFICATE REQUEST-----\r?\n?$/;

function derOf(input: string | Uint8Array): Buffer {
  const plain = typeof input === "string" ? PLAIN_CSR_PEM.exec(input) : null;
  if (plain) return Buffer.from(plain[1]!, "base64");
  // The input forms Pkcs10CertificateRequest accepted: PEM (text or bytes), DER, hex, base64.
  return Buffer.from(x509.PemData.toArrayBuffer(typeof input === "string" ? input : new Uint8Array(input)));
}

function parse(input: string | Uint8Array): ParsedCsr {
  try {
    const der = derOf(input);
    // Where the request, its CertificationRequestInfo and the key's SPKI lie in `der`.
    const { value: csr, at } = decodeWhole(CertificationRequestModel, der, ["info", "info/subjectPKInfo"]);
    const [info, spki] = at;
    const key = csr.info.subjectPKInfo;
    if (key.subjectPublicKey.unused !== 0 || csr.signature.unused !== 0) throw new Error("a BIT STRING with unused bits");
    return {
      info: der.subarray(...info!),
      keyAlgorithm: { algorithm: oid(key.algorithm.algorithm), parameters: key.algorithm.parameters },
      keyBits: key.subjectPublicKey.data,
      spki: der.subarray(...spki!),
      subjectSerials: () => serialNumbers(csr.info.subject),
      signatureAlgorithm: { algorithm: oid(csr.signatureAlgorithm.algorithm), parameters: csr.signatureAlgorithm.parameters },
      signature: csr.signature.data,
    };
  } catch (e) {
    throw new PkiError("CSR_INVALID", "the CSR is not a PKCS#10 request in PEM or DER: give the unit's CSR file as written by `openssl req -new`", { cause: e });
  }
}

interface NamedCurveKey {
  jwkCurve: string;
  /** The AlgorithmIdentifier parameters (the curve's OID) and the SPKI up to the point, as OpenSSL writes them. */
  parameters: Buffer;
  prefix: Buffer;
  pointLength: number;
}

let namedCurveKeys: NamedCurveKey[] | undefined;

/** Learned once from keys OpenSSL makes, rather than written out here. */
function curves(): NamedCurveKey[] {
  return (namedCurveKeys ??= (["P-256", "P-384", "P-521"] as const).map((jwkCurve) => {
    const spki = generateKeyPairSync("ec", { namedCurve: jwkCurve }).publicKey.export({ type: "spki", format: "der" });
    const asn = AsnConvert.parse(spki, SubjectPublicKeyInfo);
    const pointLength = asn.subjectPublicKey.byteLength;
    return { jwkCurve, parameters: Buffer.from(asn.algorithm.parameters!), prefix: spki.subarray(0, spki.length - pointLength), pointLength };
  }));
}

/**
 * The CSR's key as DER SPKI and as a KeyObject. node:crypto reads an SPKI through OpenSSL's
 * decoders at ~120-190 µs a key, a JWK at ~70-90 µs, so an uncompressed point on an
 * allowed curve goes in as JWK (OpenSSL still checks that it is on the curve) and its SPKI
 * is the canonical one. Any other key is re-encoded and read as SPKI, as before.
 */
function publicKey(csr: ParsedCsr): { spki: Uint8Array<ArrayBuffer>; canonical: boolean; key: KeyObject } {
  const point = csr.keyBits;
  const parameters = csr.keyAlgorithm.parameters;
  const curve =
    csr.keyAlgorithm.algorithm === id_ecPublicKey && parameters && point[0] === 0x04
      ? curves().find((c) => c.pointLength === point.length && c.parameters.equals(parameters))
      : undefined;
  if (curve) {
    const size = (point.length - 1) / 2;
    const jwk = { kty: "EC", crv: curve.jwkCurve, x: point.subarray(1, 1 + size).toString("base64url"), y: point.subarray(1 + size).toString("base64url") };
    return { spki: new Uint8Array(Buffer.concat([curve.prefix, point])), canonical: true, key: createPublicKey({ key: jwk, format: "jwk" }) };
  }
  // Rare keys (RSA, a compressed point) take the schema path: the SPKI certified is its DER re-encoding.
  const spki = new Uint8Array(AsnConvert.serialize(AsnConvert.parse(csr.spki, SubjectPublicKeyInfo)));
  return { spki, canonical: false, key: createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }) };
}

/** An allowed EC key with its point uncompressed, as OpenSSL writes a new key; any other key as the unit sent it. */
function canonicalSpki(key: KeyObject, spki: Uint8Array): Uint8Array {
  if (key.asymmetricKeyType !== "ec") return spki;
  const jwk = key.export({ format: "jwk" });
  const curve = curves().find((c) => c.jwkCurve === jwk.crv);
  if (!curve || !jwk.x || !jwk.y) return spki;
  return Buffer.concat([curve.prefix, Buffer.from([0x04]), Buffer.from(jwk.x, "base64url"), Buffer.from(jwk.y, "base64url")]);
}

// The signature algorithms WebCrypto verified for Pkcs10CertificateRequest, and nothing else.
const HASHES: Record<string, string> = { [id_sha1]: "sha1", [id_sha256]: "sha256", [id_sha384]: "sha384", [id_sha512]: "sha512" };
const SIGNATURES: Record<string, { keyType: "ec" | "rsa"; hash: string }> = {
  [id_ecdsaWithSHA1]: { keyType: "ec", hash: "sha1" },
  [id_ecdsaWithSHA256]: { keyType: "ec", hash: "sha256" },
  [id_ecdsaWithSHA384]: { keyType: "ec", hash: "sha384" },
  [id_ecdsaWithSHA512]: { keyType: "ec", hash: "sha512" },
  [id_sha1WithRSAEncryption]: { keyType: "rsa", hash: "sha1" },
  [id_sha256WithRSAEncryption]: { keyType: "rsa", hash: "sha256" },
  [id_sha384WithRSAEncryption]: { keyType: "rsa", hash: "sha384" },
  [id_sha512WithRSAEncryption]: { keyType: "rsa", hash: "sha512" },
};

/**
 * crypto.verify on libuv's threadpool, so that units checked at the same time verify on the
 * other core: with 8 or 32 CSRs in flight checkCsr took ~220-320 µs of the JS thread per
 * CSR against ~290-370 µs verifying inline. One CSR at a time it gains nothing and adds
 * ~150 µs of latency, which a unit making its key does not notice.
 */
function verifyOffThread(hash: string, data: Uint8Array, key: KeyObject | VerifyKeyObjectInput, signature: Uint8Array): Promise<boolean> {
  return new Promise((resolve, reject) => verify(hash, data, key, signature, (error, ok) => (error ? reject(error) : resolve(ok))));
}

/** RFC 2986 §4.2: the signature over the CertificationRequestInfo's own bytes. ECDSA is DER in a CSR. */
async function selfSignatureVerifies(csr: ParsedCsr, key: KeyObject): Promise<boolean> {
  const signed = csr.info;
  const signature = csr.signature;
  const alg = csr.signatureAlgorithm;
  if (alg.algorithm === id_RSASSA_PSS) {
    // RFC 4055 §3.1; MGF1 with the same hash, as WebCrypto's RSA-PSS has it.
    if (!alg.parameters || key.asymmetricKeyType !== "rsa") return false;
    const params = AsnConvert.parse(alg.parameters, RsaSaPssParams);
    const hash = HASHES[params.hashAlgorithm.algorithm];
    return hash !== undefined && (await verifyOffThread(hash, signed, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: params.saltLength }, signature));
  }
  const known = SIGNATURES[alg.algorithm];
  return known !== undefined && known.keyType === key.asymmetricKeyType && (await verifyOffThread(known.hash, signed, key, signature));
}

/**
 * The station's checks on a unit's CSR before the CA signs anything: the key is of an
 * allowed type and size, the self-signature verifies (proof of possession, RFC 2986 §3),
 * and the subject carries exactly the serial being issued. Everything in the CSR is
 * attacker-controlled.
 */
export async function checkCsr(input: string | Uint8Array, expectedSerial: string): Promise<CheckedCsr> {
  assertSerialSyntax(expectedSerial);
  return checkParsed(parse(input), expectedSerial);
}

/**
 * A request that is not PKCS#10 but proves possession the same way: a signature by the
 * requested key over `signed` (CRMF's signature POP over DER(CertRequest), RFC 4211 §4.1).
 * Every field is attacker-controlled.
 */
export interface SignedKeyRequest {
  signed: Uint8Array;
  /** The requested key's DER SubjectPublicKeyInfo. */
  spki: Uint8Array;
  signatureAlgorithm: { algorithm: string; parameters?: Uint8Array };
  signature: Uint8Array;
  /** The requested subject's serialNumber values. */
  subjectSerials: string[];
}

/** checkCsr's checks (key type and size, proof of possession, the subject's serial) on a CRMF-style request. */
export async function checkSignedKeyRequest(request: SignedKeyRequest, expectedSerial: string): Promise<CheckedCsr> {
  assertSerialSyntax(expectedSerial);
  let parsed: ParsedCsr;
  try {
    const spki = AsnConvert.parse(request.spki, SubjectPublicKeyInfo);
    parsed = {
      info: Buffer.from(request.signed),
      keyAlgorithm: { algorithm: spki.algorithm.algorithm, parameters: spki.algorithm.parameters ? Buffer.from(spki.algorithm.parameters) : undefined },
      keyBits: Buffer.from(spki.subjectPublicKey),
      spki: Buffer.from(request.spki),
      subjectSerials: () => request.subjectSerials,
      signatureAlgorithm: { algorithm: request.signatureAlgorithm.algorithm, parameters: request.signatureAlgorithm.parameters ? Buffer.from(request.signatureAlgorithm.parameters) : undefined },
      signature: Buffer.from(request.signature),
    };
  } catch (e) {
    throw new PkiError("CSR_INVALID", "the request's public key is not a SubjectPublicKeyInfo: have the unit send its key as X.509 SPKI", { cause: e });
  }
  return checkParsed(parsed, expectedSerial);
}

async function checkParsed(csr: ParsedCsr, expectedSerial: string): Promise<CheckedCsr> {

  let keyType: CheckedCsr["keyType"];
  let spki: Uint8Array<ArrayBuffer>;
  let canonical: boolean;
  let key: KeyObject;
  try {
    ({ spki, canonical, key } = publicKey(csr));
  } catch (e) {
    throw new PkiError("CSR_KEY_REFUSED", "the CSR's public key cannot be read: the unit must use EC P-256/P-384/P-521 or RSA >= 2048", { cause: e });
  }
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "ec") {
    const curve = details.namedCurve ?? "unknown";
    const allowed = ALLOWED_CURVES[curve];
    if (!allowed) throw new PkiError("CSR_KEY_REFUSED", `the CSR's key is on curve ${curve}, which is refused: the unit must use P-256, P-384 or P-521`);
    keyType = allowed;
  } else if (key.asymmetricKeyType === "rsa") {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
      throw new PkiError("CSR_KEY_REFUSED", `the CSR's key is RSA-${bits}, which is refused: the unit must use RSA of 2048 to 8192 bits, or EC P-256 or larger`);
    }
    keyType = `RSA-${bits}`;
  } else {
    throw new PkiError("CSR_KEY_REFUSED", `the CSR's key type ${key.asymmetricKeyType ?? "unknown"} is refused: the unit must use EC P-256/P-384/P-521 or RSA >= 2048`);
  }

  let verified = false;
  try {
    verified = await selfSignatureVerifies(csr, key);
  } catch {
    verified = false;
  }
  if (!verified) {
    throw new PkiError("CSR_SIGNATURE", "the CSR's self-signature does not verify (no proof of possession): have the unit generate a new CSR");
  }

  let serials: string[];
  try {
    serials = csr.subjectSerials();
  } catch (e) {
    throw new PkiError("CSR_INVALID", "the CSR's subject serialNumber is not a string: have the unit make a CSR with serialNumber=its serial", { cause: e });
  }
  if (serials.length !== 1 || serials[0] !== expectedSerial) {
    const found = serials.length === 0 ? "no serialNumber" : `serialNumber ${serials.join(", ")}`;
    throw new PkiError("CSR_SERIAL_MISMATCH", `the CSR's subject has ${found}, not ${expectedSerial}: issue for the serial in the CSR or have the unit make a CSR with serialNumber=${expectedSerial}`);
  }
  return { publicKeySpki: spki, keyFingerprint: sha256Hex(canonical ? spki : canonicalSpki(key, spki)), keyType, subjectSerial: expectedSerial };
}
