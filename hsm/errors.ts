import pkcs11js from "pkcs11js";
import { IdmintError, type ErrorKind } from "../core/index.js";

export type HsmErrorCode =
  | "MODULE_NOT_FOUND"
  | "MODULE_LOAD"
  | "TOKEN_NOT_FOUND"
  | "TOKEN_EXISTS"
  | "PIN_INCORRECT"
  | "PIN_LOCKED"
  | "PIN_SOURCE"
  | "KEY_NOT_FOUND"
  | "KEY_EXISTS"
  | "KEY_NOT_PERMITTED"
  | "URI_INVALID"
  | "UNSUPPORTED_ALGORITHM"
  | "PKCS11";

export class HsmError extends IdmintError<HsmErrorCode> {
  constructor(code: HsmErrorCode, message: string, options?: { cause?: unknown; kind?: ErrorKind }) {
    super(options?.kind ?? "hsm", code, message, options);
  }
}

const CKR_NAMES = new Map<number, string>(
  Object.entries(pkcs11js)
    .filter(([name, value]) => name.startsWith("CKR_") && typeof value === "number")
    .map(([name, value]) => [value as number, name]),
);

/** The CKR_* name and number of a pkcs11js error, if it is one. */
export function ckr(e: unknown): { name: string; code: number } | undefined {
  if (!(e instanceof Error)) return undefined;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "number" && CKR_NAMES.has(code)) return { name: CKR_NAMES.get(code)!, code };
  const m = /(CKR_[A-Z_]+)/.exec(e.message);
  return m ? { name: m[1]!, code: typeof code === "number" ? code : -1 } : undefined;
}

/** Wraps an unexpected PKCS#11 failure in a one-line error that says what was being done. */
export function pkcs11Failure(doing: string, e: unknown): HsmError {
  if (e instanceof HsmError) return e;
  const r = ckr(e);
  const what = r ? r.name : (e as Error)?.message ?? String(e);
  return new HsmError("PKCS11", `the HSM failed while ${doing} (${what}): check the token and module, then retry`, { cause: e });
}
