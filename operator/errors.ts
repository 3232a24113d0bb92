import { errorClass } from "../core/index.js";

/**
 * What can go wrong for an operator fetching a device certificate and checking it.
 *
 * - NOT_PUBLISHED: the directory has no certificate for that serial.
 * - CHAIN_INVALID: the certificate does not chain to the pinned vendor root through a factory CA.
 * - PROFILE_VIOLATION: it chains, but is not an IDevID for that serial (subject serialNumber,
 *   hardwareModuleName, notAfter, basicConstraints, keyUsage).
 */
export type OperatorErrorCode = "NOT_PUBLISHED" | "CHAIN_INVALID" | "PROFILE_VIOLATION";

export class OperatorError extends errorClass<OperatorErrorCode>("OperatorError", {
  NOT_PUBLISHED: "input",
  CHAIN_INVALID: "verify",
  PROFILE_VIOLATION: "verify",
}) {}
