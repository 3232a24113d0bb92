import { createPublicKey } from "node:crypto";
import { PkiError } from "./errors.js";
import { assertSerialSyntax } from "./profiles.js";
import { x509 } from "./x509.js";

export interface CheckedCsr {
  /** DER SubjectPublicKeyInfo of the unit's key: what the IDevID will certify. */
  publicKeySpki: Uint8Array<ArrayBuffer>;
  keyType: "EC-P256" | "EC-P384" | "EC-P521" | `RSA-${number}`;
  subjectSerial: string;
}

// Named curves at or above P-256 security; no curve below P-256 (issue policy, SP 800-57).
const ALLOWED_CURVES: Record<string, CheckedCsr["keyType"]> = {
  prime256v1: "EC-P256",
  secp384r1: "EC-P384",
  secp521r1: "EC-P521",
};
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

function parse(input: string | Uint8Array): x509.Pkcs10CertificateRequest {
  try {
    if (typeof input === "string") return new x509.Pkcs10CertificateRequest(input);
    const text = Buffer.from(input).toString("latin1");
    return text.includes("-----BEGIN") ? new x509.Pkcs10CertificateRequest(text) : new x509.Pkcs10CertificateRequest(new Uint8Array(input));
  } catch (e) {
    throw new PkiError("input", "CSR_INVALID", "the CSR is not a PKCS#10 request in PEM or DER: give the unit's CSR file as written by `openssl req -new`", { cause: e });
  }
}

/**
 * The station's checks on a unit's CSR before the CA signs anything: the key is of an
 * allowed type and size, the self-signature verifies (proof of possession, RFC 2986 §3),
 * and the subject carries exactly the serial being issued. Everything in the CSR is
 * attacker-controlled.
 */
export async function checkCsr(input: string | Uint8Array, expectedSerial: string): Promise<CheckedCsr> {
  assertSerialSyntax(expectedSerial);
  const csr = parse(input);
  const spki = new Uint8Array(csr.publicKey.rawData);

  let keyType: CheckedCsr["keyType"];
  let key;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  } catch (e) {
    throw new PkiError("input", "CSR_KEY_REFUSED", "the CSR's public key cannot be read: the unit must use EC P-256/P-384/P-521 or RSA >= 2048", { cause: e });
  }
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "ec") {
    const curve = details.namedCurve ?? "unknown";
    const allowed = ALLOWED_CURVES[curve];
    if (!allowed) throw new PkiError("input", "CSR_KEY_REFUSED", `the CSR's key is on curve ${curve}, which is refused: the unit must use P-256, P-384 or P-521`);
    keyType = allowed;
  } else if (key.asymmetricKeyType === "rsa") {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
      throw new PkiError("input", "CSR_KEY_REFUSED", `the CSR's key is RSA-${bits}, which is refused: the unit must use RSA of 2048 to 8192 bits, or EC P-256 or larger`);
    }
    keyType = `RSA-${bits}`;
  } else {
    throw new PkiError("input", "CSR_KEY_REFUSED", `the CSR's key type ${key.asymmetricKeyType ?? "unknown"} is refused: the unit must use EC P-256/P-384/P-521 or RSA >= 2048`);
  }

  let verified = false;
  try {
    verified = await csr.verify();
  } catch {
    verified = false;
  }
  if (!verified) {
    throw new PkiError("verify", "CSR_SIGNATURE", "the CSR's self-signature does not verify (no proof of possession): have the unit generate a new CSR");
  }

  const serials = csr.subjectName.getField("2.5.4.5");
  if (serials.length !== 1 || serials[0] !== expectedSerial) {
    const found = serials.length === 0 ? "no serialNumber" : `serialNumber ${serials.join(", ")}`;
    throw new PkiError("input", "CSR_SERIAL_MISMATCH", `the CSR's subject has ${found}, not ${expectedSerial}: issue for the serial in the CSR or have the unit make a CSR with serialNumber=${expectedSerial}`);
  }
  return { publicKeySpki: spki, keyType, subjectSerial: expectedSerial };
}
