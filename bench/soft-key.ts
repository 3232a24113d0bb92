/** A key in this process for benchmarks whose subject is not the HSM's signing latency. */
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import type { Signer } from "../hsm/index.js";

export interface SoftKey {
  signer: Signer;
  privateKey: KeyObject;
}

/** A node:crypto key behind the hsm Signer interface, its private key kept for fast signing. */
export function softKey(curve: "P-256" | "P-384"): SoftKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: curve });
  const hash = curve === "P-384" ? "SHA-384" : "SHA-256";
  return {
    privateKey,
    signer: {
      algorithm: curve === "P-384" ? "EC-P384" : "EC-P256",
      hash,
      publicKeySpki: new Uint8Array(publicKey.export({ type: "spki", format: "der" })),
      sign: async (data) => new Uint8Array(sign(hash === "SHA-384" ? "sha384" : "sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" })),
    },
  };
}
