import { migrate, type Clock, type Db, type Migration } from "../core/index.js";
import { StationError } from "./errors.js";

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE units (
        serial TEXT PRIMARY KEY,
        stage TEXT NOT NULL CHECK (stage IN ('reserved', 'keyed', 'intent', 'issued', 'delivered', 'failed')),
        key_fingerprint TEXT,
        certificate_serial TEXT,
        certificate TEXT,
        certificate_fingerprint TEXT,
        failure_code TEXT,
        failure_message TEXT,
        updated_at TEXT NOT NULL
      );
      -- Invariant 4: every public key a unit ever presented, so no key is certified twice.
      CREATE TABLE seen_keys (
        key_fingerprint TEXT PRIMARY KEY,
        serial TEXT NOT NULL,
        seen_at TEXT NOT NULL
      );
      -- Certificates waiting for the directory server.
      CREATE TABLE outbox (
        serial TEXT PRIMARY KEY,
        certificate TEXT NOT NULL,
        queued_at TEXT NOT NULL,
        sent_at TEXT
      );
    `,
  },
  {
    // A certificate the directory refused for good (e.g. a conflict) is kept out of later batches.
    version: 2,
    sql: "ALTER TABLE outbox ADD COLUMN refused TEXT;",
  },
  {
    // A unit failing again the way it last failed is counted here rather than logged in full again.
    version: 3,
    sql: "ALTER TABLE units ADD COLUMN failure_repeats INTEGER NOT NULL DEFAULT 0;",
  },
  {
    // Why, as the directory's code, and how many allocation lists it held then: a certificate
    // refused as unallocated goes back in the queue once that number changed.
    version: 4,
    sql: `
      ALTER TABLE outbox ADD COLUMN refused_code TEXT;
      ALTER TABLE outbox ADD COLUMN refused_allocations INTEGER;
      UPDATE outbox SET refused_code = substr(refused, 1, instr(refused, ':') - 1) WHERE refused IS NOT NULL;
    `,
  },
];

export interface OutboxCounts {
  pending: number;
  sent: number;
  refused: number;
}

/**
 * "keyed" is only found in stores of idmint 0.1 runs, which recorded the key and the intent
 * apart; "reserved" only in stores of earlier runs, which reserved a serial in a commit of
 * its own while the unit made its key.
 */
export type UnitStage = "reserved" | "keyed" | "intent" | "issued" | "delivered" | "failed";

export interface UnitRow {
  serial: string;
  stage: UnitStage;
  keyFingerprint: string | null;
  certificateSerial: string | null;
  certificate: string | null;
  certificateFingerprint: string | null;
  failureCode: string | null;
  failureMessage: string | null;
  /** Times the unit failed again with failureCode since that failure was logged in full. */
  failureRepeats: number;
}

/** Where each unit on the line is, so that a restarted station resumes every unit exactly. */
export class UnitStore {
  private readonly db: Db;
  private readonly clock: Clock;
  private readonly stmts;
  // Made once: better-sqlite3 builds a new function on every db.transaction().
  private readonly recordIntentTx;

  constructor(db: Db, clock: Clock) {
    this.db = db;
    this.clock = clock;
    migrate(db, "station", MIGRATIONS);
    this.stmts = {
      get: db.prepare(
        `SELECT serial, stage, key_fingerprint AS keyFingerprint, certificate_serial AS certificateSerial, certificate,
           certificate_fingerprint AS certificateFingerprint, failure_code AS failureCode, failure_message AS failureMessage,
           failure_repeats AS failureRepeats
         FROM units WHERE serial = ?`,
      ),
      // A unit seen before (failed, or half-way when a run was killed) starts over; one holding a certificate never does.
      intent: db.prepare(
        `INSERT INTO units (serial, stage, key_fingerprint, certificate_serial, updated_at) VALUES (?, 'intent', ?, ?, ?)
         ON CONFLICT (serial) DO UPDATE SET stage = 'intent', key_fingerprint = excluded.key_fingerprint,
           certificate_serial = excluded.certificate_serial, failure_code = NULL, failure_message = NULL, failure_repeats = 0, updated_at = excluded.updated_at
         WHERE stage NOT IN ('issued', 'delivered')`,
      ),
      seenKey: db.prepare("SELECT serial FROM seen_keys WHERE key_fingerprint = ?").pluck(),
      addKey: db.prepare("INSERT INTO seen_keys (key_fingerprint, serial, seen_at) VALUES (?, ?, ?)"),
      issued: db.prepare("UPDATE units SET stage = 'issued', certificate = ?, certificate_fingerprint = ?, updated_at = ? WHERE serial = ?"),
      // A delivered unit's earlier failures are history (the ledger has them): a later one is logged in full.
      delivered: db.prepare("UPDATE units SET stage = 'delivered', failure_code = NULL, failure_message = NULL, failure_repeats = 0, updated_at = ? WHERE serial = ?"),
      // A unit may fail before its intent made it a row: it gets one.
      failed: db.prepare(
        `INSERT INTO units (serial, stage, failure_code, failure_message, updated_at) VALUES (?, 'failed', ?, ?, ?)
         ON CONFLICT (serial) DO UPDATE SET stage = 'failed', failure_code = excluded.failure_code,
           failure_message = excluded.failure_message, failure_repeats = 0, updated_at = excluded.updated_at
         WHERE stage NOT IN ('issued', 'delivered')`,
      ),
      failedIssued: db.prepare("UPDATE units SET failure_code = ?, failure_message = ?, failure_repeats = 0, updated_at = ? WHERE serial = ?"),
      failedAgain: db.prepare("UPDATE units SET failure_repeats = failure_repeats + 1, updated_at = ? WHERE serial = ? AND failure_code = ?"),
      enqueue: db.prepare("INSERT OR IGNORE INTO outbox (serial, certificate, queued_at) VALUES (?, ?, ?)"),
      unconfirmed: db.prepare("SELECT serial FROM units WHERE stage = 'issued' ORDER BY serial").pluck(),
      inFlight: db.prepare("SELECT serial FROM units WHERE stage IN ('reserved', 'keyed', 'intent', 'issued') ORDER BY serial").pluck(),
      counts: db.prepare("SELECT stage, COUNT(*) AS n FROM units GROUP BY stage"),
      pending: db.prepare("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND refused IS NULL").pluck(),
      outboxCounts: db.prepare(
        "SELECT SUM(sent_at IS NULL AND refused IS NULL) AS pending, SUM(sent_at IS NOT NULL) AS sent, SUM(refused IS NOT NULL) AS refused FROM outbox",
      ),
      nextBatch: db.prepare("SELECT serial, certificate FROM outbox WHERE sent_at IS NULL AND refused IS NULL ORDER BY queued_at, serial LIMIT ?"),
      sent: db.prepare("UPDATE outbox SET sent_at = ? WHERE serial = ? AND sent_at IS NULL"),
      refuse: db.prepare("UPDATE outbox SET refused = ?, refused_code = ?, refused_allocations = ? WHERE serial = ? AND sent_at IS NULL"),
      refusedBy: db.prepare("SELECT refused_code AS code, COUNT(*) AS n FROM outbox WHERE refused IS NOT NULL GROUP BY refused_code ORDER BY refused_code"),
      requeue: db.prepare("UPDATE outbox SET refused = NULL, refused_code = NULL, refused_allocations = NULL WHERE refused_code = ?"),
      requeueIfMore: db.prepare(
        "UPDATE outbox SET refused = NULL, refused_code = NULL, refused_allocations = NULL WHERE refused_code = ? AND (refused_allocations IS NULL OR refused_allocations < ?)",
      ),
    };
    this.recordIntentTx = db.transaction((serial: string, keyFingerprint: string, certificateSerial: string): string | undefined => {
      const had = this.stmts.seenKey.get(keyFingerprint) as string | undefined;
      if (had !== undefined && had !== serial) return had;
      if (had === undefined) this.stmts.addKey.run(keyFingerprint, serial, this.now());
      if (this.stmts.intent.run(serial, keyFingerprint, certificateSerial, this.now()).changes !== 1) {
        throw new StationError("UNIT_CERTIFIED", `unit ${serial} already has a certificate on record: it is delivered again, never signed anew`);
      }
      return undefined;
    });
  }

  get(serial: string): UnitRow | undefined {
    return this.stmts.get.get(serial) as UnitRow | undefined;
  }

  private now(): string {
    return this.clock.now().toISOString();
  }

  /**
   * Records the unit's new public key and the certificate serial the CA is about to sign
   * for it (the unit's row, made or started over); refuses a key any unit presented before
   * (a weak RNG or a cloned key), certified or not, and then records nothing. Returns the
   * serial that had the key, if another had it.
   */
  recordIntent(serial: string, keyFingerprint: string, certificateSerial: string): string | undefined {
    return this.recordIntentTx(serial, keyFingerprint, certificateSerial);
  }

  issued(serial: string, certificatePem: string, fingerprint: string): void {
    this.stmts.issued.run(certificatePem, fingerprint, this.now(), serial);
  }

  /** The unit holds its certificate; `queue` it for the directory (every unit but a lab unit). */
  delivered(serial: string, certificatePem: string, queue: boolean): void {
    this.stmts.delivered.run(this.now(), serial);
    if (queue) this.stmts.enqueue.run(serial, certificatePem, this.now());
  }

  /**
   * A unit that did not make it; an issued unit keeps its certificate (a retry delivers it).
   * A unit failing again with the code it last failed with only has the repeat counted, and
   * the caller logs nothing more: a fixture offering one bad unit for ever must not grow the
   * store. Returns whether it was such a repeat.
   */
  failed(serial: string, code: string, message: string): boolean {
    if (this.stmts.failedAgain.run(this.now(), serial, code).changes === 1) return true;
    const r = this.stmts.failed.run(serial, code, message, this.now());
    if (r.changes === 0) this.stmts.failedIssued.run(code, message, this.now(), serial);
    return false;
  }

  /** Serials whose certificate is issued (the ledger says so) but their unit never acknowledged it (a CMP unit that sent no certConf). */
  unconfirmed(): string[] {
    return this.stmts.unconfirmed.all() as string[];
  }

  /** Serials a killed run left half-way, lowest first: a new run resumes these first. */
  inFlight(): string[] {
    return this.stmts.inFlight.all() as string[];
  }

  counts(): Record<UnitStage, number> {
    const out: Record<UnitStage, number> = { reserved: 0, keyed: 0, intent: 0, issued: 0, delivered: 0, failed: 0 };
    for (const r of this.stmts.counts.all() as Array<{ stage: UnitStage; n: number }>) out[r.stage] = r.n;
    return out;
  }

  pendingUploads(): number {
    return this.stmts.pending.get() as number;
  }

  outbox(): OutboxCounts {
    const r = this.stmts.outboxCounts.get() as { pending: number | null; sent: number | null; refused: number | null };
    return { pending: r.pending ?? 0, sent: r.sent ?? 0, refused: r.refused ?? 0 };
  }

  /** The oldest certificates still waiting for the directory. */
  nextUploads(limit: number): Array<{ serial: string; certificate: string }> {
    return this.stmts.nextBatch.all(limit) as Array<{ serial: string; certificate: string }>;
  }

  markSent(serials: readonly string[]): void {
    const at = this.now();
    for (const s of serials) this.stmts.sent.run(at, s);
  }

  /** Kept out of later batches; `allocations` is how many allocation lists the directory held when it refused. */
  markRefused(serial: string, code: string, message: string, allocations: number): void {
    this.stmts.refuse.run(`${code}: ${message}`, code, allocations, serial);
  }

  /** Refused certificates by the directory's reason. */
  refusedByReason(): Record<string, number> {
    return Object.fromEntries((this.stmts.refusedBy.all() as Array<{ code: string; n: number }>).map((r) => [r.code, r.n]));
  }

  /**
   * Puts the certificates refused for `code` back in the queue, all of them or, given the
   * directory's allocation count now, those refused when it held fewer; returns how many.
   */
  requeueRefused(code: string, allocationsNow?: number): number {
    return (allocationsNow === undefined ? this.stmts.requeue.run(code) : this.stmts.requeueIfMore.run(code, allocationsNow)).changes;
  }
}
