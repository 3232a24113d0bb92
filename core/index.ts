export { IdmintError, CoreError, errorClass, EXIT_CODES, isIdmintError, toWireError, fromWireError, type CoreErrorCode, type ErrorKind, type WireError } from "./errors.js";
export { systemClock, fixedClock, systemRandom, type Clock, type Random } from "./clock.js";
export { Home, KEY_ROLES, DEFAULT_HW_TYPE_OID, type IdmintConfig, type KeyRole } from "./home.js";
export { openDb, migrate, type Db, type Migration, type OpenDbOptions } from "./db.js";
export { isDamagedStore } from "./db-guard.js";
export { removeLeftoverTemporaries, writeCopy, writeFileAtomic, writeNewFiles } from "./files.js";
export { assertNewOutput, readBoundedInput, readInputFile, readJsonFile, withClaimedOutputs, type ClaimedOutput } from "./input.js";
export { sha256Hex } from "./fingerprint.js";
export { siblingModule, siblingWorker } from "./modules.js";
