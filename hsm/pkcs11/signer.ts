import pkcs11js from "pkcs11js";
import { createHash } from "node:crypto";
import { pkcs11Failure } from "../errors.js";
import { hashFor, type KeyAlgorithm, type Signer } from "../signer.js";
import { CURVES, isEc, rsaBytes } from "./public-key.js";
import type { Connection, Handle, SessionSource } from "./session.js";

/** The mechanism a key of `algorithm` signs with, by name too, saying where the data is hashed. */
export function signMechanism(algorithm: KeyAlgorithm): { mechanism: number; name: string } {
  if (isEc(algorithm)) return { mechanism: pkcs11js.CKM_ECDSA, name: `CKM_ECDSA (${hashFor(algorithm)} on the host)` };
  return { mechanism: pkcs11js.CKM_SHA256_RSA_PKCS, name: "CKM_SHA256_RSA_PKCS" };
}

/**
 * What the token is given to sign and how long its answer is. ECDSA: SoftHSM 2.6 rejects
 * CKM_ECDSA_SHA256, so the host hashes and the token signs the digest with CKM_ECDSA (r||s
 * out). RSA: CKM_SHA256_RSA_PKCS, the PKCS#1 v1.5 block.
 */
export function signInput(algorithm: KeyAlgorithm): { input(data: Uint8Array): Buffer; outBytes: number } {
  const ec = isEc(algorithm);
  const hashName = hashFor(algorithm) === "SHA-384" ? "sha384" : "sha256";
  return {
    input: (data) => (ec ? createHash(hashName).update(data).digest() : Buffer.from(data.buffer, data.byteOffset, data.byteLength)),
    outBytes: ec ? CURVES[algorithm].sigBytes : rsaBytes(algorithm),
  };
}

/** A Signer over a private key in the token, signing on the calling thread (see pool.ts for signing off it). */
export function pkcs11Signer(conn: Connection, sessions: SessionSource, privateKey: Handle, algorithm: KeyAlgorithm, spki: Uint8Array<ArrayBuffer>): Signer {
  const { input, outBytes } = signInput(algorithm);
  const out = Buffer.alloc(outBytes);
  const mechanism = { mechanism: signMechanism(algorithm).mechanism };
  return {
    algorithm,
    hash: hashFor(algorithm),
    publicKeySpki: spki,
    async sign(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
      const digest = input(data);
      try {
        // Init and sign run back to back without yielding, so no other caller can
        // interleave an operation on this session.
        return sessions.run((session) => {
          conn.p11.C_SignInit(session, mechanism, privateKey);
          return new Uint8Array(conn.p11.C_Sign(session, digest, out));
        });
      } catch (e) {
        throw pkcs11Failure("signing", e);
      }
    },
  };
}
