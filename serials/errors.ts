import { IdmintError, type ErrorKind } from "../core/index.js";

export type SerialsErrorCode =
  | "ALLOCATION_INVALID"
  | "ALLOCATION_SIGNATURE"
  | "ALLOCATION_SIGNER"
  | "ALLOCATION_STATION"
  | "ALLOCATION_WINDOW"
  | "ALLOCATION_OVERLAP"
  | "ALLOCATION_CONFLICT"
  | "ALLOCATION_EXHAUSTED"
  | "SERIAL_TAKEN"
  | "SERIAL_UNKNOWN"
  | "SERIAL_PROVISIONED"
  | "SERIAL_SCRAPPED"
  | "SERIAL_RESERVED"
  | "SERIAL_NOT_RESERVED"
  | "REPORT_INVALID"
  | "REPORT_SIGNATURE"
  | "SCRAP_REASON"
  | "ANOMALIES";

export class SerialsError extends IdmintError<SerialsErrorCode> {
  constructor(kind: ErrorKind, code: SerialsErrorCode, message: string, options?: { cause?: unknown }) {
    super(kind, code, message, options);
  }
}
