export { SerialsError, type SerialsErrorCode } from "./errors.js";
export { formatSerial, expandSerials, validateAllocation, allocationDigest, claimCodeHash, MAX_ALLOCATION, type Allocation, type SerialRange } from "./allocation.js";
export { signDocument, openDocument, canonicalBytes, type SignedDocument, type SignerPurpose } from "./document.js";
export { VendorRegister, type AllocateParams, type AllocationResult } from "./vendor.js";
export { SerialStore, type AuditLog, type SerialEvent, type SerialRow, type SerialState, type AllocationStatus } from "./store.js";
export {
  openAllocation,
  openUsageReport,
  reconcile,
  reconcileTiled,
  type UsageReport,
  type UsageReportV2,
  type SerialFate,
  type LedgerEvidence,
  type Anomaly,
  type AnomalyKind,
  type Reconciliation,
} from "./report.js";
export { FateReplay, type ReplayedEvent, type FateState } from "./replay.js";
