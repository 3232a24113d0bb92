/**
 * RFC 4210 §5.1.3.1 PasswordBasedMac: the protection a unit without a certificate puts on its
 * CMP messages, keyed by the per-line bootstrap secret. Computing and checking, with limits on
 * the attacker-chosen parameters so a message cannot make the station hash for long.
 */
import { createHash, createHmac, hash, randomBytes, timingSafeEqual } from "node:crypto";
import { arcs, oid } from "../../pki/index.js";
import { UnitError } from "../errors.js";
import { ID_PASSWORD_BASED_MAC, PBMParameterModel, headerDer, intOf, pkiMessageDer, protectedPartDer, type CmpHeader, type CmpMessage, type PBMParameterDer } from "./models.js";

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

/**
 * Keys derived before from one secret, by (OWF, iterations, salt): the iterated hash costs
 * ~1 µs an iteration, too much to pay twice in a transaction. RFC 4210 §5.1.3.1 recommends
 * that the PBMParameter stay the same for all messages of one transaction (ir/ip/certConf/
 * pkiConf) for exactly this: so a unit keeps its salt for its request and its certConf, the
 * station one salt a run for its answers, and each keeps the keys it derived. Bounded, oldest
 * out first, so that salts a sender chooses cannot grow memory; a key evicted is derived again.
 */
export class PbmKeyCache {
  private readonly keys = new Map<string, Buffer>();

  constructor(private readonly limit: number) {}

  get(id: string): Buffer | undefined {
    return this.keys.get(id);
  }

  set(id: string, key: Buffer): void {
    if (this.keys.size >= this.limit) this.keys.delete(this.keys.keys().next().value!);
    this.keys.set(id, key);
  }
}

export interface PbmOptions {
  /** Defaults to 16 random octets. */
  salt?: Uint8Array;
  /** Defaults to 10,000; within PBM_MIN_ITERATIONS..PBM_MAX_ITERATIONS. */
  iterationCount?: number;
  /** OWF OID; defaults to SHA-256. */
  owf?: string;
  /** MAC OID; defaults to HMAC-SHA256 (RFC 9481 §6.2). */
  mac?: string;
  keyCache?: PbmKeyCache;
}

/** PBMParameter with its OIDs dotted and its count a number. */
interface PbmParameter {
  salt: Buffer;
  owf: string;
  iterationCount: number;
  mac: string;
}

function unsupported(message: string): UnitError {
  return new UnitError("CMP_PROTECTION_UNSUPPORTED", message);
}

/** The hash names for the parameters, or a typed refusal naming what is outside the limits. */
function checkParameters(p: PbmParameter): { owf: string; mac: string } {
  const owf = HASHES[p.owf];
  const mac = HMACS[p.mac];
  if (!owf) throw unsupported(`PBM one-way function ${p.owf} is not supported; use SHA-1 or SHA-2`);
  if (!mac) throw unsupported(`PBM MAC ${p.mac} is not supported; use HMAC with SHA-1 or SHA-2`);
  if (!Number.isSafeInteger(p.iterationCount) || p.iterationCount < PBM_MIN_ITERATIONS || p.iterationCount > PBM_MAX_ITERATIONS) {
    throw unsupported(`PBM iteration count ${p.iterationCount} is outside ${PBM_MIN_ITERATIONS}..${PBM_MAX_ITERATIONS}; set the client's count within it`);
  }
  if (p.salt.byteLength > PBM_MAX_SALT_BYTES) throw unsupported(`PBM salt of ${p.salt.byteLength} octets is longer than ${PBM_MAX_SALT_BYTES}`);
  return { owf, mac };
}

/** RFC 4210 §5.1.3.1: key = OWF^iterationCount(secret || salt), then MAC(key, DER(ProtectedPart)). */
function pbmMac(p: PbmParameter, secret: Uint8Array, protectedPart: Uint8Array, cache?: PbmKeyCache): Buffer {
  const { owf, mac } = checkParameters(p);
  const id = cache ? `${owf}:${p.iterationCount}:${p.salt.toString("hex")}` : "";
  let key = cache?.get(id);
  if (!key) {
    key = createHash(owf).update(secret).update(p.salt).digest();
    // crypto.hash, one call per iteration: ~0.7 µs against createHash's ~2.8 µs here.
    for (let i = 1; i < p.iterationCount; i++) key = hash(owf, key, "buffer");
    cache?.set(id, key);
  }
  return createHmac(mac, key).update(protectedPart).digest();
}

/** The PBMParameter of a message's protectionAlg, or a typed refusal if it is not PasswordBasedMac. */
export function pbmParameterOf(header: CmpHeader): PbmParameter {
  const alg = header.protectionAlg;
  if (!alg) throw unsupported("the PKIMessage carries no protection; send it with -secret (PasswordBasedMac)");
  if (oid(alg.algorithm) !== ID_PASSWORD_BASED_MAC || !alg.parameters) {
    throw unsupported(`protection ${oid(alg.algorithm)} is not PasswordBasedMac (${ID_PASSWORD_BASED_MAC}); send the request with -secret`);
  }
  let p: PBMParameterDer;
  try {
    p = PBMParameterModel.decode(alg.parameters, "der");
  } catch (cause) {
    throw new UnitError("CMP_MALFORMED", "the PasswordBasedMac parameters are not a PBMParameter (RFC 4210 §5.1.3.1)", { cause });
  }
  return { salt: p.salt, owf: oid(p.owf.algorithm), iterationCount: intOf(p.iterationCount), mac: oid(p.mac.algorithm) };
}

/**
 * The DER of a PKIMessage with `header`, the body given as DER, and extraCerts as DER,
 * PasswordBasedMac-protected (`secret` undefined: unprotected); the header's protectionAlg is
 * set here. Header and body are written once, for both the MAC and the message.
 */
export function protectedMessageDer(header: CmpHeader, body: Buffer, extraCerts: Buffer[] | undefined, secret: Uint8Array | undefined, options: PbmOptions = {}): Buffer {
  if (!secret) return pkiMessageDer(headerDer(header), body, undefined, extraCerts);
  const params: PbmParameter = { salt: Buffer.from(options.salt ?? randomBytes(16)), owf: options.owf ?? OID_SHA256, iterationCount: options.iterationCount ?? 10_000, mac: options.mac ?? OID_HMAC_SHA256 };
  checkParameters(params);
  const parameters = PBMParameterModel.encode({ salt: params.salt, owf: { algorithm: arcs(params.owf) }, iterationCount: params.iterationCount, mac: { algorithm: arcs(params.mac) } }, "der");
  const protectedHeader = headerDer({ ...header, protectionAlg: { algorithm: arcs(ID_PASSWORD_BASED_MAC), parameters } });
  const mac = pbmMac(params, secret, protectedPartDer(protectedHeader, body), options.keyCache);
  return pkiMessageDer(protectedHeader, body, mac, extraCerts);
}

/** Checks a message's PasswordBasedMac with `secret` over its header and body as received, comparing in constant time; throws a typed error if it fails. */
export function verifyPbm(message: CmpMessage, secret: Uint8Array, keyCache?: PbmKeyCache): void {
  const params = pbmParameterOf(message.header);
  if (!message.protection) throw new UnitError("CMP_PROTECTION_INVALID", "the PKIMessage names PasswordBasedMac but carries no protection bits");
  const expected = pbmMac(params, secret, protectedPartDer(message.headerDer, message.bodyDer), keyCache);
  const got = message.protection;
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
    throw new UnitError("CMP_PROTECTION_INVALID", "the PKIMessage's PasswordBasedMac does not match: the unit's secret differs from the line's, or the message was altered");
  }
}
