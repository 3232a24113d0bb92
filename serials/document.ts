import canonicalize from "canonicalize";
import { createPublicKey, verify as nodeVerify } from "node:crypto";
import type { Signer } from "../hsm/index.js";
import { PKI_OID, checkChain, derSignature, parseCertificate, x509 } from "../pki/index.js";
import { SerialsError } from "./errors.js";

/**
 * How idmint ships a signed JSON document (allocation lists, usage reports): the payload,
 * and beside it a detached signature over the payload's RFC 8785 canonical bytes, with the
 * signer's certificate so a holder of the vendor root can check it offline.
 */
export interface SignedDocument<T> {
  payload: T;
  signature: {
    /** The signer's certificate, PEM; it must chain to the vendor root. */
    certificate: string;
    /** base64 of the DER ECDSA (or RSA PKCS#1 v1.5) signature over canonicalize(payload), SHA-256. */
    value: string;
  };
}

export function canonicalBytes(payload: unknown): Buffer {
  return Buffer.from(canonicalize(payload) ?? "", "utf8");
}

export async function signDocument<T>(payload: T, signer: Signer, certificatePem: string): Promise<SignedDocument<T>> {
  const raw = await signer.sign(canonicalBytes(payload));
  return { payload, signature: { certificate: certificatePem.trim() + "\n", value: Buffer.from(derSignature(signer, raw)).toString("base64") } };
}

export type SignerPurpose = "allocation-signer" | "station";

/** RFC 9336 id-kp-documentSigning: both the allocation signer and stations carry it. */

/**
 * Checks a signed document before anything in it is used: the shape, the signer's chain to
 * the pinned vendor root, the signer's purpose (its OU, set by the ceremony, and the
 * documentSigning EKU), and the signature over the canonical payload.
 */
export async function openDocument<T>(doc: unknown, root: x509.X509Certificate, purpose: SignerPurpose, what: string, at: Date): Promise<{ payload: T; signer: x509.X509Certificate }> {
  const d = doc as Partial<SignedDocument<T>>;
  const code = purpose === "station" ? "REPORT_SIGNATURE" : "ALLOCATION_SIGNATURE";
  if (!d || typeof d !== "object" || typeof d.payload !== "object" || d.payload === null || typeof d.signature?.certificate !== "string" || typeof d.signature?.value !== "string") {
    throw new SerialsError(purpose === "station" ? "REPORT_INVALID" : "ALLOCATION_INVALID", `${what} is not a signed idmint document (payload + signature): give the file idmint wrote`);
  }
  const cert = parseCertificate(d.signature.certificate, `the signer certificate of ${what}`);
  try {
    await checkChain(cert, [], root, at);
  } catch (e) {
    throw new SerialsError("ALLOCATION_SIGNER", `${what} is signed by ${cert.subject}, which does not chain to the vendor root: accept lists only from your vendor`, { cause: e });
  }
  const ou = cert.subjectName.getField(PKI_OID.organizationalUnit)[0];
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages.map(String) ?? [];
  const wantOu = purpose === "station" ? "Station" : "Allocation Signer";
  if (ou !== wantOu || !eku.includes(PKI_OID.documentSigning)) {
    throw new SerialsError("ALLOCATION_SIGNER", `${what} is signed by ${cert.subject}, which is not a${purpose === "station" ? " station" : "n allocation signer"} certificate`);
  }
  let ok = false;
  try {
    const key = createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: "der", type: "spki" });
    ok = nodeVerify("sha256", canonicalBytes(d.payload), { key, dsaEncoding: "der" }, Buffer.from(d.signature.value, "base64"));
  } catch {
    ok = false;
  }
  if (!ok) throw new SerialsError(code, `the signature on ${what} does not verify: the file was changed after signing; get an untouched copy`);
  return { payload: d.payload as T, signer: cert };
}
