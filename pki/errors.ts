import { IdmintError, type ErrorKind } from "../core/index.js";

export type PkiErrorCode =
  | "CSR_INVALID"
  | "CSR_SIGNATURE"
  | "CSR_KEY_REFUSED"
  | "CSR_SERIAL_MISMATCH"
  | "SERIAL_SYNTAX"
  | "CERT_INVALID"
  | "CHAIN_INVALID"
  | "PROFILE_VIOLATION"
  | "CA_EXISTS"
  | "STATION_ID_SYNTAX";

export class PkiError extends IdmintError<PkiErrorCode> {
  constructor(kind: ErrorKind, code: PkiErrorCode, message: string, options?: { cause?: unknown }) {
    super(kind, code, message, options);
  }
}
