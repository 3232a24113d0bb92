import { errorClass } from "../core/index.js";

export type PkiErrorCode =
  | "CSR_INVALID"
  | "CSR_SIGNATURE"
  | "CSR_KEY_REFUSED"
  | "CSR_SERIAL_MISMATCH"
  | "SERIAL_SYNTAX"
  | "CERT_INVALID"
  | "CHAIN_INVALID"
  | "PROFILE_VIOLATION"
  | "CA_EXISTS"
  | "MASA_EXISTS"
  | "STATION_ID_SYNTAX"
  | "SIGNER_MISMATCH"
  | "SIGNATURE_MALFORMED";

export class PkiError extends errorClass<PkiErrorCode>("PkiError", {
  CSR_INVALID: "input",
  CSR_SIGNATURE: "verify",
  CSR_KEY_REFUSED: "input",
  CSR_SERIAL_MISMATCH: "input",
  SERIAL_SYNTAX: "input",
  CERT_INVALID: "input",
  CHAIN_INVALID: "verify",
  // The issuer's own template check: a certificate idmint built is not what it meant to build.
  PROFILE_VIOLATION: "internal",
  CA_EXISTS: "state",
  MASA_EXISTS: "state",
  STATION_ID_SYNTAX: "usage",
  // The HSM signing provider was handed another key: a bug.
  SIGNER_MISMATCH: "internal",
  // The token answered a signature of the wrong size for its key.
  SIGNATURE_MALFORMED: "hsm",
}) {}
