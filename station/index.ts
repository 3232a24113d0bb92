export { buildUsageReport } from "./report.js";
export { StationError, type StationErrorCode } from "./errors.js";
export { acquireRunLock } from "./lock.js";
export { GroupCommitter } from "./commits.js";
export { UnitStore, type UnitRow, type UnitStage } from "./store.js";
export { provisionUnit, STEPS, type Step, type LineContext, type UnitOutcome, type TimedStage } from "./pipeline.js";
export { runLine, type LineSummary } from "./line.js";
export { Uploader, type UploaderDeps, type UploadResult } from "./uploader.js";
export type { OutboxCounts } from "./store.js";
