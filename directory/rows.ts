import { sameBytes } from "../pki/index.js";
import type { AcceptedCheckpoint, ConflictRecord, PublishedCertificate, UploadCommit } from "./records.js";

/** The rows both stores keep (the same columns in SQLite and PostgreSQL) and their mapping to records. */
export interface CheckpointRow {
  station: string;
  size: number;
  root: Buffer;
  note: string;
  station_certificate: string;
  accepted_at: string;
}

export interface CertificateRow {
  serial: string;
  der: Buffer;
  fingerprint: string;
  certificate_serial: string;
  station: string;
  ledger_index: number;
  entry: Buffer;
  checkpoint_size: number;
  inclusion_proof: string;
  issued_at: string;
  published_at: string;
}

export interface ConflictRow {
  serial: string;
  der: Buffer;
  fingerprint: string;
  station: string;
  ledger_index: number;
  entry: Buffer;
  checkpoint_note: string;
  inclusion_proof: string;
  held_fingerprint: string;
  received_at: string;
}

export const encodeProof = (p: readonly Uint8Array[]) => JSON.stringify(p.map((h) => Buffer.from(h).toString("base64")));
const decodeProof = (t: string) => (JSON.parse(t) as string[]).map((h) => new Uint8Array(Buffer.from(h, "base64")));

export function toCheckpoint(r: CheckpointRow): AcceptedCheckpoint {
  return { station: r.station, size: r.size, root: new Uint8Array(r.root), note: r.note, stationCertificate: r.station_certificate, acceptedAt: r.accepted_at };
}

export function toCertificate(r: CertificateRow): PublishedCertificate {
  return {
    serial: r.serial,
    der: new Uint8Array(r.der),
    fingerprint: r.fingerprint,
    certificateSerial: r.certificate_serial,
    station: r.station,
    ledgerIndex: r.ledger_index,
    entry: new Uint8Array(r.entry),
    checkpointSize: r.checkpoint_size,
    inclusionProof: decodeProof(r.inclusion_proof),
    issuedAt: r.issued_at,
    publishedAt: r.published_at,
  };
}

export function toConflict(r: ConflictRow): ConflictRecord {
  return {
    serial: r.serial,
    der: new Uint8Array(r.der),
    fingerprint: r.fingerprint,
    station: r.station,
    ledgerIndex: r.ledger_index,
    entry: new Uint8Array(r.entry),
    checkpointNote: r.checkpoint_note,
    inclusionProof: decodeProof(r.inclusion_proof),
    heldFingerprint: r.held_fingerprint,
    receivedAt: r.received_at,
  };
}

/**
 * What a commit does with the station's latest checkpoint, read inside its transaction: it
 * applies only if that is still the one the upload was verified against (compare-and-set);
 * then the new checkpoint either advances the chain or is that same checkpoint again.
 */
export function checkpointStep(current: { size: number; root: Uint8Array } | undefined, c: UploadCommit): "STALE" | "advance" | "same" {
  const expected = c.expected;
  const unchanged = expected === undefined ? current === undefined : current !== undefined && current.size === expected.size && sameBytes(new Uint8Array(current.root), expected.root);
  if (!unchanged) return "STALE";
  if (current === undefined || c.checkpoint.size > current.size) return "advance";
  return c.checkpoint.size === current.size && sameBytes(new Uint8Array(current.root), c.checkpoint.root) ? "same" : "STALE";
}
