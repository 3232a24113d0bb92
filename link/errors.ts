import { errorClass, type ErrorKind } from "../core/index.js";

/**
 * What can go wrong between a station and a unit on the unit link.
 *
 * - UNIT_TIMEOUT: the unit did not answer one request within the link's `timeoutMs`.
 * - UNIT_DISCONNECTED: the connection ended (or was closed) with requests outstanding.
 * - UNIT_PROTOCOL: the unit sent bytes that are not the unit link protocol (bad frame,
 *   oversized frame, not JSON, wrong shape, an answer to a request never made).
 * - UNIT_REFUSED: the unit answered `ok: false`; `unitCode` is the unit's own code
 *   (e.g. CHAIN_INVALID), which the message also names.
 * - FIXTURE_UNREACHABLE: no connection to the fixture at all.
 * - LINK_MISUSE: the station asked the link for something the protocol forbids (too many
 *   requests in flight, a request after a unit's last one): a bug in the caller.
 * - CMP_MALFORMED: the bytes are not a PKIMessage the station speaks (bad DER, unknown body type).
 * - CMP_PROTECTION_UNSUPPORTED: the message's protection is not PasswordBasedMac with an OWF,
 *   MAC and iteration count within the station's limits.
 * - CMP_PROTECTION_INVALID: the MAC does not match (a wrong secret, or the message was altered).
 */
export type UnitErrorCode =
  | "UNIT_TIMEOUT"
  | "UNIT_DISCONNECTED"
  | "UNIT_PROTOCOL"
  | "UNIT_REFUSED"
  | "FIXTURE_UNREACHABLE"
  | "LINK_MISUSE"
  | "CMP_MALFORMED"
  | "CMP_PROTECTION_UNSUPPORTED"
  | "CMP_PROTECTION_INVALID";

const KIND: Record<UnitErrorCode, ErrorKind> = {
  UNIT_TIMEOUT: "unavailable",
  UNIT_DISCONNECTED: "unavailable",
  UNIT_PROTOCOL: "input",
  UNIT_REFUSED: "input",
  FIXTURE_UNREACHABLE: "unavailable",
  LINK_MISUSE: "internal",
  CMP_MALFORMED: "input",
  CMP_PROTECTION_UNSUPPORTED: "input",
  CMP_PROTECTION_INVALID: "verify",
};

/** A unit as the station sees it across the link failed; named for the unit, since most of these are its doing. */
export class UnitError extends errorClass("UnitError", KIND) {
  /** For UNIT_REFUSED: the code the unit answered with (attacker-controlled, checked to be A-Z 0-9 _). */
  readonly unitCode: string | undefined;
  /** The unit's serial, once the link knows it. */
  readonly serial: string | undefined;

  constructor(code: UnitErrorCode, message: string, options?: { cause?: unknown; unitCode?: string; serial?: string }) {
    super(code, message, options);
    this.unitCode = options?.unitCode;
    this.serial = options?.serial;
  }
}
