import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { CoreError } from "./errors.js";

export type Db = Database.Database;

/** One schema step of one module; `version`s of a module run in order, each once. */
export interface Migration {
  version: number;
  sql: string;
}

export interface OpenDbOptions {
  busyTimeoutMs?: number;
  readonly?: boolean;
  /**
   * FULL (the default) for every record of idmint's own. NORMAL only for a store whose
   * loss in an OS crash or power cut is acceptable (the simulated units' flash): in WAL
   * mode it still survives a killed process, and a commit costs a seventh of FULL's.
   */
  synchronous?: "FULL" | "NORMAL";
}

/**
 * Opens a local store the way every idmint store must be opened: WAL, and by default
 * synchronous=FULL because better-sqlite3's bundled SQLite defaults WAL to NORMAL, which
 * can lose committed transactions on power loss (a provisioned unit must never be lost).
 */
export function openDb(path: string, options: OpenDbOptions = {}): Db {
  if (!options.readonly) mkdirSync(dirname(path), { recursive: true });
  let db: Db;
  try {
    db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  } catch (e) {
    throw new CoreError("state", "DB_OPEN", `cannot open the store ${path}: ${(e as Error).message}`, { cause: e });
  }
  db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 10_000}`);
  if (!options.readonly) db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${options.synchronous ?? "FULL"}`);
  db.pragma("foreign_keys = ON");
  return db;
}

/** Applies a module's pending migrations, each in its own IMMEDIATE transaction. */
export function migrate(db: Db, module: string, migrations: readonly Migration[]): void {
  db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (module TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (module, version))");
  const applied = db.prepare("SELECT 1 FROM schema_migrations WHERE module = ? AND version = ?");
  const record = db.prepare("INSERT INTO schema_migrations (module, version) VALUES (?, ?)");
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    db.transaction(() => {
      if (applied.get(module, m.version)) return;
      db.exec(m.sql);
      record.run(module, m.version);
    }).immediate();
  }
}
