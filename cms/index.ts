export { CmsError, type CmsErrorCode } from "./errors.js";
export { AUTH_OID } from "./oids.js";
export { MAX_CONFIGURATION_BYTES, MAX_CMS_BYTES, MAX_ENCRYPTED_INPUT_BYTES, assertWithinLimit, assertFileWithinLimit, type SizeLimit } from "./limits.js";
export { sealAuthEnvelopedData, readAuthEnvelopedData, AuthEnvelopedData, AuthAttributes, GcmParameters, type AuthEnveloped } from "./auth-enveloped.js";
