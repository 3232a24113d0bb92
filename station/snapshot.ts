import { existsSync } from "node:fs";
import { openDb, systemClock, type Db, type Home } from "../core/index.js";
import { Ledger } from "../ledger/index.js";
import { SerialStore, type AllocationStatus } from "../serials/index.js";
import { UnitStore, type OutboxCounts } from "./store.js";

/** What the station's store says of the line, for the dashboard. */
export interface StationSnapshot {
  allocations: AllocationStatus[];
  uploads: OutboxCounts;
  ledgerSize: number;
  /** The newest upload the directory accepted: its checkpoint size, when, and where. */
  lastAccepted?: { at: string; directory: string; checkpointSize: number; certificates: number };
  /** Units whose last attempt failed and that hold no certificate: a person decides (retry or scrap). */
  failedUnits: number;
}

/**
 * The station's store opened read-only (SQLite refuses any write on this connection), for a
 * process that only shows the line: the dashboard. The stores' migrations are all applied
 * already (the line made them), so opening them writes nothing; a store an older idmint
 * made is refused by SQLite until `station run` has brought it up to date.
 */
export class StationReader {
  private readonly db: Db;
  private readonly ledger: Ledger;
  private readonly serials: SerialStore;
  private readonly units: UnitStore;

  private constructor(db: Db) {
    this.db = db;
    this.ledger = new Ledger(db, systemClock);
    this.serials = new SerialStore(db, this.ledger, systemClock);
    this.units = new UnitStore(db, systemClock);
  }

  /** The home's store, read-only; undefined while no line ever ran in this home. */
  static open(home: Home): StationReader | undefined {
    if (!existsSync(home.stationDbPath)) return undefined;
    const db = openDb(home.stationDbPath, { readonly: true });
    try {
      return new StationReader(db);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  snapshot(): StationSnapshot {
    // One read transaction: the counts agree with each other even while the line commits.
    return this.db.transaction((): StationSnapshot => {
      const uploads = this.units.outbox();
      const counts = this.units.counts();
      // Nothing ever sent: the unindexed search for the last upload would read the whole ledger for nothing.
      const entry = uploads.sent > 0 ? this.ledger.latestOfType("upload.sent") : undefined;
      const accepted = entry?.event.type === "upload.sent" ? entry.event : undefined;
      return {
        allocations: this.serials.status(),
        uploads,
        ledgerSize: this.ledger.size(),
        lastAccepted: accepted && { at: entry!.time, directory: accepted.directory, checkpointSize: accepted.checkpointSize, certificates: accepted.certificates },
        failedUnits: counts.failed,
      };
    })();
  }

  close(): void {
    this.db.close();
  }
}
