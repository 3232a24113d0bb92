import type { KeyAlgorithm, Signer } from "./signer.js";

/** How `createKey` makes a key pair beyond the defaults (sensitive, never extractable, sign only). */
export interface CreateKeyOptions {
  /**
   * EC keys only: the private key may also agree keys (ECDH, see KeyAgreement); a unit's
   * IDevID key needs it so operators can encrypt to the unit (RFC 8886 §4). Default false:
   * a CA key signs and does nothing else.
   */
  derive?: boolean;
  /**
   * RSA keys only: the private key may also decrypt (see Decrypter); a unit's RSA IDevID key
   * needs it so operators can encrypt to the unit by key transport (RFC 8886 §4). Default
   * false: a CA key signs and does nothing else.
   */
  decrypt?: boolean;
}

/**
 * Where keys named by PKCS#11 URI (RFC 7512) live: signers over existing keys, keys made
 * for the ceremony and undone if it fails, and `close`, which is idempotent. Abilities
 * not every key store has are interfaces of their own (KeyAgreement, Decrypter).
 */
export interface KeyManager {
  /** A signer for an existing key; a missing key is an error and never leads to creating one. */
  signer(uri: string): Signer;
  /** A new key pair, never replacing one; its signer. */
  createKey(uri: string, algorithm: KeyAlgorithm, options?: CreateKeyOptions): Signer;
  /** Removes a key pair; no such key is no error. */
  destroyKey(uri: string): void;
  close(): void;
}
