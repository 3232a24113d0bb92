import { errorClass } from "../core/index.js";

/**
 * What can go wrong on a unit itself: its flash, its keystore, its own files.
 *
 * - UNIT_STATE: a unit's row in the units' flash (units.db) is unreadable.
 * - UNIT_UNKNOWN, UNIT_NOT_READY, KEY_IN_TOKEN: a unit the flash does not hold, a key or
 *   certificate the unit does not have yet, or a key that cannot leave its token.
 * - KEYSTORE_OPTIONS: the keystore was named wrongly (e.g. a token URI that names a key).
 * - UNIT_KEY: a unit to decrypt for cannot be found, has no key yet, or holds a broken certificate.
 * - UNIT_TOKEN_NEEDED: the unit's key is in a token and no token was given.
 * - VOUCHER_NOT_FOR_UNIT, OWNER_NOT_PINNED, INFO_SIGNATURE, INFO_UNSIGNED: an SZTP bootstrap
 *   refused (RFC 8572 §5.4-5.6): a voucher for another IDevID issuer, an owner the voucher
 *   does not pin, conveyed information not signed by the owner, or unsigned when signing is required.
 * - CMP_UNREACHABLE, CMP_REFUSED, CMP_PROTOCOL: enrolling over CMP, the station did not answer,
 *   refused the unit (its PKIFailureInfo in the message), or answered what RFC 9483 does not.
 */
export type DeviceErrorCode = "UNIT_STATE" | "UNIT_UNKNOWN" | "UNIT_NOT_READY" | "KEY_IN_TOKEN" | "KEYSTORE_OPTIONS" | "UNIT_KEY" | "UNIT_TOKEN_NEEDED"
  | "SERIAL_NOT_PRINTABLE"
  | "VOUCHER_NOT_FOR_UNIT"
  | "OWNER_NOT_PINNED"
  | "INFO_SIGNATURE"
  | "INFO_UNSIGNED"
  | "CMP_UNREACHABLE"
  | "CMP_REFUSED"
  | "CMP_PROTOCOL";

export class DeviceError extends errorClass<DeviceErrorCode>("DeviceError", {
  UNIT_STATE: "state",
  UNIT_UNKNOWN: "state",
  UNIT_NOT_READY: "state",
  KEY_IN_TOKEN: "input",
  KEYSTORE_OPTIONS: "usage",
  UNIT_KEY: "state",
  UNIT_TOKEN_NEEDED: "usage",
  SERIAL_NOT_PRINTABLE: "input",
  VOUCHER_NOT_FOR_UNIT: "verify",
  OWNER_NOT_PINNED: "verify",
  INFO_SIGNATURE: "verify",
  INFO_UNSIGNED: "verify",
  CMP_UNREACHABLE: "unavailable",
  CMP_REFUSED: "input",
  CMP_PROTOCOL: "input",
}) {}
