export { OperatorError, type OperatorErrorCode } from "./errors.js";
export { checkDeviceCertificate, fetchDeviceCertificate, parseCertificates, type CheckedDevice, type FetchDeviceOptions } from "./fetch.js";
