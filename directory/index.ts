export { DirectoryError, REFUSAL_STATUS, CERTIFICATE_REFUSALS, type DirectoryErrorCode, type RefusalReason } from "./errors.js";
export {
  SqliteDirectoryStore,
  openDirectoryStore,
  type DirectoryStore,
  type AcceptedCheckpoint,
  type PublishedCertificate,
  type ConflictRecord,
  type AllocationRecord,
  type UploadCommit,
  type CommitOutcome,
} from "./store.js";
export { PgDirectoryStore, openPgStore, type PgStoreOptions } from "./pg-store.js";
export { redactUrl, pgSchemaVersion } from "./pg-migrate.js";
export { migrateSqliteToPg, type MigrationReport } from "./migrate-store.js";
export { openStore, parseStoreLocation, type StoreLocation } from "./open-store.js";
export { acceptUpload, parseUpload, type UploadOutcome, type TrustAnchors, type UploadContext } from "./upload.js";
export { UPLOAD_FORMAT, SIGNATURE_HEADER, MAX_UPLOAD_CERTIFICATES, type UploadBody, type UploadedCertificate, type UploadReceipt, type RefusedCertificate } from "./wire.js";
export { startDirectory, DIRECTORY_DEFAULTS, type DirectoryOptions, type DirectoryLoggerOptions, type RunningDirectory } from "./server.js";
