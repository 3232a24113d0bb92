import pkcs11js from "pkcs11js";
import { createHash } from "node:crypto";
import { pkcs11Failure } from "../errors.js";
import { hashFor, type KeyAlgorithm, type Signer } from "../signer.js";
import { CURVES, isEc, rsaBytes } from "./public-key.js";
import type { Connection, Handle, SessionSource } from "./session.js";

/**
 * A Signer over a private key in the token. ECDSA: SoftHSM 2.6 rejects CKM_ECDSA_SHA256,
 * so the host hashes and the token signs the digest with CKM_ECDSA (r||s out). RSA:
 * CKM_SHA256_RSA_PKCS, the PKCS#1 v1.5 block.
 */
/** The mechanism a key of `algorithm` signs with, by name too, saying where the data is hashed. */
export function signMechanism(algorithm: KeyAlgorithm): { mechanism: number; name: string } {
  if (isEc(algorithm)) return { mechanism: pkcs11js.CKM_ECDSA, name: `CKM_ECDSA (${hashFor(algorithm)} on the host)` };
  return { mechanism: pkcs11js.CKM_SHA256_RSA_PKCS, name: "CKM_SHA256_RSA_PKCS" };
}

export function pkcs11Signer(conn: Connection, sessions: SessionSource, privateKey: Handle, algorithm: KeyAlgorithm, spki: Uint8Array<ArrayBuffer>): Signer {
  const hash = hashFor(algorithm);
  const ec = isEc(algorithm);
  const out = Buffer.alloc(ec ? CURVES[algorithm].sigBytes : rsaBytes(algorithm));
  const mechanism = { mechanism: signMechanism(algorithm).mechanism };
  const hashName = hash === "SHA-384" ? "sha384" : "sha256";
  return {
    algorithm,
    hash,
    publicKeySpki: spki,
    async sign(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
      const input = ec ? createHash(hashName).update(data).digest() : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      try {
        // Init and sign run back to back without yielding, so no other caller can
        // interleave an operation on this session.
        return sessions.run((session) => {
          conn.p11.C_SignInit(session, mechanism, privateKey);
          return new Uint8Array(conn.p11.C_Sign(session, input, out));
        });
      } catch (e) {
        throw pkcs11Failure("signing", e);
      }
    },
  };
}
