import { HsmError } from "../errors.js";
import type { Decrypter, RsaPadding } from "../decrypter.js";
import type { KeyAgreement } from "../key-agreement.js";
import type { CreateKeyOptions, KeyManager } from "../key-manager.js";
import type { KeyAlgorithm, Signer } from "../signer.js";
import { createKey, destroyKey } from "./create.js";
import { decryptRsa } from "./decrypt.js";
import { deriveEcdh } from "./ecdh.js";
import { listKeys, type KeyInfo } from "./list.js";
import { existingKey } from "./lookup.js";
import { describeKey, parsePkcs11Uri, readPin } from "../uri.js";
import { Pkcs11Module } from "./module.js";
import { Connection } from "./session.js";
import { SigningPool, type HsmOutageStats, type SigningPoolOptions } from "./pool.js";
import { pkcs11Signer, signMechanism } from "./signer.js";

/** The line's signers, one per key asked for, and what their HSM did during the run. */
export interface LineSigning {
  signers: Signer[];
  /** Sessions per key, outages and signatures asked for again, so far. */
  stats(): HsmOutageStats;
  close(): Promise<void>;
}

export interface HsmOptions {
  /** Path of the PKCS#11 module. */
  module: string;
  /** SoftHSM2 only: the configuration to load it with (exported as SOFTHSM2_CONF). */
  softhsmConf?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * The HSM as idmint uses it, over PKCS#11: keys named by PKCS#11 URI, found or created,
 * signers over them, ECDH and RSA decryption in the token, and listing. Every session it
 * opens is closed by `close()` at the latest, which is idempotent; the module is finalised
 * only if this process initialised it.
 */
export class Hsm implements KeyManager, KeyAgreement, Decrypter {
  private readonly conn: Connection;

  private constructor(conn: Connection) {
    this.conn = conn;
  }

  static open(options: HsmOptions): Hsm {
    if (options.softhsmConf) {
      const current = process.env.SOFTHSM2_CONF;
      if (current && current !== options.softhsmConf && Pkcs11Module.isLoaded(options.module)) {
        throw new HsmError("MODULE_CONFLICT", `SoftHSM is already loaded in this process with ${current}; one process serves one idmint home`);
      }
      // SoftHSM reads its configuration path from the environment at C_Initialize.
      process.env.SOFTHSM2_CONF = options.softhsmConf;
    }
    return new Hsm(new Connection(Pkcs11Module.acquire(options.module), options.env ?? process.env));
  }

  tokens(): ReturnType<Pkcs11Module["tokens"]> {
    return this.conn.mod.tokens();
  }

  /** Logs in to the token a URI names (one attempt), so that a missing token or a wrong PIN is refused before any work. */
  openToken(uri: string): void {
    this.conn.login(parsePkcs11Uri(uri));
  }

  signer(uri: string): Signer {
    const key = existingKey(this.conn, uri, "check the key URI in idmint.json; idmint never creates a CA key outside `idmint ca init`");
    return pkcs11Signer(this.conn, this.conn.signerSessions(key.login.slot), key.pair.privateKey, key.algorithm, key.spki);
  }

  /**
   * The line's signers for the keys `uris` name: in a pool of threads off the event loop
   * (pool.ts), riding out an HSM that goes away for up to `options.waitMs`; but on SoftHSM,
   * a library in this process that cannot go away, in-process unless `sessionsAsked` (the
   * pool measured 2-10% slower there at K=8, 15% over a whole run with its threads' start).
   * Each key is looked up first, so a wrong PIN or a missing key is refused before any thread
   * starts. The result is the caller's to close, before this Hsm.
   */
  async lineSigning(uris: string[], options: SigningPoolOptions & { sessionsAsked: boolean }): Promise<LineSigning> {
    if (!options.sessionsAsked && this.conn.mod.isSoftHsm) {
      const signers = uris.map((uri) => this.signer(uri));
      return { signers, stats: () => ({ sessions: 1, outages: 0, outageMs: 0, signaturesRetried: 0 }), close: async () => undefined };
    }
    const keys = uris.map((uri) => {
      const key = existingKey(this.conn, uri, "check the key URI in idmint.json; idmint never creates a CA key outside `idmint ca init`");
      const name = key.uri.token ?? `serial ${key.uri.serial}`;
      return {
        token: key.uri.token,
        serial: key.uri.serial,
        object: key.uri.object,
        id: key.uri.id,
        pin: readPin(key.uri.pinSource, name, this.conn.env),
        mechanism: signMechanism(key.algorithm).mechanism,
        algorithm: key.algorithm,
        spki: key.spki,
        name: describeKey(key.uri),
      };
    });
    const pool = await SigningPool.open(this.conn.mod.path, keys, options);
    return { signers: keys.map((_, i) => pool.signer(i)), stats: () => pool.outages, close: () => pool.close() };
  }

  createKey(uri: string, algorithm: KeyAlgorithm, options: CreateKeyOptions = {}): Signer {
    return createKey(this.conn, uri, algorithm, options);
  }

  destroyKey(uri: string): void {
    destroyKey(this.conn, uri);
  }

  deriveEcdh(uri: string, peerPoint: Uint8Array): Uint8Array {
    return deriveEcdh(this.conn, uri, peerPoint);
  }

  decryptRsa(uri: string, ciphertext: Uint8Array, padding: RsaPadding): Uint8Array | undefined {
    return decryptRsa(this.conn, uri, ciphertext, padding);
  }

  listKeys(uri: string): KeyInfo[] {
    return listKeys(this.conn, uri);
  }

  close(): void {
    this.conn.close();
  }
}
