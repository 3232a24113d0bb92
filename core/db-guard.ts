import { CoreError, isIdmintError } from "./errors.js";

/**
 * SQLite's result codes for a file that is not, or is no longer, a sound database:
 * SQLITE_CORRUPT (with its extended codes such as SQLITE_CORRUPT_INDEX) and SQLITE_NOTADB.
 */
const DAMAGE = /^SQLITE_(CORRUPT|NOTADB)/;

/** The one error for a store that cannot be trusted: its history is gone or unreadable, so only a backup brings it back. */
export function damagedStore(path: string, why: string, cause?: unknown): CoreError {
  return new CoreError(
    "DB_DAMAGED",
    `the store ${path} ${why}: restore it from a backup; do not remove it or let idmint start a new one in its place, that would lose this home's history`,
    { cause },
  );
}

/** True for a damaged store's error, also once it crossed from a worker thread (fromWireError). */
export function isDamagedStore(e: unknown): boolean {
  return isIdmintError(e) && e.code === "DB_DAMAGED";
}

function mapped(e: unknown, path: string): unknown {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !DAMAGE.test(code)) return e;
  return damagedStore(path, code === "SQLITE_NOTADB" ? "is not an SQLite database" : `is damaged (${(e as Error).message})`, e);
}

/** Methods whose result may meet the file again later: a statement, a row iterator. */
const GUARDED_RESULTS = new Set<PropertyKey>(["prepare", "iterate"]);

/**
 * `target` (a better-sqlite3 database, or a statement or row iterator of one) with SQLite's
 * damage errors turned into DB_DAMAGED naming `path`, wherever they are raised: damage is
 * found only when a page is read, so mid-command (a worker's commit, the nth row of an
 * iteration) as often as at open. Other errors pass through unchanged.
 */
export function guardStore<T extends object>(target: T, path: string): T {
  // One wrapper per method, made on first use: the line's writer calls the same few per unit.
  const methods = new Map<PropertyKey, (...args: unknown[]) => unknown>();
  const proxy: T = new Proxy(target, {
    get(t, key) {
      const value: unknown = Reflect.get(t, key);
      if (typeof value !== "function") return value;
      let method = methods.get(key);
      if (!method) {
        method = (...args: unknown[]) => {
          const result = guarded(value as (...a: unknown[]) => unknown, t, args, path);
          if (result === t) return proxy;
          if (key === "transaction") return guardTransaction(result as Transaction, path);
          return GUARDED_RESULTS.has(key) ? guardStore(result as object, path) : result;
        };
        methods.set(key, method);
      }
      return method;
    },
  });
  return proxy;
}

type Transaction = ((...args: unknown[]) => unknown) & Record<"default" | "deferred" | "immediate" | "exclusive", (...args: unknown[]) => unknown>;

function guarded(fn: (...args: unknown[]) => unknown, self: unknown, args: unknown[], path: string): unknown {
  try {
    return Reflect.apply(fn, self, args);
  } catch (e) {
    throw mapped(e, path);
  }
}

/** A transaction function and its variants, whose BEGIN and COMMIT read the file too (their own properties cannot be proxied). */
function guardTransaction(tx: Transaction, path: string): Transaction {
  const wrap = (fn: (...args: unknown[]) => unknown) =>
    function (this: unknown, ...args: unknown[]) {
      return guarded(fn, this, args, path);
    };
  const whole = wrap(tx);
  return Object.assign(whole, { default: whole, deferred: wrap(tx.deferred), immediate: wrap(tx.immediate), exclusive: wrap(tx.exclusive) });
}
