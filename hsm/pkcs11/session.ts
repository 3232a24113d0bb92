import pkcs11js from "pkcs11js";
import { HsmError, ckr, pkcs11Failure, pkcs11Step } from "../errors.js";
import { readPin, type Pkcs11Uri } from "../uri.js";
import type { Pkcs11Module } from "./module.js";

export type Handle = Buffer;

/** A token this connection is logged in to, and the session that holds the login. */
export interface TokenLogin {
  slot: Handle;
  label: string;
  session: Handle;
}

/** Where an in-process signer runs its operations: a session of its own (the line signs through pool.ts instead). */
export interface SessionSource {
  run<T>(fn: (session: Handle) => T): T;
}

/**
 * One user of a loaded module: the sessions it opened and the tokens it logged in to.
 * Every session it opens is closed by `close()` at the latest, which is idempotent.
 */
export class Connection {
  private module: Pkcs11Module | undefined;
  private readonly sessions = new Set<string>();
  private readonly logins = new Map<string, TokenLogin>();
  /** Tokens that refused their PIN, and how: never asked again by this connection. */
  private readonly refused = new Map<string, HsmError>();
  /** Where PIN sources that name a variable are read. */
  readonly env: NodeJS.ProcessEnv;

  constructor(module: Pkcs11Module, env: NodeJS.ProcessEnv) {
    this.module = module;
    this.env = env;
  }

  get mod(): Pkcs11Module {
    if (!this.module) throw new HsmError("CLOSED", "the HSM connection is already closed");
    return this.module;
  }

  get p11(): pkcs11js.PKCS11 {
    return this.mod.p11;
  }

  openSession(slot: Handle): Handle {
    const s = pkcs11Step("opening a session", () => this.p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION));
    this.sessions.add(s.toString("hex"));
    return s;
  }

  closeSession(session: Handle): void {
    if (!this.sessions.delete(session.toString("hex")) || !this.module) return;
    try {
      this.module.p11.C_CloseSession(session);
    } catch {
      // A session the token already dropped is closed as far as we care.
    }
  }

  /** Runs `fn` on a session of its own, closed before returning whatever happens. */
  withSession<T>(slot: Handle, fn: (session: Handle) => T): T {
    const session = this.openSession(slot);
    try {
      return fn(session);
    } finally {
      this.closeSession(session);
    }
  }

  /** A session for one signer, open until the connection closes (a session per signer: CKR_OPERATION_ACTIVE otherwise). */
  signerSessions(slot: Handle): SessionSource {
    const session = this.openSession(slot);
    return { run: (fn) => fn(session) };
  }

  /**
   * Logs in to the token a URI names, once per token. A refused PIN is tried once and never
   * again by this connection, however often it is asked (a long-lived keystore asks per
   * unit): real HSMs lock the PIN after a few failures.
   */
  login(uri: Pkcs11Uri): TokenLogin {
    const mod = this.mod;
    const key = uri.serial ? `serial:${uri.serial}` : `label:${uri.token}`;
    const existing = this.logins.get(key);
    if (existing) return existing;
    const refused = this.refused.get(key);
    if (refused) throw refused;
    const found = mod.findSlotToLogIn({ label: uri.token, serial: uri.serial });
    const name = uri.token ?? `serial ${uri.serial}`;
    if (!found) {
      // A network HSM's client (p11-kit-client.so) that cannot reach its server initialises fine and shows no slot at all.
      if (mod.tokens().length === 0) {
        throw new HsmError("TOKEN_NOT_FOUND", `PKCS#11 module ${mod.path} shows no token at all: check that the HSM is reachable (for p11-kit-client.so, P11_KIT_SERVER_ADDRESS must name a running p11-kit server)`);
      }
      throw new HsmError("TOKEN_NOT_FOUND", `no token ${name} in PKCS#11 module ${mod.path}: run \`idmint hsm init\`, plug in the HSM, or fix token= in the key URI`);
    }
    if (found.flags & pkcs11js.CKF_USER_PIN_LOCKED) {
      throw new HsmError("PIN_LOCKED", `the user PIN of token ${name} is locked: have the security officer unlock it; idmint will not try to log in`);
    }
    const pin = readPin(uri.pinSource, name, this.env);
    const session = this.openSession(found.slot);
    try {
      this.p11.C_Login(session, pkcs11js.CKU_USER, pin);
    } catch (e) {
      const r = ckr(e);
      if (r?.name !== "CKR_USER_ALREADY_LOGGED_IN") {
        this.closeSession(session);
        const error = loginFailure(name, e);
        if (error.code === "PIN_INCORRECT" || error.code === "PIN_LOCKED") this.refused.set(key, error);
        throw error;
      }
    }
    const login = { slot: found.slot, label: found.label, session };
    this.logins.set(key, login);
    return login;
  }

  close(): void {
    if (!this.module) return;
    for (const hex of [...this.sessions]) this.closeSession(Buffer.from(hex, "hex"));
    this.logins.clear();
    this.module.release();
    this.module = undefined;
  }
}

function loginFailure(name: string, e: unknown): HsmError {
  const r = ckr(e);
  if (r?.name === "CKR_PIN_INCORRECT" || r?.name === "CKR_PIN_LEN_RANGE") {
    return new HsmError("PIN_INCORRECT", `wrong PIN for token ${name}: fix the PIN in its pin-source; idmint tried once and will not retry, as real HSMs lock after a few failures`, { cause: e });
  }
  if (r?.name === "CKR_PIN_LOCKED") {
    return new HsmError("PIN_LOCKED", `the user PIN of token ${name} is locked: have the security officer unlock it`, { cause: e });
  }
  return pkcs11Failure(`logging in to token ${name}`, e);
}
