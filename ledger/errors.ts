import { errorClass } from "../core/index.js";

export type LedgerErrorCode =
  | "ENTRY_INVALID"
  | "ENTRY_MISSING"
  | "ENTRY_MODIFIED"
  | "CHECKPOINT_INVALID"
  | "CHECKPOINT_SIGNATURE"
  | "CHECKPOINT_MISMATCH"
  | "LEDGER_TRUNCATED"
  | "NO_LEDGER"
  | "NO_CHECKPOINT"
  | "NOT_COVERED"
  | "PROOF_INVALID"
  | "PROOF_UNREADABLE"
  | "NO_SUCH_ENTRY"
  | "CHECKPOINT_ENCODING"
  | "ENTRY_ENCODING"
  | "STATION_KEY_UNSUPPORTED"
  | "FRONTIER_CORRUPT"
  | "TILE_MISMATCH"
  | "TILE_MISSING"
  | "TILES_FOREIGN"
  | "TILES_UNREACHABLE"
  | "ENTRY_TOO_LARGE";

/**
 * - NO_SUCH_ENTRY, PROOF_UNREADABLE: the user asked for an entry the ledger does not have, or
 *   gave a proof file that is not one.
 * - CHECKPOINT_ENCODING, ENTRY_ENCODING: idmint could not encode what it wrote itself: a bug.
 * - STATION_KEY_UNSUPPORTED: the station key cannot sign checkpoints (not ECDSA).
 * - TILE_MISSING, TILES_FOREIGN: the tiles folder or URL given lacks a tile, or holds another log.
 * - TILES_UNREACHABLE: the tiles URL did not answer.
 * - ENTRY_TOO_LARGE: an entry too big for a C2SP entry bundle (65535 bytes).
 * - the others: the ledger or a proof failed a check (verify), or is not there yet (state).
 */
export class LedgerError extends errorClass<LedgerErrorCode>("LedgerError", {
  ENTRY_INVALID: "verify",
  ENTRY_MISSING: "verify",
  ENTRY_MODIFIED: "verify",
  CHECKPOINT_INVALID: "verify",
  CHECKPOINT_SIGNATURE: "verify",
  CHECKPOINT_MISMATCH: "verify",
  LEDGER_TRUNCATED: "verify",
  NO_LEDGER: "state",
  NO_CHECKPOINT: "state",
  NOT_COVERED: "state",
  PROOF_INVALID: "verify",
  PROOF_UNREADABLE: "input",
  NO_SUCH_ENTRY: "input",
  CHECKPOINT_ENCODING: "internal",
  ENTRY_ENCODING: "internal",
  STATION_KEY_UNSUPPORTED: "hsm",
  FRONTIER_CORRUPT: "internal",
  TILE_MISMATCH: "verify",
  TILE_MISSING: "input",
  TILES_FOREIGN: "input",
  TILES_UNREACHABLE: "unavailable",
  ENTRY_TOO_LARGE: "state",
}) {
  /** The first entry index or checkpoint number at fault, when there is one. */
  readonly at?: { entry?: number; checkpoint?: number };

  constructor(code: LedgerErrorCode, message: string, options?: { cause?: unknown; at?: { entry?: number; checkpoint?: number } }) {
    super(code, message, options);
    this.at = options?.at;
  }
}
