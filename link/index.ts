export { UnitError, type UnitErrorCode } from "./errors.js";
export type { UnitLink, UnitFixture, KeyRequest } from "./driver.js";
export {
  PROTOCOL_VERSION,
  MAX_FRAME_BYTES,
  MAX_PEM_CHARS,
  MAX_CHAIN_CERTS,
  MAX_IN_FLIGHT,
  OID_SYNTAX,
  UNIT_KEY_ALGORITHMS,
  UNIT_STATES,
  UNIT_OPS,
  FrameDecoder,
  encodeFrame,
  isPlainText,
  parseRequest,
  parseResponse,
  parseResult,
  safeText,
  type UnitKeyAlgorithm,
  type UnitState,
  type UnitOp,
  type UnitRefusalCode,
  type HelloResult,
  type GenkeyResult,
  type InstallResult,
  type StatusResult,
  type OpResults,
  type ParsedRequest,
  type UnitRequest,
  type UnitResponse,
} from "./protocol.js";
export { TcpFixture, DEFAULT_UNIT_TIMEOUT_MS, type TcpFixtureOptions } from "./tcp.js";
/** RFC 4210/4211 CMP structures and PasswordBasedMac protection, for the CMP endpoint (issue 19). */
export * as cmp from "./cmp/index.js";
export { MergedFixture } from "./merge.js";
