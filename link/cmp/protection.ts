/**
 * RFC 4210 §5.1.3.1 PasswordBasedMac: the protection a unit without a certificate puts on its
 * CMP messages, keyed by the per-line bootstrap secret. Computing and checking, with limits on
 * the attacker-chosen parameters so a message cannot make the station hash for long.
 */
import { createHash, createHmac, hash, randomBytes, timingSafeEqual } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier } from "@peculiar/asn1-x509";
import { UnitError } from "../errors.js";
import { ID_PASSWORD_BASED_MAC, PBMParameter, PKIHeader, PKIMessage } from "./asn1.js";
import { pkiMessageDer, protectedPartDer as partDer } from "./der.js";

/** The iteration counts the station accepts: below, the secret is too cheap to guess; above, a message buys CPU time. */
export const PBM_MIN_ITERATIONS = 100;
export const PBM_MAX_ITERATIONS = 100_000;
/** RFC 4210 §5.1.3.1 asks for a salt of at least 8 octets in practice; longer than this is refused as abuse. */
const PBM_MAX_SALT_BYTES = 128;

/** OWF OIDs (RFC 9481 §6.1) to node:crypto hash names. */
const HASHES: Record<string, string> = {
  "1.3.14.3.2.26": "sha1",
  "2.16.840.1.101.3.4.2.4": "sha224",
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};
/** MAC OIDs (RFC 4210's hmac-sha1, and RFC 9481 §6.2's hmacWithSHAxxx) to the HMAC's hash. */
const HMACS: Record<string, string> = {
  "1.3.6.1.5.5.8.1.2": "sha1",
  "1.2.840.113549.2.7": "sha1",
  "1.2.840.113549.2.8": "sha224",
  "1.2.840.113549.2.9": "sha256",
  "1.2.840.113549.2.10": "sha384",
  "1.2.840.113549.2.11": "sha512",
};
const OID_SHA256 = "2.16.840.1.101.3.4.2.1";
const OID_HMAC_SHA256 = "1.2.840.113549.2.9";

export interface PbmOptions {
  /** Defaults to 16 random octets. */
  salt?: Uint8Array;
  /** Defaults to 10,000; within PBM_MIN_ITERATIONS..PBM_MAX_ITERATIONS. */
  iterationCount?: number;
  /** OWF OID; defaults to SHA-256. */
  owf?: string;
  /** MAC OID; defaults to HMAC-SHA256 (RFC 9481 §6.2). */
  mac?: string;
  /** Keys derived before, for one secret: with a fixed salt, the iterations are paid once. */
  keyCache?: PbmKeyCache;
}

function unsupported(message: string): UnitError {
  return new UnitError("CMP_PROTECTION_UNSUPPORTED", message);
}

/** The hash names for the parameters, or a typed refusal naming what is outside the limits. */
function checkParameters(p: PBMParameter): { owf: string; mac: string } {
  const owf = HASHES[p.owf.algorithm];
  const mac = HMACS[p.mac.algorithm];
  if (!owf) throw unsupported(`PBM one-way function ${p.owf.algorithm} is not supported; use SHA-1 or SHA-2`);
  if (!mac) throw unsupported(`PBM MAC ${p.mac.algorithm} is not supported; use HMAC with SHA-1 or SHA-2`);
  if (!Number.isSafeInteger(p.iterationCount) || p.iterationCount < PBM_MIN_ITERATIONS || p.iterationCount > PBM_MAX_ITERATIONS) {
    throw unsupported(`PBM iteration count ${p.iterationCount} is outside ${PBM_MIN_ITERATIONS}..${PBM_MAX_ITERATIONS}; set the client's count within it`);
  }
  if (p.salt.byteLength > PBM_MAX_SALT_BYTES) throw unsupported(`PBM salt of ${p.salt.byteLength} octets is longer than ${PBM_MAX_SALT_BYTES}`);
  return { owf, mac };
}

/**
 * Derived keys by parameters, for a party whose own salt repeats (the station's answers): the
 * iterated hash costs ~1 µs an iteration in Node, too much to pay for every message.
 */
export type PbmKeyCache = Map<string, Buffer>;
const MAX_CACHED_KEYS = 16;

/** RFC 4210 §5.1.3.1: key = OWF^iterationCount(secret || salt), then MAC(key, DER(ProtectedPart)). */
function pbmMac(p: PBMParameter, secret: Uint8Array, protectedPart: Uint8Array, cache?: PbmKeyCache): Buffer {
  const { owf, mac } = checkParameters(p);
  const salt = new Uint8Array(p.salt.buffer);
  const id = cache ? `${owf}:${p.iterationCount}:${Buffer.from(salt).toString("hex")}` : "";
  let key = cache?.get(id);
  if (!key) {
    key = createHash(owf).update(secret).update(salt).digest();
    // crypto.hash, one call per iteration: ~0.7 µs against createHash's ~2.8 µs here.
    for (let i = 1; i < p.iterationCount; i++) key = hash(owf, key, "buffer");
    if (cache) {
      if (cache.size >= MAX_CACHED_KEYS) cache.clear();
      cache.set(id, key);
    }
  }
  return createHmac(mac, key).update(protectedPart).digest();
}

