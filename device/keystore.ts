import { generateKeyPair, generateKeyPairSync, randomBytes, sign as nodeSign, type KeyObject } from "node:crypto";
import { promisify } from "node:util";
import { Hsm, formatPkcs11Uri, parsePkcs11Uri, type Pkcs11Uri } from "../hsm/index.js";
import { ecdsaSignatureDer } from "../pki/index.js";
import { p256Encodings } from "./csr.js";
import { DeviceError } from "./errors.js";
import type { UnitKeyAlgorithm } from "../link/index.js";
import type { KeyRef } from "./store.js";

const generateKeyPairAsync = promisify(generateKeyPair);

/** A key a simulated unit holds: its public half, and a way to sign with the private half. */
export interface UnitKey {
  readonly algorithm: UnitKeyAlgorithm;
  /** DER SubjectPublicKeyInfo. */
  readonly spki: Buffer;
  readonly ref: KeyRef;
  /** Soft keystore only: the private key, PKCS#8 DER, which the unit keeps in its flash. */
  readonly pkcs8?: Buffer;
  /** SHA-256 signature of `data` as X.509 carries it: DER ECDSA-Sig-Value, or the PKCS#1 v1.5 block. */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** Where simulated units keep their keys: the unit's flash (soft) or its secure element (a PKCS#11 token). */
export interface UnitKeystore {
  readonly kind: "soft" | "pkcs11";
  /** Makes a new key pair for `serial` (a token keeps it; a soft key is the caller's to store). */
  generate(serial: string, algorithm: UnitKeyAlgorithm): Promise<UnitKey>;
  /** Removes a key the unit no longer uses (a token object; a soft key is simply overwritten in the flash). */
  discard(ref: KeyRef): void;
  close(): void;
}

/**
 * Keys as node:crypto key pairs; the private key goes with the key (PKCS#8 DER) into the
 * unit's row of the units' flash (for `unit decrypt`, `unit export --key` and tests).
 */
export class SoftKeystore implements UnitKeystore {
  readonly kind = "soft" as const;

  async generate(_serial: string, algorithm: UnitKeyAlgorithm): Promise<UnitKey> {
    let privateKey: KeyObject;
    let spki: Buffer;
    let pkcs8: Buffer;
    if (algorithm === "EC-P256") {
      // ~40 µs: cheaper to do in line than to hand to the thread pool and back.
      const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
      privateKey = pair.privateKey;
      ({ spki, pkcs8 } = p256Encodings(pair.privateKey, pair.publicKey));
    } else {
      // Tens of milliseconds: off the event loop.
      const pair = await generateKeyPairAsync("rsa", { modulusLength: 2048, publicExponent: 0x10001 });
      privateKey = pair.privateKey;
      spki = pair.publicKey.export({ type: "spki", format: "der" });
      pkcs8 = privateKey.export({ type: "pkcs8", format: "der" });
    }
    return {
      algorithm,
      spki,
      ref: { keystore: "soft" },
      pkcs8,
      // RSA keys sign PKCS#1 v1.5 by default; EC signatures come out DER-encoded.
      sign: async (data) => nodeSign("sha256", data, privateKey),
    };
  }

  discard(): void {
    // The unit's row is overwritten with the next key; nothing else holds the key.
  }

  close(): void {}
}

export interface Pkcs11KeystoreOptions {
  /** The PKCS#11 module (shared library). */
  module: string;
  /** SoftHSM2 only: its configuration file. */
  softhsmConf?: string;
  /** The token playing the units' secure element, with its pin-source: `pkcs11:token=unit-se?pin-source=file:/path`. */
  tokenUri: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Keys generated inside a PKCS#11 token as sensitive, non-extractable token objects (the
 * unit's secure element), labelled `unit-<serial>-<random>`; the CSR is signed by the token.
 */
export class Pkcs11Keystore implements UnitKeystore {
  readonly kind = "pkcs11" as const;
  private readonly hsm: Hsm;
  private readonly token: Pkcs11Uri;

  private constructor(hsm: Hsm, token: Pkcs11Uri) {
    this.hsm = hsm;
    this.token = token;
  }

  static open(options: Pkcs11KeystoreOptions): Pkcs11Keystore {
    const token = parsePkcs11Uri(options.tokenUri);
    if (token.object !== undefined || token.id !== undefined) {
      throw new DeviceError("KEYSTORE_OPTIONS", `the units' token URI names a key (object=/id=): give only the token, e.g. pkcs11:token=unit-se?pin-source=file:/path`);
    }
    const hsm = Hsm.open({ module: options.module, softhsmConf: options.softhsmConf, env: options.env });
    // The units' token is logged in to now, not at the first genkey: a wrong PIN or a missing
    // token refuses the simulator's start rather than failing every unit it serves.
    try {
      hsm.openToken(options.tokenUri);
    } catch (e) {
      hsm.close();
      throw e;
    }
    return new Pkcs11Keystore(hsm, token);
  }

  /** The PKCS#11 URI of a unit key object in this keystore's token (pin-source included). */
  keyUri(object: string): string {
    return formatPkcs11Uri({ token: this.token.token, serial: this.token.serial, object, type: "private", pinSource: this.token.pinSource });
  }

  async generate(serial: string, algorithm: UnitKeyAlgorithm): Promise<UnitKey> {
    const object = `unit-${serial}-${randomBytes(4).toString("hex")}`;
    // Hsm.createKey: CKA_TOKEN, CKA_SENSITIVE, CKA_EXTRACTABLE=false (PKCS#11 §4.9). An EC
    // IDevID carries keyAgreement, so its key may also derive (ECDH); an RSA IDevID carries
    // keyEncipherment, so its key may also decrypt (key transport): that is how the unit
    // opens configurations operators encrypt to it (RFC 8886 §4, `unit decrypt`).
    const ec = algorithm === "EC-P256";
    const signer = this.hsm.createKey(this.keyUri(object), algorithm, ec ? { derive: true } : { decrypt: true });
    return {
      algorithm,
      spki: Buffer.from(signer.publicKeySpki),
      ref: { keystore: "pkcs11", object },
      sign: async (data) => {
        const raw = await signer.sign(data);
        return ec ? ecdsaSignatureDer(raw) : raw;
      },
    };
  }

  discard(ref: KeyRef): void {
    if (ref.keystore === "pkcs11") this.hsm.destroyKey(this.keyUri(ref.object));
  }

  close(): void {
    this.hsm.close();
  }
}
