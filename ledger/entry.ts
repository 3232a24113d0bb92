import canonicalize from "canonicalize";
import { LedgerError } from "./errors.js";

/**
 * The events a station records. Every field is what an auditor needs to tie the event to
 * a unit, a key or a certificate; nothing secret is ever recorded.
 */
export type LedgerEvent =
  | { type: "allocation.imported"; allocationId: string; order: string; station: string; count: number; digest: string }
  | { type: "serial.reserved"; serial: string; allocationId?: string }
  | { type: "serial.released"; serial: string; reason: string }
  | { type: "signing.intent"; serial: string; keyFingerprint: string; certificateSerial: string }
  | { type: "signing.retried"; serial: string; certificateSerial: string }
  | { type: "certificate.issued"; serial: string; certificateSerial: string; certificateFingerprint: string }
  | { type: "unit.delivered"; serial: string; certificateFingerprint: string }
  | { type: "serial.scrapped"; serial: string; reason: string }
  /** A one-off certificate for a serial in no allocation (a lab unit), declared before its intent. */
  | { type: "serial.outside-allocation"; serial: string; reason: string }
  | { type: "upload.sent"; directory: string; certificates: number; checkpointSize: number }
  /** An RFC 8366 voucher: which unit went to which owner (the SHA-256 of its pinned-domain-cert), and the voucher's own SHA-256. */
  | { type: "voucher.issued"; serial: string; owner: string; assertion: string; voucherFingerprint: string; expiresOn?: string; nonce?: boolean }
  | { type: "error"; serial?: string; stage: string; code: string; message: string };

export type LedgerEventType = LedgerEvent["type"];

export const EVENT_TYPES: readonly LedgerEventType[] = [
  "allocation.imported",
  "serial.reserved",
  "serial.released",
  "signing.intent",
  "signing.retried",
  "certificate.issued",
  "unit.delivered",
  "serial.scrapped",
  "serial.outside-allocation",
  "upload.sent",
  "voucher.issued",
  "error",
];

export interface LedgerEntry {
  index: number;
  time: string;
  event: LedgerEvent;
}

const FORMAT = "idmint-ledger/1";

/**
 * The canonical bytes of an entry, which are the Merkle leaf (RFC 9162 §2.1.1):
 *   "idmint-ledger/1 <index> <type> <time>\n" || JCS(event fields without type)  (RFC 8785)
 * The header line lets a verifier check an entry's position without parsing JSON.
 */
export function encodeEntry(entry: LedgerEntry): Buffer {
  const { type, ...fields } = entry.event;
  if (!EVENT_TYPES.includes(type)) throw new LedgerError("ENTRY_ENCODING", `unknown ledger event type ${type}`);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/.test(entry.time)) throw new LedgerError("ENTRY_ENCODING", `ledger time ${entry.time} is not ISO 8601 UTC`);
  return Buffer.from(`${FORMAT} ${entry.index} ${type} ${entry.time}\n${canonicalize(fields)}`, "utf8");
}

/** The index an encoded entry claims, read from its header alone (the hot path of `verify`). */
export function claimedIndex(body: Uint8Array): number {
  // "idmint-ledger/1 " is 16 bytes; digits run to the next space.
  let i = FORMAT.length + 1;
  let n = 0;
  let digits = 0;
  for (; i < body.length && body[i] !== 0x20; i++, digits++) {
    const d = body[i]! - 0x30;
    if (d < 0 || d > 9 || digits > 15) return -1;
    n = n * 10 + d;
  }
  return digits === 0 || body.length < FORMAT.length || Buffer.from(body.buffer, body.byteOffset, FORMAT.length).toString("latin1") !== FORMAT ? -1 : n;
}

/** Parses an entry; anything that is not exactly what `encodeEntry` would write is refused. */
export function decodeEntry(body: Uint8Array): LedgerEntry {
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8");
  const nl = text.indexOf("\n");
  const header = (nl === -1 ? text : text.slice(0, nl)).split(" ");
  const [format, index, type, time] = header;
  let entry: LedgerEntry | undefined;
  try {
    if (header.length === 4 && format === FORMAT && nl !== -1) {
      const fields = JSON.parse(text.slice(nl + 1)) as Record<string, unknown>;
      entry = { index: Number(index), time: time!, event: { ...fields, type } as LedgerEvent };
      if (!encodeEntry(entry).equals(Buffer.from(body))) entry = undefined;
    }
  } catch {
    entry = undefined;
  }
  if (!entry) throw new LedgerError("ENTRY_INVALID", `ledger entry ${index ?? "?"} is not a well-formed ${FORMAT} entry`);
  return entry;
}
