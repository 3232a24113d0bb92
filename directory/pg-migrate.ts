import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Pool } from "pg";
import { DirectoryError } from "./errors.js";
import { withPgClient } from "./pg-client.js";

/** Where a PostgreSQL URL points, without its password (for messages and logs). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "postgres://…";
  }
}

/** The SQL files: beside this module in the sources, two levels up from dist/directory/. */
function migrationsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, "migrations", "postgres"), join(here, "..", "..", "directory", "migrations", "postgres")];
  return candidates.find((d) => existsSync(d)) ?? candidates[0]!;
}

/** `NNN-name.sql`, in version order. */
export function pgMigrations(): Array<{ version: number; name: string; sql: string }> {
  const dir = migrationsDir();
  return readdirSync(dir)
    .map((name) => ({ name, m: /^(\d+)-[a-z0-9-]+\.sql$/.exec(name) }))
    .filter((f) => f.m)
    .map((f) => ({ version: Number(f.m![1]), name: f.name, sql: readFileSync(join(dir, f.name), "utf8") }))
    .sort((a, b) => a.version - b.version);
}

/**
 * Applies the migrations the database lacks, each in its own transaction, under one advisory
 * lock so that replicas starting together apply each once. A database migrated by a newer
 * idmint is refused before anything is written: this code would misread its tables.
 */
export async function applyPgMigrations(pool: Pool, url: string): Promise<void> {
  const migrations = pgMigrations();
  const known = migrations.at(-1)?.version ?? 0;
  await withPgClient(pool, async (client) => {
    await client.query("SELECT pg_advisory_lock(hashtextextended('directory.schema', 0))");
    try {
      await client.query("CREATE TABLE IF NOT EXISTS directory_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
      const applied = new Set((await client.query<{ version: number }>("SELECT version FROM directory_schema")).rows.map((r) => r.version));
      const newest = Math.max(0, ...applied);
      if (newest > known) {
        throw new DirectoryError("SCHEMA_TOO_NEW", `the directory database ${redactUrl(url)} has schema version ${newest}, newer than this idmint's ${known}: run the idmint that migrated it`);
      }
      for (const m of migrations) {
        if (applied.has(m.version)) continue;
        await client.query("BEGIN");
        try {
          await client.query(m.sql);
          await client.query("INSERT INTO directory_schema (version, name) VALUES ($1, $2)", [m.version, m.name]);
          await client.query("COMMIT");
        } catch (e) {
          await client.query("ROLLBACK");
          throw e;
        }
      }
    } finally {
      await client.query("SELECT pg_advisory_unlock(hashtextextended('directory.schema', 0))");
    }
  });
}

/** The schema version this idmint's migrations reach. */
export function pgSchemaVersion(): number {
  return pgMigrations().at(-1)?.version ?? 0;
}
