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
export {
  UPLOAD_FORMAT,
  SIGNATURE_HEADER,
  MAX_UPLOAD_CERTIFICATES,
  acceptUpload,
  parseUpload,
  type UploadBody,
  type UploadedCertificate,
  type UploadReceipt,
  type UploadOutcome,
  type RefusedCertificate,
  type TrustAnchors,
  type UploadContext,
} from "./upload.js";
export { startDirectory, DIRECTORY_DEFAULTS, type DirectoryOptions, type DirectoryLoggerOptions, type RunningDirectory } from "./server.js";
export {
  DirectoryClient,
  signUpload,
  buildUpload,
  type UploadSigner,
  type SignedUpload,
  type UploadContent,
  type CertificateInfo,
  type DirectoryClientOptions,
} from "./client.js";
