import { join } from "node:path";
import { CoreError, type Home } from "../core/index.js";
import { parseStoreLocation, redactUrl, type StoreLocation } from "../directory/index.js";
import type { Io } from "./io.js";

/**
 * The directory's store, first found of: --store (or the older --db, an SQLite path), env
 * IDMINT_DIRECTORY_DB, `directory.store` in HOME/idmint.json, HOME/directory.db. A PostgreSQL
 * password is refused on the command line (other users can read it there): give it in the
 * variable or the config file.
 */
export function directoryStoreOf(home: Home, io: Io, args: { store?: string; db?: string }): StoreLocation {
  const given = args.store ?? args.db;
  if (given !== undefined) {
    const location = parseStoreLocation(given);
    if (location.kind === "postgres" && new URL(location.url).password) {
      throw new CoreError("OPTION_INVALID", "the store URL on the command line carries a password, which other users of this machine can read: put it in IDMINT_DIRECTORY_DB or idmint.json's directory.store");
    }
    return location;
  }
  const fromEnv = io.env.IDMINT_DIRECTORY_DB;
  if (fromEnv) return parseStoreLocation(fromEnv);
  const fromConfig = home.hasConfig() ? home.readConfig().directory?.store : undefined;
  if (fromConfig) return parseStoreLocation(fromConfig);
  return { kind: "sqlite", path: join(home.root, "directory.db") };
}

/** For messages and --json: where the store is, without a password. */
export function describeStore(location: StoreLocation): string {
  return location.kind === "postgres" ? redactUrl(location.url) : location.path;
}
