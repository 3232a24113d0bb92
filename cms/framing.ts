import { decodeBase64Strict } from "../core/index.js";
import { CmsError } from "./errors.js";

export type Framing = "der" | "pem" | "smime";

function strictBase64(text: string, what: string): Uint8Array {
  const der = decodeBase64Strict(text.replace(/[\r\n\t ]/g, ""));
  if (!der) throw new CmsError("CMS_INVALID", `${what} is not valid base64: give the file as openssl wrote it`);
  return der;
}

function isText(bytes: Uint8Array): string | undefined {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
  // Tabs, line feeds, form feeds and carriage returns are text; any other control character is not.
  return /[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(text) ? undefined : text;
}

/**
 * RFC 8886 §4.3 leaves it to the device to tell an encrypted configuration from a plain
 * one. Here: PEM armour (any "-----BEGIN" at the start) and S/MIME (a MIME header naming
 * pkcs7-mime) are encrypted framings, and so is anything that is not text (DER is binary);
 * only text without either framing is plaintext. So a damaged encrypted file is refused,
 * never taken for a plaintext configuration.
 */
export function unframe(input: Uint8Array): { framing: Framing; der: Uint8Array } | undefined {
  const text = isText(input);
  if (text === undefined) return { framing: "der", der: input };
  const start = text.replace(/^\uFEFF/, "").trimStart();
  if (start.startsWith("-----BEGIN")) {
    const m = /^-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n([\s\S]*?)-----END \1-----\s*$/.exec(start);
    if (!m) throw new CmsError("CMS_INVALID", "the input starts like PEM but is not one well-formed PEM block: give the file as openssl wrote it");
    if (m[1] !== "CMS" && m[1] !== "PKCS7") throw new CmsError("CMS_INVALID", `the input is a PEM block labelled ${m[1]}, not CMS: give the encrypted configuration (-----BEGIN CMS-----)`);
    return { framing: "pem", der: strictBase64(m[2]!, "the PEM block") };
  }
  const split = /\r?\n\r?\n/.exec(start);
  const header = split ? start.slice(0, split.index) : "";
  if (/^MIME-Version:/i.test(start) || /^Content-Type:\s*application\/(x-)?pkcs7-mime/im.test(header)) {
    if (!split || !/^Content-Type:\s*application\/(x-)?pkcs7-mime/im.test(header)) {
      throw new CmsError("CMS_INVALID", "the input is a MIME message but not S/MIME enveloped data (application/pkcs7-mime): give the encrypted configuration");
    }
    if (!/^Content-Transfer-Encoding:\s*base64\s*$/im.test(header)) {
      throw new CmsError("CMS_UNSUPPORTED", "the S/MIME message is not base64-encoded: have it written with `openssl cms -encrypt -outform DER` (or PEM)");
    }
    return { framing: "smime", der: strictBase64(start.slice(split.index + split[0].length), "the S/MIME body") };
  }
  return undefined;
}

/** PEM as `openssl cms -outform PEM` writes it: "-----BEGIN CMS-----", 64 columns. */
export function cmsPem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN CMS-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END CMS-----\n`;
}
