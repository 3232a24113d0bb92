/** The RSA encryption padding a Decrypter undoes. */
export type RsaPadding = "pkcs1" | "oaep-sha1";

/** Optional ability of a KeyManager: RSA decryption with a private key that never leaves it. */
export interface Decrypter {
  /** The message, or undefined when the ciphertext does not decrypt under this key. */
  decryptRsa(uri: string, ciphertext: Uint8Array, padding: RsaPadding): Uint8Array | undefined;
}
