export { Hsm, type HsmOptions, type KeyInfo, type CreateKeyOptions, type RsaPadding } from "./hsm.js";
export { withHsm } from "./with-hsm.js";
export { HsmError, ckr, type HsmErrorCode } from "./errors.js";
export { KEY_ALGORITHMS, hashFor, type KeyAlgorithm, type Signer } from "./signer.js";
export { parsePkcs11Uri, formatPkcs11Uri, readPin, type Pkcs11Uri } from "./uri.js";
export { Pkcs11Module, findSoftHsmModule } from "./module.js";
export { initEmbeddedHsm, EMBEDDED_KEYS, EMBEDDED_UNIT_TOKEN, type EmbeddedInitResult } from "./embedded.js";
