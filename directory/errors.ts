import { errorClass } from "../core/index.js";

export type DirectoryErrorCode =
  /** The client could not reach the directory, or it did not answer in time. */
  | "DIRECTORY_UNREACHABLE"
  /** The directory answered with a refusal (4xx); `status` and `reason` say which. */
  | "REFUSED"
  /** The directory refused the request as malformed or too large (400, 413): the sender's fault. */
  | "REFUSED_MALFORMED"
  /** The directory holds nothing under that name (404). */
  | "NOT_FOUND"
  /** The directory answered something that is not what the protocol promises (5xx, wrong type, wrong certificate). */
  | "BAD_RESPONSE"
  /** `directory allocations add`: the list's serials already belong to another allocation or station. */
  | "ALLOCATION_CONFLICT"
  /** A value handed to the library is malformed (serial or station syntax, an upload to sign). */
  | "INVALID"
  /** The directory's URL is not an http(s) URL. */
  | "URL_INVALID"
  /** The station's ledger lacks what an upload must prove (an entry, a checkpoint that covers it). */
  | "LEDGER_BEHIND"
  /** The upload's signature could not be encoded: a bug. */
  | "SIGNATURE_ENCODING"
  /** The server's configuration (its store, its TLS files) is unusable. */
  | "CONFIG_INVALID"
  /** The trust anchors given to the server do not hold together (a factory CA off the root). */
  | "ANCHORS_INVALID"
  /** The server cannot listen on the address asked for. */
  | "LISTEN_FAILED"
  /** The store holds a certificate whose checkpoint it lacks: a bug, or a store edited by hand. */
  | "STORE_INCONSISTENT"
  /** The database cannot be reached or went away (PostgreSQL down, restarting, out of connections): retry later. */
  | "STORE_UNAVAILABLE"
  /** The database's schema is newer than this idmint: run the idmint that migrated it. */
  | "SCHEMA_TOO_NEW"
  /** `directory migrate`: the target already holds a directory, or the copy does not match its source. */
  | "MIGRATION_FAILED";

/**
 * Why the directory refused an upload: the `error.code` of a refusal's JSON body, and the
 * reason a client's REFUSED error carries. The HTTP status of each is in `REFUSAL_STATUS`.
 */
export type RefusalReason =
  | "MALFORMED"
  | "TOO_LARGE"
  | "UNSIGNED"
  | "STATION_UNKNOWN"
  | "SIGNATURE_INVALID"
  | "CHECKPOINT_INVALID"
  | "REPLAY"
  | "HISTORY_REWRITTEN"
  | "INCONSISTENT"
  | "PREVIOUS_SIZE_MISMATCH"
  | "CHAIN_INVALID"
  | "PROFILE_VIOLATION"
  | "LEDGER_MISMATCH"
  | "PROOF_INVALID"
  | "SERIAL_UNALLOCATED"
  | "SERIAL_NOT_ALLOWED"
  | "CONFLICT"
  | "BUSY"
  | "UNAVAILABLE"
  | "INTERNAL";

/** The status table of directory/README.md, in code. */
export const REFUSAL_STATUS: Record<RefusalReason, number> = {
  MALFORMED: 400,
  TOO_LARGE: 413,
  UNSIGNED: 401,
  STATION_UNKNOWN: 401,
  SIGNATURE_INVALID: 401,
  CHECKPOINT_INVALID: 422,
  REPLAY: 409,
  HISTORY_REWRITTEN: 409,
  INCONSISTENT: 409,
  PREVIOUS_SIZE_MISMATCH: 409,
  CHAIN_INVALID: 422,
  PROFILE_VIOLATION: 422,
  LEDGER_MISMATCH: 422,
  PROOF_INVALID: 422,
  SERIAL_UNALLOCATED: 403,
  SERIAL_NOT_ALLOWED: 403,
  CONFLICT: 409,
  BUSY: 409,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

/**
 * Refusals about one certificate of an upload rather than the upload itself: the directory
 * publishes the rest of the upload and names each of these in its receipt.
 */
export const CERTIFICATE_REFUSALS: ReadonlySet<RefusalReason> = new Set<RefusalReason>([
  "CHAIN_INVALID",
  "PROFILE_VIOLATION",
  "LEDGER_MISMATCH",
  "PROOF_INVALID",
  "SERIAL_UNALLOCATED",
  "SERIAL_NOT_ALLOWED",
  "CONFLICT",
]);

export class DirectoryError extends errorClass<DirectoryErrorCode>("DirectoryError", {
  DIRECTORY_UNREACHABLE: "unavailable",
  REFUSED: "verify",
  REFUSED_MALFORMED: "input",
  NOT_FOUND: "input",
  BAD_RESPONSE: "unavailable",
  ALLOCATION_CONFLICT: "state",
  INVALID: "input",
  URL_INVALID: "usage",
  LEDGER_BEHIND: "state",
  SIGNATURE_ENCODING: "internal",
  CONFIG_INVALID: "usage",
  ANCHORS_INVALID: "verify",
  LISTEN_FAILED: "unavailable",
  STORE_INCONSISTENT: "internal",
  STORE_UNAVAILABLE: "unavailable",
  SCHEMA_TOO_NEW: "state",
  MIGRATION_FAILED: "state",
}) {
  /** The HTTP status, for REFUSED, NOT_FOUND and BAD_RESPONSE. */
  readonly status?: number;
  /** The directory's reason, for REFUSED. */
  readonly reason?: RefusalReason;
  /** The checkpoint size the directory holds for the station, when a refusal names it (409s about history). */
  readonly acceptedSize?: number;

  constructor(code: DirectoryErrorCode, message: string, options?: { cause?: unknown; status?: number; reason?: RefusalReason; acceptedSize?: number }) {
    super(code, message, options);
    this.status = options?.status;
    this.reason = options?.reason;
    this.acceptedSize = options?.acceptedSize;
  }
}

/**
 * An upload the server will not take. `message` is what the station is told (safe: it names
 * the failed check and the serial, never a stack, a path or another station's data);
 * `detail` and `cause` are what the server logs.
 */
export class Refusal extends Error {
  readonly reason: RefusalReason;
  readonly status: number;
  readonly detail?: string;
  readonly serial?: string;
  readonly acceptedSize?: number;

  constructor(reason: RefusalReason, message: string, options?: { detail?: string; cause?: unknown; serial?: string; acceptedSize?: number }) {
    super(message, { cause: options?.cause });
    this.name = "Refusal";
    this.reason = reason;
    this.status = REFUSAL_STATUS[reason];
    this.detail = options?.detail;
    this.serial = options?.serial;
    this.acceptedSize = options?.acceptedSize;
  }
}
