import { errorClass } from "../core/index.js";
import { ckr } from "./pkcs11/ckr.js";

export { ckr };

export type HsmErrorCode =
  | "MODULE_NOT_FOUND"
  | "MODULE_LOAD"
  | "MODULE_CONFLICT"
  | "INSTALL_BROKEN"
  | "HOME_UNWRITABLE"
  | "CLOSED"
  | "TOKEN_NOT_FOUND"
  | "TOKEN_EXISTS"
  | "PIN_INCORRECT"
  | "PIN_LOCKED"
  | "PIN_SOURCE"
  | "KEY_NOT_FOUND"
  | "KEY_EXISTS"
  | "KEY_NOT_PERMITTED"
  | "KEY_UNSUPPORTED"
  | "MECHANISM_UNSUPPORTED"
  | "SIGNATURE_MISMATCH"
  | "HSM_UNREACHABLE"
  | "URI_INVALID"
  | "UNSUPPORTED_ALGORITHM"
  | "PKCS11";

/** Each code's one kind, so one exit code wherever it is thrown. */
export class HsmError extends errorClass<HsmErrorCode>("HsmError", {
  MODULE_NOT_FOUND: "hsm",
  MODULE_LOAD: "hsm",
  // SoftHSM loaded in this process with another home's configuration: a caller's bug.
  MODULE_CONFLICT: "internal",
  // The idmint installation lacks its SoftHSM template.
  INSTALL_BROKEN: "internal",
  HOME_UNWRITABLE: "state",
  // An Hsm used after close(): a caller's bug.
  CLOSED: "internal",
  TOKEN_NOT_FOUND: "hsm",
  TOKEN_EXISTS: "state",
  PIN_INCORRECT: "hsm",
  PIN_LOCKED: "hsm",
  PIN_SOURCE: "input",
  KEY_NOT_FOUND: "hsm",
  KEY_EXISTS: "state",
  KEY_NOT_PERMITTED: "hsm",
  // A key in the token of a type or size idmint does not use.
  KEY_UNSUPPORTED: "hsm",
  // The token lacks a mechanism idmint needs.
  MECHANISM_UNSUPPORTED: "hsm",
  // A token's signature that its own public key does not verify (`hsm check`).
  SIGNATURE_MISMATCH: "hsm",
  // The HSM went away and did not come back within --hsm-wait.
  HSM_UNREACHABLE: "hsm",
  URI_INVALID: "input",
  // The caller asked for an algorithm, key use or peer key that does not fit.
  UNSUPPORTED_ALGORITHM: "input",
  PKCS11: "hsm",
}) {}

/**
 * A signing failure that no other unit would escape either (the HSM gone past its wait, a PIN
 * refused after a reconnect, the key gone): the line stops on it instead of failing unit after unit.
 */
export function stopsTheLine(e: unknown): boolean {
  return e instanceof HsmError && ["HSM_UNREACHABLE", "PIN_INCORRECT", "PIN_LOCKED", "KEY_NOT_FOUND", "TOKEN_NOT_FOUND"].includes(e.code);
}

/** Wraps an unexpected PKCS#11 failure in a one-line error that says what was being done. */
export function pkcs11Failure(doing: string, e: unknown): HsmError {
  if (e instanceof HsmError) return e;
  const r = ckr(e);
  const what = r ? r.name : (e as Error)?.message ?? String(e);
  return new HsmError("PKCS11", `the HSM failed while ${doing} (${what}): check the token and module, then retry`, { cause: e });
}

/** Runs a PKCS#11 step; any failure that is not already an HsmError becomes PKCS11, naming the step. */
export function pkcs11Step<T>(doing: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw pkcs11Failure(doing, e);
  }
}
