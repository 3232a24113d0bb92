import pkcs11js from "pkcs11js";
import { createPublicKey } from "node:crypto";
import { HsmError, ckr, pkcs11Failure } from "../errors.js";
import { describeKey } from "../uri.js";
import { existingKey } from "./lookup.js";
import { CURVES, isEc, type EcAlgorithm } from "./public-key.js";
import type { Connection, Handle } from "./session.js";

/**
 * ECDH between an EC private key in the token and a peer's public point (uncompressed,
 * 0x04||X||Y): CKM_ECDH1_DERIVE (PKCS#11 mechanisms §2.3, elliptic curve) with the null KDF
 * (SoftHSM offers no other), so the token returns Z, the shared secret's x-coordinate, and
 * the caller runs its KDF (e.g. RFC 5753 §3.1.2 for CMS). Z is derived as a session object
 * that is extractable and not sensitive, read once and destroyed at once; the private key
 * never leaves the token. The key must have been made with `derive: true`.
 */
export function deriveEcdh(conn: Connection, uriText: string, peerPoint: Uint8Array): Uint8Array {
  const { uri, login, pair, algorithm } = existingKey(conn, uriText, "check the key URI");
  if (!isEc(algorithm)) {
    throw new HsmError("UNSUPPORTED_ALGORITHM", `${describeKey(uri)} is an ${algorithm} key: ECDH needs an EC key`);
  }
  const fieldBytes = CURVES[algorithm].sigBytes / 2;
  const point = Buffer.from(peerPoint);
  if (!onCurve(algorithm, point)) throw new HsmError("UNSUPPORTED_ALGORITHM", `the peer's public key is not an uncompressed point on ${CURVES[algorithm].jwk}`);

  const mechanism: pkcs11js.Mechanism = {
    mechanism: pkcs11js.CKM_ECDH1_DERIVE,
    parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: point } as pkcs11js.ECDH1,
  };
  const template: pkcs11js.Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_SENSITIVE, value: false },
    { type: pkcs11js.CKA_EXTRACTABLE, value: true },
    { type: pkcs11js.CKA_VALUE_LEN, value: fieldBytes },
  ];
  const p11 = conn.p11;
  let secret: Handle;
  try {
    secret = p11.C_DeriveKey(login.session, mechanism, pair.privateKey, template);
  } catch (e) {
    const r = ckr(e);
    if (r?.name === "CKR_KEY_FUNCTION_NOT_PERMITTED" || r?.name === "CKR_KEY_TYPE_INCONSISTENT") {
      throw new HsmError("KEY_NOT_PERMITTED", `${describeKey(uri)} may not derive (CKA_DERIVE is false, ${r.name}): it was made for signing only; a key that agrees keys must be made with derive allowed`, { cause: e });
    }
    throw pkcs11Failure(`deriving an ECDH secret with ${describeKey(uri)}`, e);
  }
  try {
    const [value] = p11.C_GetAttributeValue(login.session, secret, [{ type: pkcs11js.CKA_VALUE }]);
    return new Uint8Array(value!.value as Buffer);
  } catch (e) {
    throw pkcs11Failure(`reading the ECDH secret of ${describeKey(uri)}`, e);
  } finally {
    try {
      p11.C_DestroyObject(login.session, secret);
    } catch {
      // A session object dies with its session at the latest (close()).
    }
  }
}

/** SEC 1 §3.2.2 public key validation, before the token sees the point: Node refuses a point that is not on the curve. */
function onCurve(algorithm: EcAlgorithm, point: Buffer): boolean {
  const fieldBytes = CURVES[algorithm].sigBytes / 2;
  if (point.length !== 1 + 2 * fieldBytes || point[0] !== 0x04) return false;
  try {
    createPublicKey({ key: { kty: "EC", crv: CURVES[algorithm].jwk, x: point.subarray(1, 1 + fieldBytes).toString("base64url"), y: point.subarray(1 + fieldBytes).toString("base64url") }, format: "jwk" });
    return true;
  } catch {
    return false;
  }
}
