import pkcs11js from "pkcs11js";
import * as asn1js from "asn1js";
import { createPublicKey } from "node:crypto";
import { HsmError } from "../errors.js";
import { KEY_ALGORITHMS, type KeyAlgorithm } from "../signer.js";
import type { Handle } from "./session.js";

export type EcAlgorithm = "EC-P256" | "EC-P384";

export const CURVES: Record<EcAlgorithm, { oid: string; jwk: string; sigBytes: number }> = {
  "EC-P256": { oid: "1.2.840.10045.3.1.7", jwk: "P-256", sigBytes: 64 },
  "EC-P384": { oid: "1.3.132.0.34", jwk: "P-384", sigBytes: 96 },
};
const CURVE_BY_OID = new Map<string, EcAlgorithm>(Object.entries(CURVES).map(([alg, c]) => [c.oid, alg as EcAlgorithm]));

export function isEc(algorithm: KeyAlgorithm): algorithm is EcAlgorithm {
  return algorithm === "EC-P256" || algorithm === "EC-P384";
}

/** The modulus length in bytes of an RSA algorithm (RSA-2048: 256). */
export function rsaBytes(algorithm: KeyAlgorithm): number {
  return Number(algorithm.slice(4)) / 8;
}

/** The algorithm and DER SubjectPublicKeyInfo of a public key object, from its attributes. */
export function readPublicKey(p11: pkcs11js.PKCS11, session: Handle, publicKey: Handle): { algorithm: KeyAlgorithm; spki: Uint8Array<ArrayBuffer> } {
  const [typeAttr] = p11.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_KEY_TYPE }]);
  const keyType = ulong(typeAttr!.value as Buffer);
  if (keyType === pkcs11js.CKK_EC) {
    const [params, point] = p11.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_EC_PARAMS }, { type: pkcs11js.CKA_EC_POINT }]);
    const oid = asn1js.fromBER(params!.value as Buffer).result as asn1js.ObjectIdentifier;
    const algorithm = CURVE_BY_OID.get(oid.valueBlock.toString());
    if (!algorithm) throw new HsmError("KEY_UNSUPPORTED", `the key uses curve ${oid.valueBlock.toString()}; idmint signs with P-256 or P-384 only`);
    // PKCS#11 §2.3.3: CKA_EC_POINT is the DER OCTET STRING of the uncompressed point.
    const octets = asn1js.fromBER(point!.value as Buffer).result as asn1js.OctetString;
    const raw = Buffer.from(octets.valueBlock.valueHexView);
    const half = (raw.length - 1) / 2;
    const jwk = { kty: "EC", crv: CURVES[algorithm].jwk, x: raw.subarray(1, 1 + half).toString("base64url"), y: raw.subarray(1 + half).toString("base64url") };
    return { algorithm, spki: new Uint8Array(createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "der" })) };
  }
  if (keyType === pkcs11js.CKK_RSA) {
    const [n, e] = p11.C_GetAttributeValue(session, publicKey, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
    const modulus = n!.value as Buffer;
    const bits = (modulus[0] === 0 ? modulus.length - 1 : modulus.length) * 8;
    const algorithm = `RSA-${bits}` as KeyAlgorithm;
    if (!KEY_ALGORITHMS.includes(algorithm)) throw new HsmError("KEY_UNSUPPORTED", `the key is RSA-${bits}; idmint signs with RSA-2048 or RSA-3072 only`);
    const jwk = { kty: "RSA", n: modulus.toString("base64url"), e: (e!.value as Buffer).toString("base64url") };
    return { algorithm, spki: new Uint8Array(createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "der" })) };
  }
  throw new HsmError("KEY_UNSUPPORTED", `the key has PKCS#11 key type ${keyType}; idmint signs with EC or RSA keys only`);
}

/** A CK_ULONG attribute as the module wrote it (8 bytes on LP64, 4 elsewhere), little-endian on our hosts. */
function ulong(b: Buffer): number {
  return b.length === 8 ? Number(b.readBigUInt64LE(0)) : b.readUInt32LE(0);
}
