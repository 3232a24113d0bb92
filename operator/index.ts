export { OperatorError, type OperatorErrorCode } from "./errors.js";
export { checkDeviceCertificate, fetchDeviceCertificate, parseCertificates, type CheckedDevice, type FetchDeviceOptions } from "./fetch.js";
export {
  encryptToCertificate,
  cmsPem,
  recipientKeyOf,
  assertEncryptionUsage,
  keyUsageNames,
  MAX_CONTENT_BYTES,
  type EncryptResult,
  type RecipientKeyInfo,
} from "./encrypt.js";
