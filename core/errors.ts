/**
 * The base of every error idmint raises on purpose. `code` is a stable string that
 * tests and scripts match on; `message` is one line for the user naming the problem and
 * the fix; `kind` decides the process exit code (see README, "Exit codes").
 */
export type ErrorKind =
  | "usage" // the command line itself is wrong
  | "input" // a file or value the user gave is malformed or refused
  | "hsm" // the PKCS#11 module, token, PIN or key
  | "state" // the home is not in the state the command needs (not initialised, already done)
  | "verify" // a signature, chain, proof or ledger check failed
  | "unavailable" // a server or peer could not be reached
  | "internal"; // a bug in idmint

export const EXIT_CODES: Record<ErrorKind, number> = {
  usage: 2,
  input: 3,
  hsm: 4,
  state: 5,
  verify: 6,
  unavailable: 7,
  internal: 70,
};

export class IdmintError<C extends string = string> extends Error {
  readonly code: C;
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "IdmintError";
    this.kind = kind;
    this.code = code;
  }

  get exitCode(): number {
    return EXIT_CODES[this.kind];
  }
}

export function isIdmintError(e: unknown): e is IdmintError {
  return e instanceof IdmintError;
}

/**
 * The base of each module's error class: one fixed kind per code, from `kinds`, so a code
 * always ends in the same exit code whoever throws it.
 */
export function errorClass<C extends string>(name: string, kinds: Readonly<Record<C, ErrorKind>>) {
  return class extends IdmintError<C> {
    constructor(code: C, message: string, options?: { cause?: unknown }) {
      super(kinds[code], code, message, options);
      this.name = name;
    }
  };
}

/**
 * - OPTION_INVALID: a command-line option or a variable like IDMINT_NOW has a bad value.
 * - CONFIG_INVALID: HOME/idmint.json is not a valid config.
 * - FILE_UNREADABLE, FILE_EXISTS, FILE_UNWRITABLE: an input the user named cannot be read, or
 *   an output would replace a file or cannot be written.
 * - HOME_NOT_INITIALISED, HOME_IN_USE: the home is not set up, or is not the kind of
 *   directory a command may take over (the demo's).
 * - DB_OPEN, DB_DAMAGED: a store cannot be opened, or is damaged (restore it; never start anew).
 */
export type CoreErrorCode =
  | "OPTION_INVALID"
  | "CONFIG_INVALID"
  | "FILE_UNREADABLE"
  | "FILE_EXISTS"
  | "FILE_UNWRITABLE"
  | "HOME_NOT_INITIALISED"
  | "HOME_IN_USE"
  | "DB_OPEN"
  | "DB_DAMAGED";

export class CoreError extends errorClass<CoreErrorCode>("CoreError", {
  OPTION_INVALID: "usage",
  CONFIG_INVALID: "input",
  FILE_UNREADABLE: "input",
  FILE_EXISTS: "input",
  FILE_UNWRITABLE: "input",
  HOME_NOT_INITIALISED: "state",
  HOME_IN_USE: "state",
  DB_OPEN: "state",
  DB_DAMAGED: "state",
}) {}

/** An error as it crosses to another thread or process: code, kind and the first line of its message; no stack. */
export interface WireError {
  message: string;
  code?: string;
  kind?: ErrorKind;
}

export function toWireError(e: unknown): WireError {
  const message = (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
  if (isIdmintError(e)) return { message, code: e.code, kind: e.kind };
  const { code, kind } = (e ?? {}) as { code?: unknown; kind?: unknown };
  // One that a worker thread threw arrives as a plain Error that kept its own properties, kind included.
  if (typeof code === "string" && typeof kind === "string" && kind in EXIT_CODES) return { message, code, kind: kind as ErrorKind };
  // SQLite's and Node's errors carry a code too (SQLITE_BUSY, ENOSPC): keep it for whoever decides.
  return typeof code === "string" ? { message, code } : { message };
}

/** The error again on this side: an IdmintError when it was one, else an Error with its code. */
export function fromWireError(w: WireError): Error {
  if (w.kind !== undefined && w.code !== undefined) return new IdmintError(w.kind, w.code, w.message);
  return Object.assign(new Error(w.message), w.code === undefined ? {} : { code: w.code });
}
