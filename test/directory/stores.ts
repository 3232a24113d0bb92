import { afterAll, describe, it } from "vitest";
import { join } from "node:path";
import pg from "pg";
import type { Home } from "../../core/index.js";
import { openStore, parseStoreLocation, type DirectoryStore } from "../../directory/index.js";
import { pgUnavailable, startPgCluster, type PgCluster } from "../postgres.js";
import { dumpSqlite } from "./fixture.js";

export type StoreKind = "sqlite" | "postgres";

/**
 * The stores one directory test file runs on: fresh SQLite files, or fresh databases on a
 * PostgreSQL cluster of the file's own, started on first use and stopped after the file.
 */
export function testStores(kind: StoreKind, dir: string) {
  let cluster: PgCluster | undefined;
  let n = 0;
  afterAll(() => cluster?.stop());
  return {
    kind,
    /** A new, empty store's location: sqlite:PATH or a postgres:// URL. */
    fresh(name: string): string {
      n++;
      if (kind === "sqlite") return `sqlite:${join(dir, `${name}-${n}.db`)}`;
      cluster ??= startPgCluster();
      return cluster.createDb(`${name.replace(/\W/g, "_")}_${n}`);
    },
    open: (location: string): Promise<DirectoryStore> => openStore(parseStoreLocation(location)),
    cluster: (): PgCluster | undefined => cluster,
  };
}

/** Makes the home's directory commands (and `directory serve`) use this store, as a vendor's idmint.json would. */
export function useStore(h: Home, location: string): void {
  h.writeConfig({ ...h.readConfig(), directory: { store: location } });
}

/** Every row of every directory table: what "nothing stored, nothing changed" is checked against. */
export async function dump(location: string): Promise<Record<string, unknown[]>> {
  const where = parseStoreLocation(location);
  if (where.kind === "sqlite") return dumpSqlite(where.path);
  const client = new pg.Client({ connectionString: where.url });
  await client.connect();
  try {
    const out: Record<string, unknown[]> = {};
    for (const [table, order] of [
      ["directory_allocations", "allocation_id"],
      ["directory_serials", "serial"],
      ["directory_checkpoints", "station, size"],
      ["directory_certificates", "seq"],
      ["directory_conflicts", "id"],
    ] as const) {
      out[table] = (await client.query(`SELECT * FROM ${table} ORDER BY ${order}`)).rows.map((row: Record<string, unknown>) =>
        Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString("hex") : v])),
      );
    }
    return out;
  } finally {
    await client.end();
  }
}

/** Runs a parameterised suite on a store kind, or says in one line why PostgreSQL's run is skipped. */
export function onStore(kind: StoreKind, suite: (kind: StoreKind) => void): void {
  const why = kind === "postgres" ? pgUnavailable() : undefined;
  if (why) {
    // The reporter shows skipped suites only by name: say why once on stderr too.
    console.warn(`idmint tests: ${why}`);
    describe.skip(why, () => it("needs PostgreSQL", () => undefined));
  }
  else suite(kind);
}
