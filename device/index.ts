export { DeviceError, type DeviceErrorCode } from "./errors.js";
export { certificationRequest, certificationRequestInfo, isPrintableString, p256Encodings, toPem } from "./csr.js";
export { SoftKeystore, Pkcs11Keystore, type UnitKey, type UnitKeystore, type Pkcs11KeystoreOptions } from "./keystore.js";
export { UnitFlash, readUnitRecord, readSoftUnitKey, unitsDbPath, type UnitRecord, type KeyRef } from "./store.js";
export { InstallChecker, Refusal, type Installer } from "./install-check.js";
export { exportUnitPart, type UnitPart } from "./export.js";
export { decryptForUnit, type UnitDecryptOptions, type UnitDecryptResult } from "./decrypt.js";
export { bootstrapUnit, type BootstrapOptions, type BootstrapResult } from "./bootstrap.js";
export { CmpClient, type CmpClientOptions, type CmpEnrolled } from "./cmp-client.js";
