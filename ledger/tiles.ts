import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { writeCopy, writeFileAtomic } from "../core/index.js";
import { openCheckpoint, type Checkpoint } from "./checkpoint.js";
import { LedgerError } from "./errors.js";
import { HASH_SIZE, emptyRoot, hashLeaf } from "./merkle.js";
import { TILE_WIDTH, TileHasher, encodeBundle, tilePath, type Tile } from "./tile-hasher.js";

export interface TilesWritten {
  size: number;
  /** The size the folder held before, 0 if it was new. */
  previousSize: number;
  fullTiles: number;
  partialTiles: number;
  bundles: number;
}

export interface WriteTilesParams {
  outDir: string;
  origin: string;
  stationSpki: Uint8Array;
  /** The signed checkpoint note the tiles are written up to. */
  checkpointNote: string;
  /** The entries [from, to) in index order (the station's ledger). */
  bodies: (from: number, to: number) => Iterable<Uint8Array>;
}

const MAX_ENTRY = 0xffff;

/**
 * `idmint ledger tiles`: brings a folder of C2SP tlog-tiles up to a signed checkpoint. Full
 * tiles are immutable, so only the tiles the previous run left partial, and those after, are
 * written; the previous run's `checkpoint` says where it stopped, and the partial tiles it
 * wrote are read back to resume (their hashes are checked by the final root). The checkpoint
 * is written last, so a folder is never ahead of the tiles it holds.
 */
export function writeTiles(p: WriteTilesParams): TilesWritten {
  const checkpoint = openCheckpoint(p.checkpointNote, p.origin, p.stationSpki);
  const previous = previousCheckpoint(p);
  if (previous && previous.size > checkpoint.size) {
    throw new LedgerError("LEDGER_TRUNCATED", `${p.outDir} holds tiles up to ${previous.size} entries but the checkpoint covers only ${checkpoint.size}: the ledger went back; run \`idmint ledger verify\``);
  }
  const from = previous?.size ?? 0;
  const result: TilesWritten = { size: checkpoint.size, previousSize: from, fullTiles: 0, partialTiles: 0, bundles: 0 };
  if (previous && from === checkpoint.size) {
    if (!Buffer.from(previous.root).equals(Buffer.from(checkpoint.root))) throw mismatch(p.outDir);
    return result;
  }

  const hasher = new TileHasher(from, readPartials(p.outDir, from));
  const made = new Set<string>();
  const write = (path: string, data: Uint8Array) => {
    const file = join(p.outDir, path);
    const dir = dirname(file);
    if (!made.has(dir)) {
      mkdirSync(dir, { recursive: true });
      made.add(dir);
    }
    // No fsync per tile: the checkpoint, written durably last, is what makes them count.
    writeCopy(file, data);
  };
  // The entries of the level-0 tile the previous run left partial, then the new ones.
  const bundleStart = from - (from % TILE_WIDTH);
  let bundle: Uint8Array[] = [...p.bodies(bundleStart, from)];
  let index = from;
  for (const body of p.bodies(from, checkpoint.size)) {
    if (body.length > MAX_ENTRY) throw new LedgerError("ENTRY_TOO_LARGE", `ledger entry ${index} is ${body.length} bytes, more than an entry bundle holds (65535): it cannot be published as tiles`);
    bundle.push(body);
    const done = hasher.add(hashLeaf(body));
    index++;
    if (!done) continue;
    for (const t of done) {
      write(tilePath(t.level, t.index), t.hashes);
      result.fullTiles++;
    }
    write(tilePath("entries", done[0]!.index), encodeBundle(bundle));
    result.bundles++;
    bundle = [];
  }
  if (index !== checkpoint.size) {
    throw new LedgerError("ENTRY_MISSING", `the ledger holds ${index} entries, fewer than its checkpoint's ${checkpoint.size}: run \`idmint ledger verify\``);
  }
  if (!Buffer.from(hasher.root(emptyRoot())).equals(Buffer.from(checkpoint.root))) throw mismatch(p.outDir);
  for (const t of hasher.partials()) {
    write(tilePath(t.level, t.index, t.width), t.hashes);
    result.partialTiles++;
  }
  if (bundle.length > 0) {
    write(tilePath("entries", Math.floor(checkpoint.size / TILE_WIDTH), bundle.length), encodeBundle(bundle));
    result.bundles++;
  }
  writeFileAtomic(join(p.outDir, "checkpoint"), p.checkpointNote);
  return result;
}

function mismatch(outDir: string): LedgerError {
  return new LedgerError("TILE_MISMATCH", `the tiles in ${outDir} and the ledger do not hash to the signed checkpoint: run \`idmint ledger verify\`, then write the tiles into an empty folder`);
}

function previousCheckpoint(p: WriteTilesParams): Checkpoint | undefined {
  const file = join(p.outDir, "checkpoint");
  if (!existsSync(file)) return undefined;
  try {
    return openCheckpoint(readFileSync(file, "utf8"), p.origin, p.stationSpki);
  } catch (e) {
    throw new LedgerError("TILES_FOREIGN", `${p.outDir} holds tiles of another log (its checkpoint is not ${p.origin}'s): choose an empty folder`, { cause: e });
  }
}

/** The partial tiles a previous run wrote for a log of `size` entries. */
function readPartials(outDir: string, size: number): Tile[] {
  const out: Tile[] = [];
  for (let level = 0, n = size; n > 0; level++, n = Math.floor(n / TILE_WIDTH)) {
    const width = n % TILE_WIDTH;
    if (width === 0) continue;
    const index = Math.floor(n / TILE_WIDTH);
    const file = join(outDir, tilePath(level, index, width));
    const hashes = existsSync(file) ? readFileSync(file) : undefined;
    if (hashes?.length !== width * HASH_SIZE) {
      throw new LedgerError("TILE_MISSING", `${file} is missing or cut short: the tiles folder is incomplete; write the tiles into an empty folder`);
    }
    out.push({ level, index, width, hashes });
  }
  return out;
}
