export { SoftwareUnit } from "./software-unit.js";
export { UnitError, type UnitErrorCode } from "./errors.js";
export type { UnitLink, UnitFixture } from "./driver.js";
export {
  PROTOCOL_VERSION,
  MAX_FRAME_BYTES,
  MAX_PEM_CHARS,
  MAX_CHAIN_CERTS,
  MAX_IN_FLIGHT,
  UNIT_KEY_ALGORITHMS,
  UNIT_STATES,
  UNIT_OPS,
  FrameDecoder,
  encodeFrame,
  parseRequest,
  parseResponse,
  parseResult,
  type UnitKeyAlgorithm,
  type UnitState,
  type UnitOp,
  type UnitRefusalCode,
  type HelloResult,
  type GenkeyResult,
  type InstallResult,
  type StatusResult,
  type UnitRequest,
  type UnitResponse,
} from "./protocol.js";
export { TcpFixture, DEFAULT_UNIT_TIMEOUT_MS, type TcpFixtureOptions } from "./tcp.js";
export { UnitSimulator, SIM_HOST, SIM_LIMITS, type UnitSimulatorOptions, type SerialRange, type SerialList, type SimKeystoreOptions } from "./simulator.js";
export { startSimulatorProcess, type SimulatorProcess, type SimProcessOptions } from "./sim-process.js";
export { UNIT_FAULTS, parseFaultSpec, type UnitFault, type FaultSpec } from "./faults.js";
export { readUnitRecord, readSoftUnitKey, unitsDbPath, type UnitRecord, type KeyRef } from "./store.js";
export { exportUnitPart, type UnitPart } from "./export.js";
export type { Pkcs11KeystoreOptions } from "./keystore.js";
export {
  decryptForUnit,
  decryptWithKey,
  parseEnvelope,
  openEnvelope,
  unframe,
  softRecipientKey,
  tokenRecipientKey,
  recipientIdentity,
  UnitDecryptError,
  type UnitDecryptErrorCode,
  type UnitDecryptOptions,
  type UnitDecryptResult,
  type DecryptResult,
  type EncryptedResult,
  type RecipientKey,
  type RecipientIdentity,
  type Envelope,
  type Framing,
} from "./decrypt.js";
