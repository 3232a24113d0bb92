import { errorClass } from "../core/index.js";

export type StationErrorCode =
  | "STATION_BUSY"
  | "KEY_REUSED"
  | "INSTALL_MISMATCH"
  | "NOTHING_TO_DO"
  | "FIXTURE"
  | "UNIT_CERTIFIED"
  | "NO_UNIT_TOKEN"
  | "LINE_FAILING"
  | "SERIAL_BUSY"
  | "SERIAL_ALLOCATED"
  | "SERIAL_PROVISIONED"
  | "LAB_REASON"
  | "CERT_COPY"
  | "STORE_WRITER";

/**
 * - CERT_COPY: a certificate could not be copied to HOME/certs (disk full, permissions).
 * - STORE_WRITER: the store's writer thread is closed or died: a bug, or what killed it says.
 */
export class StationError extends errorClass<StationErrorCode>("StationError", {
  STATION_BUSY: "state",
  KEY_REUSED: "verify",
  INSTALL_MISMATCH: "verify",
  NOTHING_TO_DO: "state",
  FIXTURE: "unavailable",
  // A certified unit asked to be signed anew: the pipeline delivers it again instead; a bug if reached.
  UNIT_CERTIFIED: "internal",
  NO_UNIT_TOKEN: "state",
  LINE_FAILING: "unavailable",
  SERIAL_BUSY: "state",
  SERIAL_ALLOCATED: "input",
  SERIAL_PROVISIONED: "verify",
  LAB_REASON: "usage",
  CERT_COPY: "state",
  STORE_WRITER: "internal",
}) {}
