import { errorClass } from "../core/index.js";

/**
 * What can go wrong issuing vouchers and exporting an SZTP inventory.
 *
 * - NO_MASA: the home has no voucher-signing key (a home made before vouchers).
 * - NOT_PROVISIONED: a serial this home did not provision (or not yet delivered to its unit).
 * - ORDER_EMPTY: an order with no provisioned unit in this home.
 * - VOUCHER_OPTIONS: options that do not make one voucher (an expiry in the past, a bad nonce, both kinds of freshness).
 */
export type VouchersErrorCode = "NO_MASA" | "NOT_PROVISIONED" | "ORDER_EMPTY" | "VOUCHER_OPTIONS";

export class VouchersError extends errorClass<VouchersErrorCode>("VouchersError", {
  NO_MASA: "state",
  NOT_PROVISIONED: "input",
  ORDER_EMPTY: "input",
  VOUCHER_OPTIONS: "usage",
}) {}
