import { statSync } from "node:fs";
import { CmsError } from "./errors.js";

/**
 * One limit for a configuration's plaintext, the same on both sides: `operator encrypt`
 * refuses a larger one, and `unit decrypt` refuses any input that could hold one. A device's
 * configuration is kilobytes; 8 MiB leaves room for the largest while bounding what a unit
 * holds in memory, and keeps every CMS form below asn1js' 16 MiB parsing limit.
 */
export const MAX_CONFIGURATION_BYTES = 8 * 1024 * 1024;

/**
 * CMS around the configuration: recipients (an RSA-4096 key transport is ~0.6 KB), algorithm
 * parameters, CBC padding or the GCM tag, and the 4-byte header of each 4 KiB piece of the
 * BER that `openssl cms -stream` writes (8 KiB at the limit). Measured: 8.5 KB in all.
 */
const CMS_OVERHEAD_BYTES = 64 * 1024;

/** The CMS (DER or BER) that can carry a configuration of at most MAX_CONFIGURATION_BYTES. */
export const MAX_CMS_BYTES = MAX_CONFIGURATION_BYTES + CMS_OVERHEAD_BYTES;

/**
 * The encrypted file as given: DER, or base64 in PEM or S/MIME (4 characters per 3 bytes,
 * up to a CRLF every 64 characters) with 4 KiB for the armour and MIME headers.
 */
export const MAX_ENCRYPTED_INPUT_BYTES = Math.ceil(MAX_CMS_BYTES / 3) * 4 * (66 / 64) + 4096;

export type SizeLimit = "configuration" | "cms" | "encrypted";

const LIMITS: Record<SizeLimit, { max: number; what: string; fix: string }> = {
  configuration: {
    max: MAX_CONFIGURATION_BYTES,
    what: "a configuration may have",
    fix: "trim it, or deliver bulk data (firmware, images) another way",
  },
  cms: {
    max: MAX_CMS_BYTES,
    what: "the CMS of a configuration may have",
    fix: "it holds more than a configuration; ask the operator for a configuration of at most 8 MiB",
  },
  encrypted: {
    max: MAX_ENCRYPTED_INPUT_BYTES,
    what: "an encrypted configuration may have, even as PEM or S/MIME",
    fix: "it holds more than a configuration; ask the operator for a configuration of at most 8 MiB",
  },
};

/** Refuses `bytes` over `limit` (TOO_LARGE, exit 3); `what` names the thing, e.g. "the configuration router.cfg". */
export function assertWithinLimit(limit: SizeLimit, bytes: number, what: string): void {
  const l = LIMITS[limit];
  if (bytes <= l.max) return;
  throw new CmsError("TOO_LARGE", `${what} is ${bytes} bytes, more than the ${l.max} ${l.what} (idmint limits configurations to 8 MiB, on the operator's side and the unit's): ${l.fix}`);
}

/**
 * The same for a file, from its size alone, before a byte of it is read. A path that cannot
 * be stat'ed passes: reading it then says what is wrong with it.
 */
export function assertFileWithinLimit(limit: SizeLimit, path: string, what: string): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return;
  }
  assertWithinLimit(limit, size, `${what} ${path}`);
}
