import { timingSafeEqual } from "node:crypto";

/** Byte strings compared in constant time (for equal lengths): roots, hashes and certificates from the network. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
