import { generateKeyPairSync, sign } from "node:crypto";
import { DEFAULT_HW_TYPE_OID, systemClock, systemRandom } from "../../core/index.js";
import type { Signer } from "../../hsm/index.js";
import { issueFactoryCa, issueIdevid, issueRoot, x509 } from "../../pki/index.js";

/** A node:crypto key pair behind the hsm Signer interface: the tests' stand-in for a CA key in a token. */
export function softSigner(algorithm: "EC-P256" | "EC-P384" = "EC-P256"): Signer {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: algorithm === "EC-P384" ? "P-384" : "P-256" });
  const hash = algorithm === "EC-P384" ? "SHA-384" : "SHA-256";
  return {
    algorithm,
    hash,
    publicKeySpki: new Uint8Array(publicKey.export({ type: "spki", format: "der" })),
    sign: async (data) => new Uint8Array(sign(hash === "SHA-384" ? "sha384" : "sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" })),
  };
}

export interface TestPki {
  root: x509.X509Certificate;
  factoryCa: x509.X509Certificate;
  rootPem: string;
  chainPems: string[];
  /** Issues an IDevID for `spki` naming `serial`, as the station would. */
  issue(spki: Uint8Array, serial: string): Promise<x509.X509Certificate>;
}

/** A vendor root and a factory CA with software keys, made fresh for one test file. */
export async function makePki(organization = "Test Vendor"): Promise<TestPki> {
  const rootKey = softSigner("EC-P384");
  const root = await issueRoot({ signer: rootKey, subject: { organization, commonName: `${organization} Root CA` }, clock: systemClock, random: systemRandom });
  const caKey = softSigner("EC-P256");
  const factoryCa = await issueFactoryCa({
    issuer: { signer: rootKey, certificate: root },
    publicKeySpki: caKey.publicKeySpki,
    subject: { organization, commonName: `${organization} Factory CA` },
    clock: systemClock,
    random: systemRandom,
  });
  return {
    root,
    factoryCa,
    rootPem: root.toString("pem"),
    chainPems: [factoryCa.toString("pem")],
    issue: (spki, serial) =>
      issueIdevid({
        issuer: { signer: caKey, certificate: factoryCa },
        publicKeySpki: new Uint8Array(spki),
        serial,
        organization,
        hwTypeOid: DEFAULT_HW_TYPE_OID,
        clock: systemClock,
        random: systemRandom,
      }),
  };
}
