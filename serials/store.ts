import { migrate, type Clock, type Db, type Migration } from "../core/index.js";
import { allocationDigest, expandSerials, validateAllocation, type Allocation } from "./allocation.js";
import { SerialsError } from "./errors.js";

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE allocations (
        id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        station TEXT NOT NULL,
        model TEXT NOT NULL,
        not_before TEXT NOT NULL,
        not_after TEXT NOT NULL,
        count INTEGER NOT NULL,
        digest TEXT NOT NULL,
        document TEXT NOT NULL,
        imported_at TEXT NOT NULL
      );
      CREATE TABLE serials (
        serial TEXT PRIMARY KEY,
        allocation_id TEXT NOT NULL REFERENCES allocations (id),
        state TEXT NOT NULL CHECK (state IN ('available', 'reserved', 'provisioned', 'scrapped')),
        owner TEXT,
        certificate_fingerprint TEXT,
        reason TEXT,
        updated_at TEXT NOT NULL
      );
      CREATE INDEX serials_by_state ON serials (allocation_id, state, serial);
    `,
  },
];

/** The events a serial's changes record; the station's ledger implements this. */
export type SerialEvent =
  | { type: "allocation.imported"; allocationId: string; order: string; station: string; count: number; digest: string }
  | { type: "serial.reserved"; serial: string; allocationId?: string }
  | { type: "serial.released"; serial: string; reason: string }
  | { type: "serial.scrapped"; serial: string; reason: string };

/** Where serial changes are recorded, inside the caller's transaction (the station's ledger). */
export interface AuditLog {
  append(event: SerialEvent): unknown;
}

export type SerialState = "available" | "reserved" | "provisioned" | "scrapped";

export interface AllocationStatus {
  allocationId: string;
  order: string;
  model: string;
  notAfter: string;
  allocated: number;
  available: number;
  reserved: number;
  provisioned: number;
  scrapped: number;
}

export interface SerialRow {
  serial: string;
  allocationId: string;
  state: SerialState;
  owner: string | null;
  certificateFingerprint: string | null;
  reason: string | null;
}

/**
 * The station's serials (in its SQLite store, beside the ledger). Every change of a serial's
 * state is one IMMEDIATE transaction together with its ledger entry, so two station
 * processes on one home can never take the same serial, and the ledger always says why a
 * serial is in the state it is.
 */
export class SerialStore {
  private readonly db: Db;
  private readonly ledger: AuditLog;
  private readonly clock: Clock;
  // Prepared once: a station reserves and marks a serial per unit, ~1,000 times a second.
  private readonly hot;
  // Made once, like `hot`: better-sqlite3 builds a new function on every db.transaction().
  private readonly reserveTx;
  private readonly releaseTx;

  constructor(db: Db, ledger: AuditLog, clock: Clock) {
    this.db = db;
    this.ledger = ledger;
    this.clock = clock;
    migrate(db, "serials", MIGRATIONS);
    this.hot = {
      get: db.prepare("SELECT serial, allocation_id AS allocationId, state, owner, certificate_fingerprint AS certificateFingerprint, reason FROM serials WHERE serial = ?"),
      window: db.prepare("SELECT not_before, not_after FROM allocations WHERE id = ?"),
      reserve: db.prepare("UPDATE serials SET state = 'reserved', owner = ?, updated_at = ? WHERE serial = ?"),
      provisioned: db.prepare("UPDATE serials SET state = 'provisioned', certificate_fingerprint = ?, updated_at = ? WHERE serial = ? AND state = 'reserved' AND owner = ?"),
      release: db.prepare("UPDATE serials SET state = 'available', owner = NULL, updated_at = ? WHERE serial = ? AND state = 'reserved' AND owner = ?"),
    };
    this.reserveTx = db.transaction((serial: string, owner: string): SerialRow => {
      const row = this.get(serial);
      if (row?.state === "reserved" && row.owner === owner) return row;
      if (row?.state !== "available") this.refuse(serial, row);
      this.assertWindow(row.allocationId, serial);
      this.hot.reserve.run(owner, this.clock.now().toISOString(), serial);
      this.ledger.append({ type: "serial.reserved", serial, allocationId: row.allocationId });
      return { ...row, state: "reserved" as const, owner };
    });
    this.releaseTx = db.transaction((serial: string, owner: string, reason: string) => {
      const r = this.hot.release.run(this.clock.now().toISOString(), serial, owner);
      if (r.changes === 1) this.ledger.append({ type: "serial.released", serial, reason });
    });
  }

  /**
   * Imports an allocation whose signature and chain the caller already verified. Refuses
   * another station's list, a list outside its validity window, a list overlapping what
   * the station holds, and a different list reusing an imported id; the same list again is
   * a no-op.
   */
  importAllocation(allocation: Allocation, document: string, stationId: string): { imported: boolean; count: number } {
    validateAllocation(allocation);
    const serials = expandSerials(allocation);
    if (allocation.station !== stationId) {
      throw new SerialsError("ALLOCATION_STATION", `allocation ${allocation.allocationId} is for station ${allocation.station}, not ${stationId}: import it on that station`);
    }
    const now = this.clock.now();
    if (now < new Date(allocation.notBefore) || now > new Date(allocation.notAfter)) {
      throw new SerialsError("ALLOCATION_WINDOW", `allocation ${allocation.allocationId} is valid from ${allocation.notBefore} to ${allocation.notAfter}, not now (${now.toISOString()}): ask the vendor for a current list`);
    }
    const digest = allocationDigest(allocation);
    return this.db
      .transaction(() => {
        const existing = this.db.prepare("SELECT digest FROM allocations WHERE id = ?").pluck().get(allocation.allocationId) as string | undefined;
        if (existing === digest) return { imported: false, count: serials.length };
        if (existing) {
          throw new SerialsError("ALLOCATION_CONFLICT", `a different allocation with id ${allocation.allocationId} was already imported: refuse this list and tell the vendor`);
        }
        const held = this.db.prepare("SELECT allocation_id FROM serials WHERE serial = ?").pluck();
        for (const s of serials) {
          const by = held.get(s) as string | undefined;
          if (by) throw new SerialsError("ALLOCATION_OVERLAP", `allocation ${allocation.allocationId} overlaps ${by} at serial ${s}: a serial may be allocated once; ask the vendor`);
        }
        const at = now.toISOString();
        this.db
          .prepare("INSERT INTO allocations (id, order_id, station, model, not_before, not_after, count, digest, document, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
          .run(allocation.allocationId, allocation.order, allocation.station, allocation.model, allocation.notBefore, allocation.notAfter, allocation.count, digest, document, at);
        const insert = this.db.prepare("INSERT INTO serials (serial, allocation_id, state, updated_at) VALUES (?, ?, 'available', ?)");
        for (const s of serials) insert.run(s, allocation.allocationId, at);
        this.ledger.append({ type: "allocation.imported", allocationId: allocation.allocationId, order: allocation.order, station: allocation.station, count: allocation.count, digest });
        return { imported: true, count: serials.length };
      })
      .immediate();
  }

  get(serial: string): SerialRow | undefined {
    return this.hot.get.get(serial) as SerialRow | undefined;
  }

  private refuse(serial: string, row: SerialRow | undefined): never {
    if (!row) throw new SerialsError("SERIAL_UNKNOWN", `serial ${serial} is in no imported allocation: this unit may not be given a vendor certificate`);
    if (row.state === "provisioned") throw new SerialsError("SERIAL_PROVISIONED", `serial ${serial} is already provisioned: a serial gets one certificate; this unit may be a clone`);
    if (row.state === "scrapped") throw new SerialsError("SERIAL_SCRAPPED", `serial ${serial} was scrapped (${row.reason ?? "no reason"}): a scrapped serial is never used again`);
    throw new SerialsError("SERIAL_RESERVED", `serial ${serial} is reserved by ${row.owner ?? "another process"}: it is being provisioned elsewhere`);
  }

  private assertWindow(allocationId: string, serial: string): void {
    const w = this.hot.window.get(allocationId) as { not_before: string; not_after: string };
    const now = this.clock.now();
    if (now < new Date(w.not_before) || now > new Date(w.not_after)) {
      throw new SerialsError("ALLOCATION_WINDOW", `serial ${serial}'s allocation ${allocationId} is not valid now (until ${w.not_after}): ask the vendor for a current list`);
    }
  }

  /**
   * Reserves a given serial for `owner` (a station run). The same owner may reserve its own
   * reservation again (a resumed unit); anything else that is not available is refused.
   */
  reserve(serial: string, owner: string): SerialRow {
    return this.reserveTx.immediate(serial, owner);
  }

  /** Reserves the lowest available serial of a valid allocation (of `allocationId`, if given). */
  reserveNext(owner: string, allocationId?: string): SerialRow {
    return this.db
      .transaction(() => {
        const now = this.clock.now().toISOString();
        const serial = this.db
          .prepare(
            `SELECT s.serial FROM serials s JOIN allocations a ON a.id = s.allocation_id
             WHERE s.state = 'available' AND a.not_before <= ? AND a.not_after >= ? AND (? IS NULL OR a.id = ?)
             ORDER BY a.imported_at, s.serial LIMIT 1`,
          )
          .pluck()
          .get(now, now, allocationId ?? null, allocationId ?? null) as string | undefined;
        if (!serial) {
          throw new SerialsError("ALLOCATION_EXHAUSTED", `${allocationId ? `allocation ${allocationId} has` : "the imported allocations have"} no serial left: import a new allocation from the vendor`);
        }
        return this.reserve(serial, owner);
      })
      .immediate();
  }

  /** The lowest `limit` available serials of currently valid allocations (what a simulated line is loaded with). */
  nextAvailable(limit: number): string[] {
    const now = this.clock.now().toISOString();
    return this.db
      .prepare(
        `SELECT s.serial FROM serials s JOIN allocations a ON a.id = s.allocation_id
         WHERE s.state = 'available' AND a.not_before <= ? AND a.not_after >= ?
         ORDER BY a.imported_at, s.serial LIMIT ?`,
      )
      .pluck()
      .all(now, now, limit) as string[];
  }

  /** The model an allocation holding `serial` is for. */
  modelOf(serial: string): string | undefined {
    return this.db.prepare("SELECT a.model FROM serials s JOIN allocations a ON a.id = s.allocation_id WHERE s.serial = ?").pluck().get(serial) as string | undefined;
  }

  /** A reserved serial whose unit got its certificate; call inside the transaction that stores the certificate. */
  markProvisioned(serial: string, owner: string, certificateFingerprint: string): void {
    const r = this.hot.provisioned.run(certificateFingerprint, this.clock.now().toISOString(), serial, owner);
    if (r.changes !== 1) throw new SerialsError("SERIAL_NOT_RESERVED", `serial ${serial} is not reserved by ${owner}`);
  }

  /** Gives a reserved serial back (its unit failed before any certificate was signed). */
  release(serial: string, owner: string, reason: string): void {
    this.releaseTx.immediate(serial, owner, reason);
  }

  /** Scraps a serial for good (a failed unit), with the reason in the ledger. */
  scrap(serial: string, reason: string): SerialRow {
    if (!reason.trim() || reason.length > 200) {
      throw new SerialsError("SCRAP_REASON", "--reason must say why the unit was scrapped, in 1 to 200 characters");
    }
    return this.db
      .transaction(() => {
        const row = this.get(serial);
        if (!row) this.refuse(serial, row);
        if (row.state === "scrapped") this.refuse(serial, row);
        this.db.prepare("UPDATE serials SET state = 'scrapped', owner = NULL, reason = ?, updated_at = ? WHERE serial = ?").run(reason, this.clock.now().toISOString(), serial);
        this.ledger.append({ type: "serial.scrapped", serial, reason });
        return { ...row, state: "scrapped" as const, reason };
      })
      .immediate();
  }

  status(): AllocationStatus[] {
    return this.db
      .prepare(
        `SELECT a.id AS allocationId, a.order_id AS "order", a.model, a.not_after AS notAfter, a.count AS allocated,
           SUM(s.state = 'available') AS available, SUM(s.state = 'reserved') AS reserved,
           SUM(s.state = 'provisioned') AS provisioned, SUM(s.state = 'scrapped') AS scrapped
         FROM allocations a JOIN serials s ON s.allocation_id = a.id GROUP BY a.id ORDER BY a.imported_at`,
      )
      .all() as AllocationStatus[];
  }

  /** Every serial of every allocation, for the usage report. */
  /** Every serial, streamed (a million-unit station's table does not fit comfortably in memory as rows). */
  eachSerial(): IterableIterator<SerialRow> {
    return this.db
      .prepare("SELECT serial, allocation_id AS allocationId, state, owner, certificate_fingerprint AS certificateFingerprint, reason FROM serials ORDER BY allocation_id, serial")
      .iterate() as IterableIterator<SerialRow>;
  }

  serials(): SerialRow[] {
    return this.db
      .prepare("SELECT serial, allocation_id AS allocationId, state, owner, certificate_fingerprint AS certificateFingerprint, reason FROM serials ORDER BY allocation_id, serial")
      .all() as SerialRow[];
  }

  allocationDocuments(): Array<{ allocationId: string; digest: string }> {
    return this.db.prepare("SELECT id AS allocationId, digest FROM allocations ORDER BY imported_at").all() as Array<{ allocationId: string; digest: string }>;
  }
}
