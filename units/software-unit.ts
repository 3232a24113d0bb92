import { webcrypto } from "node:crypto";
import { PkiError, x509 } from "../pki/index.js";
import type { UnitKeyAlgorithm } from "./protocol.js";

/**
 * A simulated unit whose private key is a non-extractable WebCrypto key: it signs its own
 * CSR and nothing outside it ever holds the key (invariant 3).
 */
export class SoftwareUnit {
  readonly serial: string;
  readonly model: string;
  private readonly keys: CryptoKeyPair;

  private constructor(serial: string, model: string, keys: CryptoKeyPair) {
    this.serial = serial;
    this.model = model;
    this.keys = keys;
  }

  static async create(serial: string, model: string, algorithm: UnitKeyAlgorithm = "EC-P256"): Promise<SoftwareUnit> {
    const params =
      algorithm === "EC-P256"
        ? { name: "ECDSA", namedCurve: "P-256" }
        : { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" };
    const keys = (await webcrypto.subtle.generateKey(params, false, ["sign", "verify"])) as CryptoKeyPair;
    return new SoftwareUnit(serial, model, keys);
  }

  /** A PKCS#10 request whose subject carries the unit's serial (802.1AR §8.6). */
  async csr(): Promise<string> {
    const signingAlgorithm = this.keys.privateKey.algorithm.name === "ECDSA" ? { name: "ECDSA", hash: "SHA-256" } : { name: "RSASSA-PKCS1-v1_5" };
    try {
      const req = await x509.Pkcs10CertificateRequestGenerator.create(
        {
          name: new x509.Name([{ "2.5.4.5": [{ printableString: this.serial }] }, { "2.5.4.3": [{ utf8String: `${this.model} ${this.serial}` }] }]),
          keys: this.keys,
          signingAlgorithm,
        },
        webcrypto as unknown as Crypto,
      );
      return req.toString("pem");
    } catch (e) {
      throw new PkiError("internal", "CSR_INVALID", `unit ${this.serial} could not make its CSR: ${(e as Error).message}`, { cause: e });
    }
  }

  async publicKeySpki(): Promise<Uint8Array> {
    return new Uint8Array(await webcrypto.subtle.exportKey("spki", this.keys.publicKey));
  }
}
