import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import type { ClientBase } from "pg";
import { openDb, type Db } from "../core/index.js";
import { DirectoryError } from "./errors.js";
import { redactUrl } from "./pg-migrate.js";
import { openPgStore, storeError } from "./pg-store.js";
import { openDirectoryStore } from "./store.js";

/** Each table in dependency order, its columns with their PostgreSQL types, and the SQLite order that keeps publication order. */
const TABLES = [
  { name: "directory_allocations", order: "rowid", columns: { allocation_id: "text", station: "text", digest: "text", count: "bigint", added_at: "text" } },
  { name: "directory_serials", order: "rowid", columns: { serial: "text", station: "text", allocation_id: "text" } },
  { name: "directory_checkpoints", order: "rowid", columns: { station: "text", size: "bigint", root: "bytea", note: "text", station_certificate: "text", accepted_at: "text" } },
  {
    name: "directory_certificates",
    order: "rowid",
    columns: {
      serial: "text",
      der: "bytea",
      fingerprint: "text",
      certificate_serial: "text",
      station: "text",
      ledger_index: "bigint",
      entry: "bytea",
      checkpoint_size: "bigint",
      inclusion_proof: "text",
      issued_at: "text",
      published_at: "text",
    },
  },
  {
    name: "directory_conflicts",
    order: "id",
    columns: {
      serial: "text",
      der: "bytea",
      fingerprint: "text",
      station: "text",
      ledger_index: "bigint",
      entry: "bytea",
      checkpoint_note: "text",
      inclusion_proof: "text",
      held_fingerprint: "text",
      received_at: "text",
    },
  },
] as const;

type TableName = (typeof TABLES)[number]["name"];

/** Rows per INSERT: large enough to amortise the round trip, small enough for one message. */
const BATCH = 2000;

export interface MigrationReport {
  from: string;
  to: string;
  /** Rows copied per table; each equals the source's count. */
  rows: Record<TableName, number>;
  /** Stations whose checkpoint chain (sizes and roots, in order) was compared. */
  stations: number;
}

/** What the verification compares on each side: per-table counts, each station's chain, and a digest of the published certificates. */
interface Summary {
  rows: Record<string, number>;
  chains: string;
  certificates: string;
}

function digestRows(rows: Iterable<Record<string, unknown>>): string {
  const h = createHash("sha256");
  for (const r of rows) h.update(JSON.stringify(Object.values(r).map((v) => (Buffer.isBuffer(v) ? v.toString("hex") : String(v)))) + "\n");
  return h.digest("hex");
}

function sqliteSummary(db: Db): Summary {
  return {
    rows: Object.fromEntries(TABLES.map((t) => [t.name, db.prepare(`SELECT COUNT(*) FROM ${t.name}`).pluck().get() as number])),
    chains: digestRows(db.prepare("SELECT station, size, root FROM directory_checkpoints ORDER BY station, size").iterate() as Iterable<Record<string, unknown>>),
    certificates: digestRows(db.prepare("SELECT serial, fingerprint, station, checkpoint_size FROM directory_certificates ORDER BY serial").iterate() as Iterable<Record<string, unknown>>),
  };
}

async function pgSummary(client: ClientBase): Promise<Summary> {
  const rows: Record<string, number> = {};
  for (const t of TABLES) rows[t.name] = Number((await client.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${t.name}`)).rows[0]!.n);
  // COLLATE "C": the same byte order as SQLite's.
  const chains = (await client.query("SELECT station, size, root FROM directory_checkpoints ORDER BY station COLLATE \"C\", size")).rows;
  const certificates = (await client.query('SELECT serial, fingerprint, station, checkpoint_size FROM directory_certificates ORDER BY serial COLLATE "C"')).rows;
  return { rows, chains: digestRows(chains), certificates: digestRows(certificates) };
}

async function copyTable(db: Db, client: ClientBase, table: (typeof TABLES)[number], onRows: (n: number) => void): Promise<void> {
  const names = Object.keys(table.columns);
  const types = Object.values(table.columns);
  const insert = `INSERT INTO ${table.name} (${names.join(", ")}) SELECT * FROM unnest(${types.map((t, i) => `$${i + 1}::${t}[]`).join(", ")})`;
  let batch: unknown[][] = names.map(() => []);
  let n = 0;
  const flush = async () => {
    if (n === 0) return;
    await client.query(insert, batch);
    onRows(n);
    batch = names.map(() => []);
    n = 0;
  };
  for (const row of db.prepare(`SELECT ${names.join(", ")} FROM ${table.name} ORDER BY ${table.order}`).raw().iterate() as Iterable<unknown[]>) {
    row.forEach((v, i) => batch[i]!.push(v));
    if (++n === BATCH) await flush();
  }
  await flush();
}

/**
 * `directory migrate`: copies an SQLite directory into an empty PostgreSQL one in one
 * transaction (all or nothing), then compares both sides, counts, every station's checkpoint
 * chain and every published certificate's fingerprint, before it commits.
 */
export async function migrateSqliteToPg(sqlitePath: string, pgUrl: string, onProgress?: (table: TableName, rows: number) => void): Promise<MigrationReport> {
  if (!existsSync(sqlitePath)) throw new DirectoryError("MIGRATION_FAILED", `no directory store at ${sqlitePath}: give the SQLite file \`directory serve\` used`);
  // Opened once through the store, so an older SQLite schema is brought up to date first.
  await openDirectoryStore(sqlitePath).close();
  await (await openPgStore(pgUrl)).close();
  const db = openDb(sqlitePath, { readonly: true });
  try {
    const { default: pg } = await import("pg");
    const client = new pg.Client({ connectionString: pgUrl });
    await client.connect().catch((e: unknown) => {
      throw storeError(e);
    });
    try {
      let source: Summary;
      await client.query("BEGIN");
      try {
        const held = await pgSummary(client);
        const busy = Object.entries(held.rows).find(([, n]) => n > 0);
        if (busy) throw new DirectoryError("MIGRATION_FAILED", `${redactUrl(pgUrl)} already holds a directory (${busy[1]} rows in ${busy[0]}): migrate into an empty database`);
        source = sqliteSummary(db);
        for (const t of TABLES) {
          let done = 0;
          await copyTable(db, client, t, (n) => onProgress?.(t.name, (done += n)));
        }
        const copied = await pgSummary(client);
        for (const t of TABLES) {
          if (copied.rows[t.name] !== source.rows[t.name]) throw new DirectoryError("MIGRATION_FAILED", `${t.name}: ${copied.rows[t.name]} rows copied of ${source.rows[t.name]}; nothing was committed`);
        }
        if (copied.chains !== source.chains) throw new DirectoryError("MIGRATION_FAILED", "the stations' checkpoint chains differ after the copy; nothing was committed");
        if (copied.certificates !== source.certificates) throw new DirectoryError("MIGRATION_FAILED", "the published certificates differ after the copy; nothing was committed");
        await client.query("COMMIT");
      } catch (e) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw e;
      }
      // A bulk load leaves the planner without statistics and every row's hint bits unset
      // (the first reads would write every page): settled here, not by the first clients.
      for (const t of TABLES) await client.query(`VACUUM (ANALYZE) ${t.name}`);
      const stations = Number((await client.query<{ n: string }>("SELECT COUNT(DISTINCT station) AS n FROM directory_checkpoints")).rows[0]!.n);
      return { from: sqlitePath, to: redactUrl(pgUrl), rows: source.rows as Record<TableName, number>, stations };
    } finally {
      await client.end();
    }
  } finally {
    db.close();
  }
}
