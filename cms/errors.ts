import { IdmintError, type ErrorKind } from "../core/index.js";

/**
 * What can go wrong in the CMS module.
 *
 * - TOO_LARGE: a configuration, or an encrypted one, is over the one size limit both sides
 *   share (cms/limits.ts); refused before any work.
 * - CMS_INVALID: the input is not well-formed CMS of the type it claims.
 * - CMS_UNSUPPORTED: well-formed, but with an algorithm or a part idmint does not accept.
 */
export type CmsErrorCode = "TOO_LARGE" | "CMS_INVALID" | "CMS_UNSUPPORTED";

const DEFAULT_KIND: Record<CmsErrorCode, ErrorKind> = {
  TOO_LARGE: "input",
  CMS_INVALID: "input",
  CMS_UNSUPPORTED: "input",
};

export class CmsError extends IdmintError<CmsErrorCode> {
  constructor(code: CmsErrorCode, message: string, options?: { cause?: unknown }) {
    super(DEFAULT_KIND[code], code, message, options);
    this.name = "CmsError";
  }
}
