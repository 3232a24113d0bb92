import type { KdfHash } from "./kdf.js";

/** The object identifiers CMS uses here, by name. */
export const OID = {
  data: "1.2.840.113549.1.7.1",
  envelopedData: "1.2.840.113549.1.7.3",
  signedData: "1.2.840.113549.1.7.2",
  authEnvelopedData: "1.2.840.113549.1.9.16.1.23",
  ecPublicKey: "1.2.840.10045.2.1",
  rsaEncryption: "1.2.840.113549.1.1.1",
  rsaesOaep: "1.2.840.113549.1.1.7",
  mgf1: "1.2.840.113549.1.1.8",
  pSpecified: "1.2.840.113549.1.1.9",
  sha256: "2.16.840.1.101.3.4.2.1",
  /** RFC 5753 §7.1.4: ANSI X9.63 KDF with SHA-256. */
  dhSinglePassStdDhSha256Kdf: "1.3.132.1.11.1",
  aes256Wrap: "2.16.840.1.101.3.4.1.45",
  aes256Cbc: "2.16.840.1.101.3.4.1.42",
} as const;

export const HASHES: Record<string, KdfHash> = {
  "1.3.14.3.2.26": "sha1",
  "2.16.840.1.101.3.4.2.4": "sha224",
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};

/** RFC 5753 §7.1.4 (and RFC 3278 for SHA-1): the key agreement scheme names the KDF's hash. */
export const ECDH_SCHEMES: Record<string, { name: string; hash: KdfHash }> = {
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
export const KEY_WRAPS: Record<string, { name: string; cipher: string; bytes: number }> = {
  "2.16.840.1.101.3.4.1.5": { name: "id-aes128-wrap", cipher: "id-aes128-wrap", bytes: 16 },
  "2.16.840.1.101.3.4.1.25": { name: "id-aes192-wrap", cipher: "id-aes192-wrap", bytes: 24 },
  "2.16.840.1.101.3.4.1.45": { name: "id-aes256-wrap", cipher: "id-aes256-wrap", bytes: 32 },
};

/** RFC 3565 §4.1: AES-CBC content encryption, the IV in the parameters. */
export const CONTENT_CIPHERS: Record<string, { name: string; cipher: string; bytes: number }> = {
  "2.16.840.1.101.3.4.1.2": { name: "aes-128-cbc", cipher: "aes-128-cbc", bytes: 16 },
  "2.16.840.1.101.3.4.1.22": { name: "aes-192-cbc", cipher: "aes-192-cbc", bytes: 24 },
  "2.16.840.1.101.3.4.1.42": { name: "aes-256-cbc", cipher: "aes-256-cbc", bytes: 32 },
};

/** Ciphers seen in the wild that idmint refuses in EnvelopedData, by name for the message. */
export const KNOWN_REFUSED_CIPHERS: Record<string, string> = {
  "1.2.840.113549.3.7": "des-ede3-cbc",
  "1.3.14.3.2.7": "des-cbc",
  "1.2.840.113549.3.2": "rc2-cbc",
  "2.16.840.1.101.3.4.1.6": "aes-128-gcm",
  "2.16.840.1.101.3.4.1.46": "aes-256-gcm",
};

/** The named curves a unit key may be on, by OID. */
export const CURVES: Record<string, { name: "P-256" | "P-384" | "P-521"; fieldBytes: number }> = {
  "1.2.840.10045.3.1.7": { name: "P-256", fieldBytes: 32 },
  "1.3.132.0.34": { name: "P-384", fieldBytes: 48 },
  "1.3.132.0.35": { name: "P-521", fieldBytes: 66 },
};
export const CURVE_BY_NAME: Record<string, string> = { prime256v1: "1.2.840.10045.3.1.7", secp384r1: "1.3.132.0.34", secp521r1: "1.3.132.0.35" };

/** The object identifiers of CMS AuthEnvelopedData with AES-GCM. */
export const AUTH_OID = {
  /** RFC 5083 §1.1: id-ct-authEnvelopedData. */
  authEnvelopedData: "1.2.840.113549.1.9.16.1.23",
  /** RFC 5084 §3.2: id-aes128-GCM, id-aes192-GCM, id-aes256-GCM. */
  aes128Gcm: "2.16.840.1.101.3.4.1.6",
  aes192Gcm: "2.16.840.1.101.3.4.1.26",
  aes256Gcm: "2.16.840.1.101.3.4.1.46",
} as const;
