import { IdmintError, type ErrorKind } from "../core/index.js";

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
  | "LAB_REASON";

export class StationError extends IdmintError<StationErrorCode> {
  constructor(kind: ErrorKind, code: StationErrorCode, message: string, options?: { cause?: unknown }) {
    super(kind, code, message, options);
  }
}
