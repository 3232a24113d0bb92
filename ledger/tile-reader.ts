import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { openCheckpoint, type Checkpoint } from "./checkpoint.js";
import { LedgerError } from "./errors.js";
import { HASH_SIZE, emptyRoot, hashLeaf } from "./merkle.js";
import { TILE_BYTES, TILE_WIDTH, TileHasher, decodeBundle, tilePath } from "./tile-hasher.js";

/** Where a log's tiles are read from: a local folder or a directory URL (`<prefix>/tile/...`). */
export interface TileSource {
  readonly location: string;
  /** The resource at `path` under the prefix, or undefined if there is none. */
  read(path: string): Promise<Uint8Array | undefined>;
}

// A bundle holds at most 256 entries of at most 65535 bytes each, plus their lengths.
const MAX_BUNDLE = TILE_WIDTH * (2 + 0xffff);
// One tile or bundle; a server that stops answering ends the read instead of hanging it.
const FETCH_TIMEOUT_MS = 30_000;

export function tileSource(location: string): TileSource {
  if (/^https?:\/\//.test(location)) {
    const prefix = location.replace(/\/+$/, "");
    return {
      location,
      async read(path) {
        let res: Response;
        try {
          res = await fetch(`${prefix}/${path}`, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
        } catch (e) {
          throw new LedgerError("TILES_UNREACHABLE", `${prefix}/${path} could not be fetched (${(e as Error).message}): check the URL and that the server is up`, { cause: e });
        }
        if (res.status === 404) return undefined;
        if (!res.ok) throw new LedgerError("TILES_UNREACHABLE", `${prefix}/${path} answered HTTP ${res.status}: try again later`);
        const data = new Uint8Array(await res.arrayBuffer());
        if (data.length > MAX_BUNDLE) throw new LedgerError("TILE_MISMATCH", `${prefix}/${path} is ${data.length} bytes, larger than any tile`);
        return data;
      },
    };
  }
  return {
    location,
    async read(path) {
      const file = join(location, path);
      return existsSync(file) ? readFileSync(file) : undefined;
    },
  };
}

/** A partial tile, or failing that the full tile that replaced it, cut to `width` (C2SP tlog-tiles §Partial Tiles). */
async function readTile(source: TileSource, level: number | "entries", index: number, width: number): Promise<{ path: string; data: Uint8Array }> {
  const partial = tilePath(level, index, width);
  const data = await source.read(partial);
  if (data !== undefined || width === TILE_WIDTH) {
    if (data === undefined) throw missing(source, partial);
    return { path: partial, data };
  }
  const fullPath = tilePath(level, index);
  const full = await source.read(fullPath);
  if (full === undefined) throw missing(source, partial);
  return { path: fullPath, data: level === "entries" ? full : full.subarray(0, width * HASH_SIZE) };
}

function missing(source: TileSource, path: string): LedgerError {
  return new LedgerError("TILE_MISSING", `${source.location} has no ${path}: give the tiles folder or URL of this station (\`idmint ledger tiles\` writes it)`);
}

function mismatch(source: TileSource, path: string, why: string): LedgerError {
  return new LedgerError("TILE_MISMATCH", `${source.location}/${path} ${why}: the tiles were altered or belong to another log; get them again from the station`);
}

/** The source's own checkpoint must be this log's, and at least as new as the one being read: a clear refusal before any tile is. */
async function assertSameLog(source: TileSource, checkpoint: Checkpoint, log: { origin: string; spki: Uint8Array }): Promise<void> {
  const note = await source.read("checkpoint");
  if (note === undefined) throw missing(source, "checkpoint");
  let theirs: Checkpoint;
  try {
    theirs = openCheckpoint(Buffer.from(note).toString("utf8"), log.origin, log.spki);
  } catch (e) {
    throw new LedgerError("TILE_MISMATCH", `${source.location} holds the tiles of another log (its checkpoint is not signed by ${log.origin}): the tiles were altered or belong to another log; get them from the station`, { cause: e });
  }
  if (theirs.size < checkpoint.size) {
    throw new LedgerError("TILE_MISSING", `${source.location} holds tiles up to ${theirs.size} entries, older than the checkpoint of size ${checkpoint.size} being read: run \`idmint ledger tiles\` at the station again and copy them`);
  }
}

/**
 * Every entry of a log up to a signed checkpoint, read from its tiles one bundle at a time and
 * checked as it goes: each entry is hashed into the tree, every hash tile read is compared with
 * the tree built from the entries, and at the end the root must be the checkpoint's. Memory
 * stays one bundle and one tile per level. The consumer must not trust what it was handed
 * until the iteration has ended without an error.
 */
export async function* tiledEntries(source: TileSource, checkpoint: Checkpoint, log: { origin: string; spki: Uint8Array }): AsyncGenerator<{ index: number; body: Buffer }> {
  await assertSameLog(source, checkpoint, log);
  const size = checkpoint.size;
  const hasher = new TileHasher();
  const bundles = Math.ceil(size / TILE_WIDTH);
  const bundleAt = (t: number) => readTile(source, "entries", t, Math.min(TILE_WIDTH, size - t * TILE_WIDTH));
  let next = bundles > 0 ? bundleAt(0) : undefined;
  for (let t = 0; t < bundles; t++) {
    const { path, data } = await next!;
    // The next bundle is read while this one is hashed and handed on.
    next = t + 1 < bundles ? bundleAt(t + 1) : undefined;
    next?.catch(() => undefined);
    const width = Math.min(TILE_WIDTH, size - t * TILE_WIDTH);
    const entries = decodeBundle(data);
    if (!entries || entries.length < width || (entries.length > width && !path.endsWith(tilePath("entries", t)))) {
      throw mismatch(source, path, `is not a bundle of ${width} entries`);
    }
    for (let i = 0; i < width; i++) {
      const index = t * TILE_WIDTH + i;
      const body = entries[i]!;
      for (const tile of hasher.add(hashLeaf(body)) ?? []) {
        const got = await readTile(source, tile.level, tile.index, TILE_WIDTH);
        if (got.data.length !== TILE_BYTES || !tile.hashes.equals(got.data)) throw mismatch(source, got.path, "does not match the entries it covers");
      }
      yield { index, body };
    }
  }
  for (const tile of hasher.partials()) {
    const got = await readTile(source, tile.level, tile.index, tile.width);
    if (!tile.hashes.equals(got.data)) throw mismatch(source, got.path, "does not match the entries it covers");
  }
  if (!Buffer.from(hasher.root(emptyRoot())).equals(Buffer.from(checkpoint.root))) {
    throw new LedgerError("TILE_MISMATCH", `the entries in ${source.location} do not hash to the signed checkpoint of size ${size}: the tiles were altered or belong to another log`);
  }
}