/** DER(ProtectedPart) from the header and body bytes as received, or as serialized for a message we built. */
function protectedPartDer(message: PKIMessage): Uint8Array {
  const header = message.headerRaw ?? AsnConvert.serialize(message.header);
  const body = message.bodyRaw ?? AsnConvert.serialize(message.body);
  return partDer(new Uint8Array(header), new Uint8Array(body));
}

/** The PBMParameter of a message's protectionAlg, or a typed refusal if it is not PasswordBasedMac. */
export function pbmParameterOf(message: PKIMessage): PBMParameter {
  const alg = message.header.protectionAlg;
  if (!alg) throw unsupported("the PKIMessage carries no protection; send it with -secret (PasswordBasedMac)");
  if (alg.algorithm !== ID_PASSWORD_BASED_MAC || !alg.parameters) {
    throw unsupported(`protection ${alg.algorithm} is not PasswordBasedMac (${ID_PASSWORD_BASED_MAC}); send the request with -secret`);
  }
  try {
    return AsnConvert.parse(alg.parameters, PBMParameter);
  } catch (cause) {
    throw new UnitError("CMP_MALFORMED", "the PasswordBasedMac parameters are not a PBMParameter (RFC 4210 §5.1.3.1)", { cause });
  }
}

/** The PBM parameters for `options`, checked, and `header` with them as its protectionAlg. */
function pbmHeader(header: PKIHeader, options: PbmOptions): { params: PBMParameter; header: PKIHeader } {
  const params = new PBMParameter({
    salt: new OctetString(options.salt ?? randomBytes(16)),
    owf: new AlgorithmIdentifier({ algorithm: options.owf ?? OID_SHA256 }),
    iterationCount: options.iterationCount ?? 10_000,
    mac: new AlgorithmIdentifier({ algorithm: options.mac ?? OID_HMAC_SHA256 }),
  });
  checkParameters(params);
  return { params, header: new PKIHeader({ ...header, protectionAlg: new AlgorithmIdentifier({ algorithm: ID_PASSWORD_BASED_MAC, parameters: AsnConvert.serialize(params) }) }) };
}

/**
 * The DER of a PKIMessage with `header`, the body given as DER, and extraCerts as DER,
 * PasswordBasedMac-protected (`secret` undefined: unprotected). The body is serialized by the
 * caller once, for both the MAC and the message; the encoding is PKIMessage's own.
 */
export function protectedMessageDer(header: PKIHeader, bodyDer: ArrayBuffer, extraCerts: ArrayBuffer[] | undefined, secret: Uint8Array | undefined, options: PbmOptions = {}): Uint8Array {
  const body = new Uint8Array(bodyDer);
  const extra = extraCerts?.map((c) => new Uint8Array(c));
  if (!secret) return pkiMessageDer(new Uint8Array(AsnConvert.serialize(header)), body, undefined, extra);
  const protectedHeader = pbmHeader(header, options);
  const headerDer = new Uint8Array(AsnConvert.serialize(protectedHeader.header));
  const mac = pbmMac(protectedHeader.params, secret, partDer(headerDer, body), options.keyCache);
  return pkiMessageDer(headerDer, body, mac, extra);
}

/**
 * Sets the header's protectionAlg to PasswordBasedMac and returns the message with its
 * protection computed over the serialized header and body.
 */
export function protectWithPbm(message: PKIMessage, secret: Uint8Array, options: PbmOptions = {}): PKIMessage {
  const { params, header } = pbmHeader(message.header, options);
  const unprotected = new PKIMessage({ header, body: message.body, extraCerts: message.extraCerts });
  const mac = pbmMac(params, secret, protectedPartDer(unprotected), options.keyCache);
  return new PKIMessage({ ...unprotected, protection: new Uint8Array(mac).buffer });
}

/** Checks a message's PasswordBasedMac with `secret`, comparing in constant time; throws a typed error if it fails. */
export function verifyPbm(message: PKIMessage, secret: Uint8Array, keyCache?: PbmKeyCache): void {
  const params = pbmParameterOf(message);
  if (!message.protection) throw new UnitError("CMP_PROTECTION_INVALID", "the PKIMessage names PasswordBasedMac but carries no protection bits");
  const expected = pbmMac(params, secret, protectedPartDer(message), keyCache);
  const got = Buffer.from(message.protection);
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
    throw new UnitError("CMP_PROTECTION_INVALID", "the PKIMessage's PasswordBasedMac does not match: the unit's secret differs from the line's, or the message was altered");
  }
}
