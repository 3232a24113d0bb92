import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { webcrypto } from "node:crypto";
import type { Signer } from "../hsm/index.js";
import { ecdsaSignatureDer } from "./der-models.js";
import { PkiError } from "./errors.js";

// @peculiar/x509 hashes and verifies through WebCrypto; Node's own is the provider for
// everything except the signatures our HSM makes.
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };

/** WebCrypto algorithm objects for a signer's key, as @peculiar/x509 expects them. */
export function webCryptoAlgorithm(signer: Signer): { key: Algorithm & Record<string, unknown>; signing: Algorithm & Record<string, unknown> } {
  if (signer.algorithm.startsWith("EC-")) {
    const namedCurve = signer.algorithm === "EC-P384" ? "P-384" : "P-256";
    return { key: { name: "ECDSA", namedCurve }, signing: { name: "ECDSA", hash: signer.hash } };
  }
  return { key: { name: "RSASSA-PKCS1-v1_5", hash: signer.hash }, signing: { name: "RSASSA-PKCS1-v1_5", hash: signer.hash } };
}

/**
 * A WebCrypto provider whose only private-key operation is our signer, so that
 * X509CertificateGenerator signs with a key it never holds (the provider is a parameter
 * of `create`, as in @peculiar/x509's own HSM examples).
 */
export function signingProvider(signer: Signer): { crypto: Crypto; signingKey: CryptoKey; signingAlgorithm: Algorithm } {
  const alg = webCryptoAlgorithm(signer);
  const signingKey = { algorithm: alg.key, type: "private", extractable: false, usages: ["sign"] } as unknown as CryptoKey;
  const subtle = Object.create(webcrypto.subtle) as SubtleCrypto;
  subtle.sign = async (_algorithm, key, data) => {
    if (key !== signingKey) throw new PkiError("SIGNER_MISMATCH", "this provider signs only with its HSM key");
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array((data as ArrayBufferView).buffer, (data as ArrayBufferView).byteOffset, (data as ArrayBufferView).byteLength);
    const sig = await signer.sign(bytes);
    return sig.buffer.slice(sig.byteOffset, sig.byteOffset + sig.byteLength) as ArrayBuffer;
  };
  const crypto = {
    subtle,
    getRandomValues: webcrypto.getRandomValues.bind(webcrypto),
    randomUUID: webcrypto.randomUUID.bind(webcrypto),
  } as unknown as Crypto;
  return { crypto, signingKey, signingAlgorithm: alg.signing };
}

/** r || s of each ECDSA key size: two field elements. */
const ECDSA_RAW_BYTES: Record<string, number> = { "EC-P256": 64, "EC-P384": 96, "EC-P521": 132 };

/** A signer's raw signature as X.509/CMS and Go's SignASN1 carry it: DER ECDSA-Sig-Value, or the RSA block as is. */
export function derSignature(signer: { readonly algorithm: string }, raw: Uint8Array): Uint8Array {
  if (!signer.algorithm.startsWith("EC-")) return raw;
  const expected = ECDSA_RAW_BYTES[signer.algorithm] ?? 64;
  if (raw.length !== expected) throw new PkiError("SIGNATURE_MALFORMED", `the HSM returned an ${signer.algorithm} signature of ${raw.length} bytes, not ${expected}: check the token and its key`);
  return new Uint8Array(ecdsaSignatureDer(raw));
}
