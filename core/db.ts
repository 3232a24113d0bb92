import Database from "better-sqlite3";
import { closeSync, existsSync, linkSync, mkdirSync, openSync, rmSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { damagedStore, guardStore } from "./db-guard.js";
import { CoreError } from "./errors.js";
import { temporarySibling } from "./files.js";

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
  /** The file mode of a store this call makes (SQLite gives its -wal and -shm files the same). */
  mode?: number;
}

const SCHEMA_MIGRATIONS = "CREATE TABLE IF NOT EXISTS schema_migrations (module TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (module, version))";

/**
 * Opens a local store the way every idmint store must be opened: WAL, and by default
 * synchronous=FULL because better-sqlite3's bundled SQLite defaults WAL to NORMAL, which
 * can lose committed transactions on power loss (a provisioned unit must never be lost).
 * A missing file is made; one that exists must be an idmint store SQLite can read (else
 * DB_DAMAGED, before anything is written to it): an emptied or damaged store is never
 * taken for a new one. Damage found later, by any statement, is DB_DAMAGED too.
 */
export function openDb(path: string, options: OpenDbOptions = {}): Db {
  if (existsSync(path)) {
    if (statSync(path).size === 0) throw damagedStore(path, "is empty (0 bytes)");
  } else if (!options.readonly) {
    createStore(path, options.mode ?? 0o644);
  }
  let raw: Db;
  try {
    raw = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  } catch (e) {
    throw new CoreError("DB_OPEN", `cannot open the store ${path}: ${(e as Error).message}`, { cause: e });
  }
  const db = guardStore(raw, path);
  try {
    // Read before the pragmas below write anything: a file SQLite cannot read fails here.
    if (!db.prepare("SELECT 1 FROM sqlite_schema WHERE name = 'schema_migrations'").get()) throw damagedStore(path, "holds no idmint store");
    db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 10_000}`);
    if (!options.readonly) db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${options.synchronous ?? "FULL"}`);
    db.pragma("foreign_keys = ON");
  } catch (e) {
    raw.close();
    throw e;
  }
  return db;
}

/**
 * Makes a new store whole or not at all: in WAL mode and with its migrations table, under a
 * temporary name, then linked into place. A process killed meanwhile leaves no empty file
 * at `path` (which openDb would refuse), and of two processes making it at once, the
 * second opens the first's, never replaces it.
 */
function createStore(path: string, mode: number): void {
  const tmp = temporarySibling(path);
  try {
    mkdirSync(dirname(path), { recursive: true });
    rmSync(tmp, { force: true });
    closeSync(openSync(tmp, "wx", mode));
    const db = new Database(tmp);
    try {
      db.pragma("journal_mode = WAL");
      db.exec(SCHEMA_MIGRATIONS);
    } finally {
      db.close();
    }
    try {
      linkSync(tmp, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
  } catch (e) {
    throw new CoreError("DB_OPEN", `cannot make the store ${path}: ${(e as Error).message}`, { cause: e });
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Applies a module's pending migrations, each in its own IMMEDIATE transaction. */
export function migrate(db: Db, module: string, migrations: readonly Migration[]): void {
  db.exec(SCHEMA_MIGRATIONS);
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
