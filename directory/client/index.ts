// The directory's client face: what stations and operators need to talk to a directory server,
// without loading the server, its store or its upload checks.
export { DirectoryError, type DirectoryErrorCode, type RefusalReason } from "../errors.js";
export {
  DirectoryClient,
  signUpload,
  buildUpload,
  type UploadSigner,
  type SignedUpload,
  type UploadContent,
  type CertificateInfo,
  type DirectoryClientOptions,
} from "../client.js";
export { SIGNATURE_HEADER, UPLOAD_FORMAT, MAX_UPLOAD_CERTIFICATES, type UploadBody, type UploadReceipt, type UploadedCertificate, type RefusedCertificate } from "../wire.js";
