import { generateKeyPair, generateKeyPairSync, randomBytes, sign as nodeSign, type KeyObject } from "node:crypto";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { Hsm, formatPkcs11Uri, parsePkcs11Uri, type Pkcs11Uri } from "../hsm/index.js";
import { p1363ToDer, p256Encodings, toPem } from "./csr.js";
import { UnitError } from "./errors.js";
import type { UnitKeyAlgorithm } from "./protocol.js";
import { replaceFile, writeCommittedLater, type KeyRef, type UnitFiles } from "./store.js";

const generateKeyPairAsync = promisify(generateKeyPair);

/** A key a simulated unit holds: its public half, and a way to sign with the private half. */
export interface UnitKey {
  readonly algorithm: UnitKeyAlgorithm;
  /** DER SubjectPublicKeyInfo. */
  readonly spki: Buffer;
  readonly ref: KeyRef;
  /** SHA-256 signature of `data` as X.509 carries it: DER ECDSA-Sig-Value, or the PKCS#1 v1.5 block. */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** Where simulated units keep their keys: the unit's flash (soft) or its secure element (a PKCS#11 token). */
export interface UnitKeystore {
  readonly kind: "soft" | "pkcs11";
  /** Makes a new key pair for `serial` and stores it. */
  generate(serial: string, algorithm: UnitKeyAlgorithm, files: UnitFiles): Promise<UnitKey>;
  /** Gives `serial` a copy of an existing key (the duplicate-key fault: a weak RNG). */
  adopt(serial: string, key: UnitKey, files: UnitFiles): UnitKey;
  /** Removes a key the unit no longer uses (a token object; a soft key file is simply replaced). */
  discard(ref: KeyRef): void;
  close(): void;
}

interface SoftKey extends UnitKey {
  readonly pem: string;
}

/**
 * A unit's first key is written in place (state.json, written next, commits it); a key
 * that replaces one goes through a temporary file and a rename, so key.pem is never half
 * written.
 */
function storeKey(files: UnitFiles, pem: string): void {
  if (existsSync(files.key)) replaceFile(files.key, pem, 0o600);
  else writeCommittedLater(files.key, pem, 0o600);
}

/**
 * Keys as node:crypto key pairs; the private key persisted as PKCS#8 PEM, mode 0600, at
 * `<unitsDir>/<serial>/key.pem` (for `unit decrypt` and tests).
 */
export class SoftKeystore implements UnitKeystore {
  readonly kind = "soft" as const;

  async generate(_serial: string, algorithm: UnitKeyAlgorithm, files: UnitFiles): Promise<UnitKey> {
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
    const key: SoftKey = {
      algorithm,
      spki,
      ref: { keystore: "soft" },
      pem: toPem("PRIVATE KEY", pkcs8),
      // RSA keys sign PKCS#1 v1.5 by default; EC signatures come out DER-encoded.
      sign: async (data) => nodeSign("sha256", data, privateKey),
    };
    storeKey(files, key.pem);
    return key;
  }

  adopt(_serial: string, key: UnitKey, files: UnitFiles): UnitKey {
    storeKey(files, (key as SoftKey).pem);
    return key;
  }

  discard(): void {
    // The key file is replaced by the next key; nothing else holds the key.
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
      throw new UnitError("SIM_OPTIONS", `the units' token URI names a key (object=/id=): give only the token, e.g. pkcs11:token=unit-se?pin-source=file:/path`);
    }
    return new Pkcs11Keystore(Hsm.open({ module: options.module, softhsmConf: options.softhsmConf, env: options.env }), token);
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
        return ec ? p1363ToDer(raw) : raw;
      },
    };
  }

  adopt(_serial: string, key: UnitKey): UnitKey {
    return key;
  }

  discard(ref: KeyRef): void {
    if (ref.keystore === "pkcs11") this.hsm.destroyKey(this.keyUri(ref.object));
  }

  close(): void {
    this.hsm.close();
  }
}
