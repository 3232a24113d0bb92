import { errorClass } from "../core/index.js";

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

export class SerialsError extends errorClass<SerialsErrorCode>("SerialsError", {
  ALLOCATION_INVALID: "input",
  ALLOCATION_SIGNATURE: "verify",
  ALLOCATION_SIGNER: "verify",
  ALLOCATION_STATION: "verify",
  ALLOCATION_WINDOW: "verify",
  ALLOCATION_OVERLAP: "verify",
  ALLOCATION_CONFLICT: "verify",
  ALLOCATION_EXHAUSTED: "state",
  SERIAL_TAKEN: "state",
  SERIAL_UNKNOWN: "verify",
  SERIAL_PROVISIONED: "verify",
  SERIAL_SCRAPPED: "verify",
  SERIAL_RESERVED: "state",
  // A change asked for a serial its owner never reserved: a bug in the caller.
  SERIAL_NOT_RESERVED: "internal",
  REPORT_INVALID: "input",
  REPORT_SIGNATURE: "verify",
  SCRAP_REASON: "usage",
  ANOMALIES: "verify",
}) {}
