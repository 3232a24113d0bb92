import { migrate, openDb, type Db, type Migration } from "../core/index.js";
import { DirectoryError } from "./errors.js";
import { sameBytes } from "../pki/index.js";

/** A station's checkpoint the directory accepted (C2SP signed note, verified before it got here). */
export interface AcceptedCheckpoint {
  station: string;
  size: number;
  root: Uint8Array;
  note: string;
  /** The station certificate (PEM) whose key signed the note and the upload. */
  stationCertificate: string;
  acceptedAt: string;
}

/** A published IDevID and the ledger evidence it was accepted on. */
export interface PublishedCertificate {
  serial: string;
  der: Uint8Array;
  /** SHA-256 of the DER, lower-case hex: the ETag, and what the ledger entry names. */
  fingerprint: string;
  certificateSerial: string;
  station: string;
  /** Index of the station's certificate.issued entry for it. */
  ledgerIndex: number;
  /** That entry's canonical bytes. */
  entry: Uint8Array;
  /** Size of the accepted checkpoint the inclusion proof is against. */
  checkpointSize: number;
  inclusionProof: Uint8Array[];
  /** The entry's time: when the station recorded the issue. */
  issuedAt: string;
  publishedAt: string;
}

/** A second, different certificate for a published serial: kept for the vendor, never published. */
export interface ConflictRecord {
  serial: string;
  der: Uint8Array;
  fingerprint: string;
  station: string;
  ledgerIndex: number;
  entry: Uint8Array;
  /** The (refused) checkpoint note the certificate was proven in, as evidence. */
  checkpointNote: string;
  inclusionProof: Uint8Array[];
  /** Fingerprint of the certificate the directory publishes for the serial. */
  heldFingerprint: string;
  receivedAt: string;
}

/** One verified allocation list, as `directory allocations add` registers it. */
export interface AllocationRecord {
  allocationId: string;
  station: string;
  /** SHA-256 of the list's canonical payload: the same id with other content is refused. */
  digest: string;
  serials: readonly string[];
}

/** Everything an accepted upload changes, written in one transaction. */
export interface UploadCommit {
  station: string;
  /**
   * The station's checkpoint the upload was verified against (undefined: none yet). The
   * commit applies only if it is still the latest (compare-and-set), so two concurrent
   * uploads of one station cannot both build on the same checkpoint.
   */
  expected: { size: number; root: Uint8Array } | undefined;
  checkpoint: { size: number; root: Uint8Array; note: string; stationCertificate: string };
  /** Certificates to publish; each must be new or identical to the one held. */
  certificates: readonly PublishedCertificate[];
  at: string;
}

export type CommitOutcome =
  | { ok: true; checkpointAdvanced: boolean; published: string[]; alreadyPublished: string[] }
  | { ok: false; reason: "STALE" | "CONFLICT"; serial?: string };

/**
 * The directory's state behind a small asynchronous interface, so that a PostgreSQL store
 * can replace SQLite without the server changing. Every method is atomic on its own.
 */
