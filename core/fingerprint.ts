import { createHash } from "node:crypto";

/** SHA-256 in lower-case hex: how idmint names keys (over DER SPKI) and certificates (over DER). */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
