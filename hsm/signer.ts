/** The key algorithms idmint creates in, and signs with from, an HSM. */
export type KeyAlgorithm = "EC-P256" | "EC-P384" | "RSA-2048" | "RSA-3072";

export const KEY_ALGORITHMS: readonly KeyAlgorithm[] = ["EC-P256", "EC-P384", "RSA-2048", "RSA-3072"];

/**
 * Anything that signs with a private key it never reveals. `sign` hashes `data` with
 * `hash` and returns the signature in WebCrypto form: r||s for ECDSA, the PKCS#1 v1.5
 * block for RSA.
 */
export interface Signer {
  readonly algorithm: KeyAlgorithm;
  readonly hash: "SHA-256" | "SHA-384";
  /** DER SubjectPublicKeyInfo of the key pair. */
  readonly publicKeySpki: Uint8Array<ArrayBuffer>;
  sign(data: Uint8Array, options?: SignOptions): Promise<Uint8Array<ArrayBuffer>>;
}

export interface SignOptions {
  /**
   * Told once if the signature had to be asked for again because the HSM went away while
   * it was under way: the HSM may have made the first one too, and the audit says so.
   */
  onRetry?(): void;
}

export function hashFor(algorithm: KeyAlgorithm): "SHA-256" | "SHA-384" {
  return algorithm === "EC-P384" ? "SHA-384" : "SHA-256";
}