export interface DirectoryStore {
  latestCheckpoint(station: string): Promise<AcceptedCheckpoint | undefined>;
  checkpointAt(station: string, size: number): Promise<AcceptedCheckpoint | undefined>;
  allocationOf(serial: string): Promise<{ station: string; allocationId: string } | undefined>;
  /** How many allocation lists are registered: grows with each new one, so stations can tell when to ask again. */
  allocationCount(): Promise<number>;
  certificate(serial: string): Promise<PublishedCertificate | undefined>;
  /** The most recently published certificates, newest first: what a starting server preloads. */
  recentCertificates(limit: number): Promise<Array<{ serial: string; der: Uint8Array; fingerprint: string }>>;
  /** Registers a verified allocation; the same list again is a no-op ({ added: false }). */
  addAllocation(a: AllocationRecord, at: string): Promise<{ added: boolean; count: number }>;
  commitUpload(c: UploadCommit): Promise<CommitOutcome>;
  /** Keeps conflicting certificates for the vendor; the same one again is kept once. */
  recordConflicts(c: readonly ConflictRecord[]): Promise<void>;
  conflicts(serial?: string): Promise<ConflictRecord[]>;
  close(): Promise<void>;
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE directory_allocations (
        allocation_id TEXT PRIMARY KEY,
        station TEXT NOT NULL,
        digest TEXT NOT NULL,
        count INTEGER NOT NULL,
        added_at TEXT NOT NULL
      );
      CREATE TABLE directory_serials (
        serial TEXT PRIMARY KEY,
        station TEXT NOT NULL,
        allocation_id TEXT NOT NULL REFERENCES directory_allocations (allocation_id)
      );
      CREATE TABLE directory_checkpoints (
        station TEXT NOT NULL,
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        note TEXT NOT NULL,
        station_certificate TEXT NOT NULL,
        accepted_at TEXT NOT NULL,
        PRIMARY KEY (station, size)
      );
      CREATE TABLE directory_certificates (
        serial TEXT PRIMARY KEY,
        der BLOB NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        certificate_serial TEXT NOT NULL,
        station TEXT NOT NULL,
        ledger_index INTEGER NOT NULL,
        entry BLOB NOT NULL,
        checkpoint_size INTEGER NOT NULL,
        inclusion_proof TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        published_at TEXT NOT NULL,
        FOREIGN KEY (station, checkpoint_size) REFERENCES directory_checkpoints (station, size)
      );
      CREATE TABLE directory_conflicts (
        id INTEGER PRIMARY KEY,
        serial TEXT NOT NULL,
        der BLOB NOT NULL,
        fingerprint TEXT NOT NULL,
        station TEXT NOT NULL,
        ledger_index INTEGER NOT NULL,
        entry BLOB NOT NULL,
        checkpoint_note TEXT NOT NULL,
        inclusion_proof TEXT NOT NULL,
        held_fingerprint TEXT NOT NULL,
        received_at TEXT NOT NULL,
        UNIQUE (serial, fingerprint)
      );
    `,
  },
];

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

/** The directory store in one SQLite file (core's openDb: WAL, synchronous=FULL). */
export class SqliteDirectoryStore implements DirectoryStore {
  private readonly db: Db;
  private readonly stmts;
  private closed = false;

  constructor(db: Db) {
    this.db = db;
    refuseNewerSchema(db);
    migrate(db, "directory", MIGRATIONS);
    this.stmts = {
      latest: db.prepare("SELECT * FROM directory_checkpoints WHERE station = ? ORDER BY size DESC LIMIT 1"),
      checkpointAt: db.prepare("SELECT * FROM directory_checkpoints WHERE station = ? AND size = ?"),
      addCheckpoint: db.prepare("INSERT INTO directory_checkpoints (station, size, root, note, station_certificate, accepted_at) VALUES (?, ?, ?, ?, ?, ?)"),
      allocationOf: db.prepare("SELECT station, allocation_id AS allocationId FROM directory_serials WHERE serial = ?"),
      allocation: db.prepare("SELECT station, digest, count FROM directory_allocations WHERE allocation_id = ?"),
      allocationCount: db.prepare("SELECT COUNT(*) FROM directory_allocations").pluck(),
      addAllocation: db.prepare("INSERT INTO directory_allocations (allocation_id, station, digest, count, added_at) VALUES (?, ?, ?, ?, ?)"),
      addSerial: db.prepare("INSERT INTO directory_serials (serial, station, allocation_id) VALUES (?, ?, ?)"),
      certificate: db.prepare("SELECT * FROM directory_certificates WHERE serial = ?"),
      addCertificate: db.prepare(
        `INSERT INTO directory_certificates (serial, der, fingerprint, certificate_serial, station, ledger_index, entry, checkpoint_size, inclusion_proof, issued_at, published_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      addConflict: db.prepare(
        `INSERT OR IGNORE INTO directory_conflicts (serial, der, fingerprint, station, ledger_index, entry, checkpoint_note, inclusion_proof, held_fingerprint, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      conflicts: db.prepare("SELECT * FROM directory_conflicts ORDER BY id"),
      conflictsOf: db.prepare("SELECT * FROM directory_conflicts WHERE serial = ? ORDER BY id"),
    };
  }

  async latestCheckpoint(station: string): Promise<AcceptedCheckpoint | undefined> {
    const row = this.stmts.latest.get(station) as CheckpointRow | undefined;
    return row && toCheckpoint(row);
  }

  async checkpointAt(station: string, size: number): Promise<AcceptedCheckpoint | undefined> {
    const row = this.stmts.checkpointAt.get(station, size) as CheckpointRow | undefined;
    return row && toCheckpoint(row);
  }

  async allocationOf(serial: string): Promise<{ station: string; allocationId: string } | undefined> {
    return this.stmts.allocationOf.get(serial) as { station: string; allocationId: string } | undefined;
  }

  async allocationCount(): Promise<number> {
    return this.stmts.allocationCount.get() as number;
  }

  async certificate(serial: string): Promise<PublishedCertificate | undefined> {
    const row = this.stmts.certificate.get(serial) as CertificateRow | undefined;
    return row && toCertificate(row);
  }

  async recentCertificates(limit: number): Promise<Array<{ serial: string; der: Uint8Array; fingerprint: string }>> {
    return this.db.prepare("SELECT serial, der, fingerprint FROM directory_certificates ORDER BY rowid DESC LIMIT ?").all(limit) as Array<{ serial: string; der: Uint8Array; fingerprint: string }>;
  }

  async addAllocation(a: AllocationRecord, at: string): Promise<{ added: boolean; count: number }> {
    return this.db
      .transaction(() => {
        const held = this.stmts.allocation.get(a.allocationId) as { station: string; digest: string; count: number } | undefined;
        if (held) {
          if (held.digest !== a.digest || held.station !== a.station) {
            throw new DirectoryError("ALLOCATION_CONFLICT", `the directory already holds a different allocation ${a.allocationId}: two lists with one id come from a broken or forged register`);
          }
          return { added: false, count: held.count };
        }
        this.stmts.addAllocation.run(a.allocationId, a.station, a.digest, a.serials.length, at);
        for (const serial of a.serials) {
          const owner = this.stmts.allocationOf.get(serial) as { station: string; allocationId: string } | undefined;
          if (owner) {
            // Throwing rolls the whole list back: an allocation is registered entirely or not at all.
            throw new DirectoryError(
              "ALLOCATION_CONFLICT",
              `serial ${serial} of ${a.allocationId} already belongs to ${owner.allocationId} (station ${owner.station}): the vendor allocated it twice; nothing was registered`,
            );
          }
          this.stmts.addSerial.run(serial, a.station, a.allocationId);
        }
        return { added: true, count: a.serials.length };
      })
      .immediate();
  }

  async commitUpload(c: UploadCommit): Promise<CommitOutcome> {
    try {
      return this.commit(c);
    } catch (e) {
      // Thrown inside the transaction, so everything it wrote was rolled back.
      if (e instanceof ConflictAbort) return { ok: false, reason: "CONFLICT", serial: e.serial };
      throw e;
    }
  }

  private commit(c: UploadCommit): CommitOutcome {
    return this.db
      .transaction((): CommitOutcome => {
        const step = checkpointStep(this.stmts.latest.get(c.station) as CheckpointRow | undefined, c);
        if (step === "STALE") return { ok: false, reason: "STALE" };
        const checkpointAdvanced = step === "advance";
        if (checkpointAdvanced) this.stmts.addCheckpoint.run(c.station, c.checkpoint.size, Buffer.from(c.checkpoint.root), c.checkpoint.note, c.checkpoint.stationCertificate, c.at);
        const published: string[] = [];
        const alreadyPublished: string[] = [];
        for (const cert of c.certificates) {
          const held = this.stmts.certificate.get(cert.serial) as CertificateRow | undefined;
          if (held) {
            if (held.fingerprint !== cert.fingerprint) throw new ConflictAbort(cert.serial);
            alreadyPublished.push(cert.serial);
            continue;
          }
          this.stmts.addCertificate.run(
            cert.serial,
            Buffer.from(cert.der),
            cert.fingerprint,
            cert.certificateSerial,
            cert.station,
            cert.ledgerIndex,
            Buffer.from(cert.entry),
            cert.checkpointSize,
            encodeProof(cert.inclusionProof),
            cert.issuedAt,
            cert.publishedAt,
          );
          published.push(cert.serial);
        }
        return { ok: true, checkpointAdvanced, published, alreadyPublished };
      })
      .immediate();
  }

  async recordConflicts(conflicts: readonly ConflictRecord[]): Promise<void> {
    this.db
      .transaction(() => {
        for (const c of conflicts) {
          this.stmts.addConflict.run(c.serial, Buffer.from(c.der), c.fingerprint, c.station, c.ledgerIndex, Buffer.from(c.entry), c.checkpointNote, encodeProof(c.inclusionProof), c.heldFingerprint, c.receivedAt);
        }
      })
      .immediate();
  }

  async conflicts(serial?: string): Promise<ConflictRecord[]> {
    const rows = (serial === undefined ? this.stmts.conflicts.all() : this.stmts.conflictsOf.all(serial)) as ConflictRow[];
    return rows.map(toConflict);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}

/** Thrown inside the commit transaction to roll it back when a serial turned out to be held by another certificate. */
class ConflictAbort extends Error {
  constructor(readonly serial: string) {
    super(`serial ${serial} is held by another certificate`);
  }
}

/** A store migrated by a newer idmint would be misread by this code: refused before anything is written. */
function refuseNewerSchema(db: Db): void {
  if (!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get()) return;
  const newest = (db.prepare("SELECT MAX(version) FROM schema_migrations WHERE module = 'directory'").pluck().get() as number | null) ?? 0;
  const known = Math.max(...MIGRATIONS.map((m) => m.version));
  if (newest > known) {
    db.close();
    throw new DirectoryError("SCHEMA_TOO_NEW", `the directory store ${db.name} has schema version ${newest}, newer than this idmint's ${known}: run the idmint that migrated it`);
  }
}

/** Opens (creating if needed) the directory's SQLite store at `path`. */
export function openDirectoryStore(path: string): SqliteDirectoryStore {
  return new SqliteDirectoryStore(openDb(path));
}
