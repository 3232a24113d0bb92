/**
 * Base64 decoded only if it is in canonical form: Buffer's decoder skips junk and odd padding
 * silently, so a round trip is what refuses them. Undefined for anything else.
 */
export function decodeBase64Strict(text: string): Uint8Array | undefined {
  const bytes = Buffer.from(text, "base64");
  return bytes.toString("base64") === text ? new Uint8Array(bytes) : undefined;
}
