export { CmsError, type CmsErrorCode } from "./errors.js";
export { MAX_CONFIGURATION_BYTES, MAX_CMS_BYTES, MAX_ENCRYPTED_INPUT_BYTES, assertWithinLimit, assertFileWithinLimit, type SizeLimit } from "./limits.js";
export { AuthEnvelopedData, AuthAttributes, GcmParameters } from "./auth-enveloped.js";
export { eccCmsSharedInfo, x963Kdf, type KdfHash } from "./kdf.js";
export { cmsPem, unframe, type Framing } from "./framing.js";
export { encryptToCertificate, recipientKeyOf, assertEncryptionUsage, type EncryptResult, type EncryptOptions, type RecipientKeyInfo } from "./encrypt.js";
export { softRecipientKey, tokenRecipientKey, type RecipientKey } from "./recipient-key.js";
export { recipientIdentity, type RecipientIdentity } from "./recipients.js";
export { parseEnvelope, openEnvelope, decryptWithKey, type Envelope, type EncryptedResult, type DecryptResult } from "./open.js";
