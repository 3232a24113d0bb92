/** Optional ability of a KeyManager: ECDH with a private key that never leaves it. */
export interface KeyAgreement {
  /**
   * Z, the shared secret's x-coordinate, for a peer's uncompressed point (0x04||X||Y); the
   * caller runs its KDF (e.g. RFC 5753 §3.1.2 for CMS). A point not on the key's curve is
   * refused with UNSUPPORTED_ALGORITHM.
   */
  deriveEcdh(uri: string, peerPoint: Uint8Array): Uint8Array;
}
