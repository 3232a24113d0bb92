import { IdmintError, type ErrorKind } from "../core/index.js";

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
  | "PROOF_INVALID";

export class LedgerError extends IdmintError<LedgerErrorCode> {
  /** The first entry index or checkpoint number at fault, when there is one. */
  readonly at?: { entry?: number; checkpoint?: number };

  constructor(kind: ErrorKind, code: LedgerErrorCode, message: string, options?: { cause?: unknown; at?: { entry?: number; checkpoint?: number } }) {
    super(kind, code, message, options);
    this.at = options?.at;
  }
}
