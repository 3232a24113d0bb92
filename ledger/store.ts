import { migrate, type Clock, type Db, type Migration } from "../core/index.js";
import type { Signer } from "../hsm/index.js";
import { signCheckpoint } from "./checkpoint.js";
import { encodeEntry, decodeEntry, type LedgerEntry, type LedgerEvent } from "./entry.js";
import { LedgerError } from "./errors.js";
import { MerkleFrontier } from "./frontier.js";
import { hashLeaf, inclusionProof, type Hash } from "./merkle.js";

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE ledger_entries (
        idx INTEGER PRIMARY KEY,
        body BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        type TEXT NOT NULL,
        serial TEXT
      );
      CREATE INDEX ledger_entries_serial ON ledger_entries (serial, type) WHERE serial IS NOT NULL;
      CREATE TABLE ledger_checkpoints (
        id INTEGER PRIMARY KEY,
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        note TEXT NOT NULL,
        frontier TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
    `,
  },
];

// Rows read per query when streaming the ledger.
const PAGE = 4096;

export interface StoredCheckpoint {
  id: number;
  size: number;
  root: Hash;
  note: string;
  createdAt: string;
}

export interface AppendedEntry extends LedgerEntry {
  leafHash: Hash;
}

interface CheckpointRow {
  id: number;
  size: number;
  root: Buffer;
  note: string;
  frontier: string;
  created_at: string;
}

/**
 * The station's append-only log in its SQLite store. An append is one row in one
 * transaction (or a savepoint inside the caller's transaction), so it is either fully
 * there or absent after a crash; its index comes from the table inside that transaction,
 * so two processes on one store never take the same index.
 */
export class Ledger {
  private readonly db: Db;
  private readonly clock: Clock;
  private readonly stmts;
  // Made once: better-sqlite3 builds a new function (and its properties) on every db.transaction().
  private readonly appendTx;
  private readonly appendManyTx;

  constructor(db: Db, clock: Clock) {
    this.db = db;
    this.clock = clock;
    migrate(db, "ledger", MIGRATIONS);
    this.appendTx = db.transaction((event: LedgerEvent) => this.appendOne(event));
    this.appendManyTx = db.transaction((events: readonly LedgerEvent[]) => events.map((e) => this.appendOne(e)));
    this.stmts = {
      next: db.prepare("SELECT COALESCE(MAX(idx) + 1, 0) AS next FROM ledger_entries").pluck(),
      insert: db.prepare("INSERT INTO ledger_entries (idx, body, leaf_hash, type, serial) VALUES (?, ?, ?, ?, ?)"),
      body: db.prepare("SELECT body FROM ledger_entries WHERE idx = ?").pluck(),
      bodyRange: db.prepare("SELECT body FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx").pluck(),
      leafRange: db.prepare("SELECT leaf_hash FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx").pluck(),
      latest: db.prepare("SELECT * FROM ledger_checkpoints ORDER BY id DESC LIMIT 1"),
      all: db.prepare("SELECT * FROM ledger_checkpoints ORDER BY id"),
      addCheckpoint: db.prepare("INSERT INTO ledger_checkpoints (size, root, note, frontier, created_at) VALUES (?, ?, ?, ?, ?)"),
      bySerial: db.prepare("SELECT idx FROM ledger_entries WHERE serial = ? AND type = ? ORDER BY idx DESC LIMIT 1").pluck(),
      latestOfType: db.prepare("SELECT body FROM ledger_entries WHERE type = ? ORDER BY idx DESC LIMIT 1").pluck(),
    };
  }

  private appendOne(event: LedgerEvent): AppendedEntry {
    const index = this.stmts.next.get() as number;
    const entry: LedgerEntry = { index, time: this.clock.now().toISOString(), event };
    const body = encodeEntry(entry);
    const leafHash = hashLeaf(body);
    const serial = "serial" in event && event.serial !== undefined ? event.serial : null;
    this.stmts.insert.run(index, body, leafHash, event.type, serial);
    return { ...entry, leafHash };
  }

  /** Appends one entry: in the caller's transaction if there is one (one INSERT: all or nothing), else in its own. */
  append(event: LedgerEvent): AppendedEntry {
    return this.db.inTransaction ? this.appendOne(event) : this.appendTx.immediate(event);
  }

  appendMany(events: readonly LedgerEvent[]): AppendedEntry[] {
    return this.appendManyTx.immediate(events);
  }

  size(): number {
    return this.stmts.next.get() as number;
  }

  entryBytes(index: number): Buffer {
    const body = this.stmts.body.get(index) as Buffer | undefined;
    if (!body) throw new LedgerError("NO_SUCH_ENTRY", `the ledger has no entry ${index}`);
    return body;
  }

  entry(index: number): LedgerEntry {
    return decodeEntry(this.entryBytes(index));
  }

  /** The newest entry of a type about a serial (e.g. its certificate.issued entry). */
  findBySerial(serial: string, type: LedgerEvent["type"]): number | undefined {
    return this.stmts.bySerial.get(serial, type) as number | undefined;
  }

  /** The newest entry of a type; unindexed, it reads back from the end until one matches. */
  latestOfType(type: LedgerEvent["type"]): LedgerEntry | undefined {
    const body = this.stmts.latestOfType.get(type) as Buffer | undefined;
    return body && decodeEntry(body);
  }

  /** The canonical bytes of entries [from, to), streamed in index order, a page of rows at a time (faster than row by row). */
  *bodies(from: number, to: number): Generator<Buffer> {
    for (let at = from; at < to; at += PAGE) yield* this.stmts.bodyRange.all(at, Math.min(to, at + PAGE)) as Buffer[];
  }

  leafHashes(from: number, to: number): Hash[] {
    return (this.stmts.leafRange.all(from, to) as Buffer[]).map((b) => new Uint8Array(b));
  }

  latestCheckpoint(): StoredCheckpoint | undefined {
    const row = this.stmts.latest.get() as CheckpointRow | undefined;
    return row && toStored(row);
  }

  checkpoints(): StoredCheckpoint[] {
    return (this.stmts.all.all() as CheckpointRow[]).map(toStored);
  }

  /**
   * Signs a checkpoint over everything appended so far with the station key. The root is
   * extended from the previous checkpoint's frontier, so the cost is the new entries only.
   */
  async checkpoint(signer: Signer, origin: string): Promise<StoredCheckpoint> {
    const last = this.stmts.latest.get() as CheckpointRow | undefined;
    const size = this.size();
    if (last && last.size === size) return toStored(last);
    const frontier = last ? MerkleFrontier.fromJSON(JSON.parse(last.frontier)) : new MerkleFrontier();
    // A page of leaf hashes at a time: a first checkpoint over millions of entries must not hold them all.
    for (let at = frontier.size; at < size; at += PAGE) for (const h of this.stmts.leafRange.all(at, Math.min(size, at + PAGE)) as Buffer[]) frontier.append(h);
    if (frontier.size !== size) {
      throw new LedgerError("ENTRY_MISSING", `the ledger has ${frontier.size} entries below index ${size}: run \`idmint ledger verify\``);
    }
    const root = frontier.root();
    const note = await signCheckpoint({ origin, size, root }, signer);
    return this.db
      .transaction(() => {
        const newest = this.stmts.latest.get() as CheckpointRow | undefined;
        // Another process may have checkpointed a longer log meanwhile: never go back.
        if (newest && newest.size >= size) return toStored(newest);
        const createdAt = this.clock.now().toISOString();
        const info = this.stmts.addCheckpoint.run(size, Buffer.from(root), note, JSON.stringify(frontier.toJSON()), createdAt);
        return { id: Number(info.lastInsertRowid), size, root, note, createdAt };
      })
      .immediate();
  }

  /** RFC 9162 §2.1.3 inclusion proof of one entry in the tree of the given size. */
  inclusionProof(index: number, size: number): Hash[] {
    return inclusionProof(this.leafHashes(0, size), index, size);
  }
}

function toStored(row: CheckpointRow): StoredCheckpoint {
  return { id: row.id, size: row.size, root: new Uint8Array(row.root), note: row.note, createdAt: row.created_at };
}
