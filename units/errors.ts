import { IdmintError, type ErrorKind } from "../core/index.js";

/**
 * What can go wrong between a station and a unit, and in the unit simulator's set-up.
 *
 * - UNIT_TIMEOUT: the unit did not answer one request within the link's `timeoutMs`.
 * - UNIT_DISCONNECTED: the connection ended (or was closed) with requests outstanding.
 * - UNIT_PROTOCOL: the unit sent bytes that are not the unit link protocol (bad frame,
 *   oversized frame, not JSON, wrong shape, an answer to a request never made).
 * - UNIT_REFUSED: the unit answered `ok: false`; `unitCode` is the unit's own code
 *   (e.g. CHAIN_INVALID), which the message also names.
 * - FIXTURE_UNREACHABLE: no connection to the fixture at all.
 * - SIM_OPTIONS, FAULT_SYNTAX, SIM_LISTEN: the simulator's options are wrong, a fault
 *   spec is malformed, or it cannot listen on the port asked for.
 * - UNIT_STATE: a simulated unit's row in the units' flash (units.db) is unreadable.
 * - UNIT_UNKNOWN, UNIT_NOT_READY, KEY_IN_TOKEN: `unit export` was asked for a unit the
 *   flash does not hold, for a key or certificate the unit does not have yet, or for a key
 *   that cannot leave its token.
 */
export type UnitErrorCode =
  | "UNIT_TIMEOUT"
  | "UNIT_DISCONNECTED"
  | "UNIT_PROTOCOL"
  | "UNIT_REFUSED"
  | "FIXTURE_UNREACHABLE"
  | "SIM_OPTIONS"
  | "FAULT_SYNTAX"
  | "SIM_LISTEN"
  | "UNIT_STATE"
  | "UNIT_UNKNOWN"
  | "UNIT_NOT_READY"
  | "KEY_IN_TOKEN";

const DEFAULT_KIND: Record<UnitErrorCode, ErrorKind> = {
  UNIT_TIMEOUT: "unavailable",
  UNIT_DISCONNECTED: "unavailable",
  UNIT_PROTOCOL: "input",
  UNIT_REFUSED: "input",
  FIXTURE_UNREACHABLE: "unavailable",
  SIM_OPTIONS: "usage",
  FAULT_SYNTAX: "usage",
  SIM_LISTEN: "input",
  UNIT_STATE: "state",
  UNIT_UNKNOWN: "state",
  UNIT_NOT_READY: "state",
  KEY_IN_TOKEN: "input",
};

export class UnitError extends IdmintError<UnitErrorCode> {
  /** For UNIT_REFUSED: the code the unit answered with (attacker-controlled, checked to be A-Z 0-9 _). */
  readonly unitCode: string | undefined;
  /** The unit's serial, once the link knows it. */
  readonly serial: string | undefined;

  constructor(code: UnitErrorCode, message: string, options?: { cause?: unknown; kind?: ErrorKind; unitCode?: string; serial?: string }) {
    super(options?.kind ?? DEFAULT_KIND[code], code, message, options);
    this.name = "UnitError";
    this.unitCode = options?.unitCode;
    this.serial = options?.serial;
  }
}
