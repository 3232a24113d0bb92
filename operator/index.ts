export { OperatorError, type OperatorErrorCode } from "./errors.js";
export { checkDeviceCertificate, fetchDeviceCertificate, parseCertificates, type CheckedDevice, type FetchDeviceOptions } from "./fetch.js";
export {
  encryptToCertificate,
  cmsPem,
  recipientKeyOf,
  assertEncryptionUsage,
  keyUsageNames,
  type EncryptResult,
  type EncryptOptions,
  type RecipientKeyInfo,
} from "./encrypt.js";
