import { DirectoryError } from "./errors.js";
import { openDirectoryStore, type DirectoryStore } from "./store.js";
import { openPgStore, type PgStoreOptions } from "./pg-store.js";

/** Where a directory's state lives: a PostgreSQL URL, or an SQLite file (the embedded default). */
export type StoreLocation = { kind: "postgres"; url: string } | { kind: "sqlite"; path: string };

/** `postgres://…` / `postgresql://…` is PostgreSQL; `sqlite:PATH` or a bare path is an SQLite file. */
export function parseStoreLocation(text: string): StoreLocation {
  if (/^postgres(ql)?:\/\//i.test(text)) return { kind: "postgres", url: text };
  const path = text.startsWith("sqlite:") ? text.slice("sqlite:".length) : text;
  if (path === "" || /^[a-z][a-z0-9+.-]*:\/\//i.test(path)) {
    const what = path === "" ? "an empty store location" : `a ${text.split(":")[0]}: store`;
    throw new DirectoryError("CONFIG_INVALID", `${what} is not one the directory keeps: give postgres://USER@HOST/DB or sqlite:PATH`);
  }
  return { kind: "sqlite", path };
}

/** Opens the store at a location; PostgreSQL's schema is migrated on the way (refused if newer than this code). */
export async function openStore(location: StoreLocation, options: PgStoreOptions = {}): Promise<DirectoryStore> {
  return location.kind === "postgres" ? openPgStore(location.url, options) : openDirectoryStore(location.path);
}
