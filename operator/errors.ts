import { IdmintError, type ErrorKind } from "../core/index.js";

/**
 * What can go wrong for an operator fetching a device certificate and encrypting to it.
 *
 * - NOT_PUBLISHED: the directory has no certificate for that serial.
 * - CHAIN_INVALID: the certificate does not chain to the pinned vendor root through a factory CA.
 * - PROFILE_VIOLATION: it chains, but is not an IDevID for that serial (subject serialNumber,
 *   hardwareModuleName, notAfter, basicConstraints, keyUsage).
 * - KEY_USAGE: its keyUsage forbids the encryption asked for (EC without keyAgreement, RSA
 *   without keyEncipherment).
 * - KEY_UNSUPPORTED: its key is of a type or size idmint does not encrypt to.
 */
export type OperatorErrorCode = "NOT_PUBLISHED" | "CHAIN_INVALID" | "PROFILE_VIOLATION" | "KEY_USAGE" | "KEY_UNSUPPORTED";

const DEFAULT_KIND: Record<OperatorErrorCode, ErrorKind> = {
  NOT_PUBLISHED: "input",
  CHAIN_INVALID: "verify",
  PROFILE_VIOLATION: "verify",
  KEY_USAGE: "input",
  KEY_UNSUPPORTED: "input",
};

export class OperatorError extends IdmintError<OperatorErrorCode> {
  constructor(code: OperatorErrorCode, message: string, options?: { cause?: unknown; kind?: ErrorKind }) {
    super(options?.kind ?? DEFAULT_KIND[code], code, message, options);
    this.name = "OperatorError";
  }
}
