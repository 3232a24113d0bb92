import { migrate, openDb, type Db, type Migration } from "../core/index.js";
import { DirectoryError } from "./errors.js";
import { checkpointStep, encodeProof, toCertificate, toCheckpoint, toConflict, type CertificateRow, type CheckpointRow, type ConflictRow } from "./rows.js";
import type { AllocationRecord, AcceptedCheckpoint, CommitOutcome, ConflictRecord, DirectoryStore, PublishedCertificate, UploadCommit } from "./records.js";

// The records and the interface live in records.ts; everything imported them from here first.
export type { AcceptedCheckpoint, PublishedCertificate, ConflictRecord, AllocationRecord, UploadCommit, CommitOutcome, DirectoryStore } from "./records.js";

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
      published: db.prepare("SELECT der, fingerprint FROM directory_certificates WHERE serial = ?"),
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

  async published(serial: string): Promise<{ der: Uint8Array; fingerprint: string } | undefined> {
    return this.stmts.published.get(serial) as { der: Buffer; fingerprint: string } | undefined;
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
