import { errorClass } from "../core/index.js";

/**
 * What can go wrong in the CMS module. Everything a CMS input holds is attacker-controlled.
 *
 * - TOO_LARGE: a configuration, or an encrypted one, is over the one size limit both sides
 *   share (cms/limits.ts); refused before any work.
 * - CMS_INVALID: the input is not well-formed CMS of the type it claims.
 * - CMS_UNSUPPORTED: well-formed, but with an algorithm or a part idmint does not accept.
 * - NOT_ENCRYPTED: the input is plaintext, and the caller requires encryption (RFC 8886 §4.3).
 * - NOT_AUTHENTICATED: the input is not AuthEnvelopedData, and the caller requires integrity.
 * - NOT_FOR_THIS_UNIT: none of the input's recipients is the key it is opened with.
 * - DECRYPT_FAILED: the key does not open it: tampered, or encrypted to another key.
 * - KEY_UNSUPPORTED: a recipient key (a certificate's, or the unit's own) is of a type or
 *   size idmint does not encrypt to.
 * - KEY_USAGE: the recipient's certificate does not allow the key agreement or transport.
 * - KEY_NOT_PERMITTED: the key is in a token that does not allow it to derive or decrypt.
 * - SIGNATURE_INVALID: a SignedData's signature, message digest or content type does not verify.
 * - VOUCHER_INVALID: a signed voucher's content is not an RFC 8366 voucher.
 * - VOUCHER_SERIAL, VOUCHER_EXPIRED: a voucher is for another unit, or past its expires-on.
 */
export type CmsErrorCode =
  | "TOO_LARGE"
  | "CMS_INVALID"
  | "CMS_UNSUPPORTED"
  | "NOT_ENCRYPTED"
  | "NOT_AUTHENTICATED"
  | "NOT_FOR_THIS_UNIT"
  | "DECRYPT_FAILED"
  | "KEY_UNSUPPORTED"
  | "KEY_USAGE"
  | "KEY_NOT_PERMITTED"
  | "SIGNATURE_INVALID"
  | "VOUCHER_INVALID"
  | "VOUCHER_SERIAL"
  | "VOUCHER_EXPIRED";

export class CmsError extends errorClass<CmsErrorCode>("CmsError", {
  TOO_LARGE: "input",
  CMS_INVALID: "input",
  CMS_UNSUPPORTED: "input",
  NOT_ENCRYPTED: "input",
  NOT_AUTHENTICATED: "verify",
  NOT_FOR_THIS_UNIT: "input",
  DECRYPT_FAILED: "verify",
  KEY_UNSUPPORTED: "input",
  KEY_USAGE: "input",
  KEY_NOT_PERMITTED: "hsm",
  SIGNATURE_INVALID: "verify",
  VOUCHER_INVALID: "input",
  VOUCHER_SERIAL: "verify",
  VOUCHER_EXPIRED: "verify",
}) {}

export const invalid = (why: string, cause?: unknown) => new CmsError("CMS_INVALID", `the input is not a valid CMS EnvelopedData (${why}): give the file the operator encrypted`, { cause });
export const unsupported = (what: string) => new CmsError("CMS_UNSUPPORTED", what);
