import type { Db } from "../core/index.js";
import { openCheckpoint } from "./checkpoint.js";
import { claimedIndex } from "./entry.js";
import { LedgerError } from "./errors.js";
import { TreeBuilder } from "./frontier.js";
import { hashLeaf } from "./merkle.js";

export interface LedgerReport {
  entries: number;
  checkpoints: number;
  latestCheckpoint?: { id: number; size: number; root: string };
  /** Entries after the latest checkpoint: not yet provable to anyone. */
  uncovered: number;
}

/**
 * `idmint ledger verify`: recomputes the whole tree from the stored entries (their stored
 * leaf hashes are only a cache and are not trusted), checks every checkpoint's signature
 * with the station key, and checks that every checkpoint's root is the root of the
 * entries it covers. Because all checkpoints are checked against the same recomputed
 * tree, each later one is consistent with each earlier one. The first fault is named.
 */
export function verifyLedger(db: Db, station: { origin: string; spki: Uint8Array }): LedgerReport {
  const rows = db.prepare("SELECT id, size, note FROM ledger_checkpoints ORDER BY id").all() as Array<{ id: number; size: number; note: string }>;
  const checkpoints = rows.map((r) => {
    let c;
    try {
      c = openCheckpoint(r.note, station.origin, station.spki);
    } catch (e) {
      throw new LedgerError((e as LedgerError).code ?? "CHECKPOINT_INVALID", `checkpoint ${r.id}: ${(e as Error).message}`, { at: { checkpoint: r.id }, cause: e });
    }
    if (c.size !== r.size) {
      throw new LedgerError("CHECKPOINT_INVALID", `checkpoint ${r.id}: its signed size ${c.size} differs from the stored size ${r.size}`, { at: { checkpoint: r.id } });
    }
    return { id: r.id, ...c };
  });
  for (let i = 1; i < checkpoints.length; i++) {
    if (checkpoints[i]!.size < checkpoints[i - 1]!.size) {
      const c = checkpoints[i]!;
      throw new LedgerError("CHECKPOINT_MISMATCH", `checkpoint ${c.id} covers ${c.size} entries, fewer than checkpoint ${checkpoints[i - 1]!.id} before it: the log went backwards`, { at: { checkpoint: c.id } });
    }
  }

  const bySize = [...checkpoints].sort((a, b) => a.size - b.size || a.id - b.id);
  const coveredBy = (bySize[bySize.length - 1]?.size ?? 0);
  let next = 0;
  const tree = new TreeBuilder();
  // Leaf hashes of the entries after the last checkpoint: nothing signed covers them, so
  // they are checked against the hashes stored when they were appended.
  const tail: string[] = [];
  const checkDue = () => {
    while (next < bySize.length && bySize[next]!.size === tree.size) {
      const c = bySize[next]!;
      if (!Buffer.from(tree.root()).equals(Buffer.from(c.root))) {
        const changed = firstChangedEntry(db, c.size);
        if (changed !== undefined) {
          throw new LedgerError("ENTRY_MODIFIED", `entry ${changed} was changed after it was appended (its hash no longer matches)`, { at: { entry: changed } });
        }
        throw new LedgerError("CHECKPOINT_MISMATCH", `checkpoint ${c.id} (size ${c.size}) does not match the entries it covers: an entry below index ${c.size} was changed, removed or reordered`, { at: { checkpoint: c.id } });
      }
      next++;
    }
  };
  checkDue();
  let expected = 0;
  // The hot loop reads only what it hashes; the stored leaf hashes are read again only to
  // name an entry once a checkpoint has failed.
  for (const [idx, body] of entryRows(db)) {
    if (idx !== expected) {
      throw new LedgerError("ENTRY_MISSING", `entry ${expected} is missing (the next stored entry is ${idx}): entries were deleted`, { at: { entry: expected } });
    }
    const claimed = claimedIndex(body);
    if (claimed !== idx) {
      throw new LedgerError("ENTRY_INVALID", claimed < 0 ? `entry ${idx} is malformed` : `entry ${idx} says it is entry ${claimed}: entries were moved or swapped`, { at: { entry: idx } });
    }
    const leaf = tree.addLeafData(body);
    if (idx >= coveredBy) tail.push(leaf);
    expected++;
    checkDue();
  }
  if (next < bySize.length) {
    const c = bySize[next]!;
    throw new LedgerError("LEDGER_TRUNCATED", `checkpoint ${c.id} covers ${c.size} entries but the ledger holds only ${expected}: its tail was cut`, { at: { checkpoint: c.id } });
  }
  const stored = db.prepare("SELECT idx, leaf_hash FROM ledger_entries WHERE idx >= ? ORDER BY idx").raw().iterate(coveredBy) as IterableIterator<[number, Buffer]>;
  for (const [idx, hash] of stored) {
    if (hash.toString("latin1") !== tail[idx - coveredBy]) {
      throw new LedgerError("ENTRY_MODIFIED", `entry ${idx} was changed after it was appended (its hash no longer matches)`, { at: { entry: idx } });
    }
  }
  const latest = checkpoints[checkpoints.length - 1];
  return {
    entries: expected,
    checkpoints: checkpoints.length,
    latestCheckpoint: latest && { id: latest.id, size: latest.size, root: Buffer.from(latest.root).toString("base64") },
    uncovered: expected - (latest?.size ?? 0),
  };
}

// Rows a page at a time: one .all() per 4,096 rows reads them about 1.7x faster than a
// row-by-row iterate(), whose per-row round trip into SQLite was most of verify's time.
const PAGE = 4096;

/** Every stored entry as [index, body], in index order: verify's read of the ledger (and its benchmark's floor). */
export function* entryRows(db: Db): Generator<[number, Buffer]> {
  const page = db.prepare(`SELECT idx, body FROM ledger_entries WHERE idx >= ? ORDER BY idx LIMIT ${PAGE}`).raw();
  for (let from = Number.MIN_SAFE_INTEGER; ; ) {
    const rows = page.all(from) as Array<[number, Buffer]>;
    yield* rows;
    if (rows.length < PAGE) return;
    from = rows[rows.length - 1]![0] + 1;
  }
}

/** The first entry below `size` whose stored hash differs from its recomputed hash, if any. */
function firstChangedEntry(db: Db, size: number): number | undefined {
  const rows = db.prepare("SELECT idx, body, leaf_hash FROM ledger_entries WHERE idx < ? ORDER BY idx").raw().iterate(size) as IterableIterator<[number, Buffer, Buffer]>;
  for (const [idx, body, stored] of rows) {
    if (!Buffer.from(hashLeaf(body)).equals(stored)) return idx;
  }
  return undefined;
}
