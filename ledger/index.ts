export { LedgerError, type LedgerErrorCode } from "./errors.js";
export { Ledger, type StoredCheckpoint, type AppendedEntry } from "./store.js";
export { encodeEntry, decodeEntry, EVENT_TYPES, type LedgerEntry, type LedgerEvent, type LedgerEventType } from "./entry.js";
export { signCheckpoint, openCheckpoint, stationOrigin, noteKeyId, type Checkpoint } from "./checkpoint.js";
export { verifyLedger, type LedgerReport } from "./verify.js";
export { proveEntry, verifyBundle, type InclusionBundle } from "./proof.js";
export {
  hashLeaf,
  hashChildren,
  emptyRoot,
  rootFromLeafHashes,
  inclusionProof,
  inclusionProofs,
  consistencyProof,
  verifyInclusion,
  verifyConsistency,
  MerkleFrontier,
  type Hash,
} from "./merkle.js";
export { openExtract, type LedgerExtract } from "./extract.js";
export { TreeBuilder } from "./merkle.js";
