// The ledger's Merkle tree cut into C2SP tlog-tiles (c2sp.org/tlog-tiles): tiles of 256 hashes
// per level, level 0 the leaf hashes, level L+1 the hashes of full level-L tiles. The same
// RFC 9162 §2.1 tree as everything else in ledger/, only stored differently.

import { HASH_SIZE, NODE_PREFIX, hashChildren, sha256Latin1, type Hash } from "./merkle.js";

export const TILE_WIDTH = 256;
export const TILE_BYTES = TILE_WIDTH * HASH_SIZE;

/** C2SP tlog-tiles §Merkle Tree: N as zero-padded 3-digit elements, all but the last prefixed "x" (1234067 -> x001/x234/067). */
export function tileIndexPath(n: number): string {
  let digits = String(n);
  digits = digits.padStart(Math.ceil(digits.length / 3) * 3, "0");
  const parts: string[] = [];
  for (let i = 0; i < digits.length; i += 3) parts.push(digits.slice(i, i + 3));
  return parts.map((p, i) => (i < parts.length - 1 ? `x${p}` : p)).join("/");
}

/** `tile/<L>/<N>[.p/<W>]`, or `tile/entries/<N>[.p/<W>]` for level "entries"; W is given only for a partial tile. */
export function tilePath(level: number | "entries", index: number, width?: number): string {
  return `tile/${level}/${tileIndexPath(index)}${width !== undefined && width < TILE_WIDTH ? `.p/${width}` : ""}`;
}

/** A tile of `width` hashes at `level`; full when width is 256. */
export interface Tile {
  level: number;
  index: number;
  width: number;
  hashes: Buffer;
}

/** MTH of a full tile's 256 hashes, the perfect subtree of height 8 they are the leaves of (RFC 9162 §2.1.1). */
function fullTileHash(hashes: Buffer): Buffer {
  const work = Buffer.from(hashes);
  const input = Buffer.allocUnsafe(1 + 2 * HASH_SIZE);
  input[0] = NODE_PREFIX;
  for (let width = TILE_WIDTH; width > 1; width /= 2) {
    for (let i = 0; i < width / 2; i++) {
      work.copy(input, 1, 2 * i * HASH_SIZE, (2 * i + 2) * HASH_SIZE);
      work.write(sha256Latin1(input), i * HASH_SIZE, HASH_SIZE, "latin1");
    }
  }
  return work.subarray(0, HASH_SIZE);
}

/** MTH of a perfect run of hashes (its length a power of two). */
function perfectRoot(hashes: Buffer): Hash {
  const n = hashes.length / HASH_SIZE;
  if (n === 1) return new Uint8Array(hashes);
  const half = (n / 2) * HASH_SIZE;
  return hashChildren(perfectRoot(hashes.subarray(0, half)), perfectRoot(hashes.subarray(half)));
}

/**
 * Builds the tiles from the leaf hashes in order, holding only one unfinished tile per level
 * (at most 256 hashes each), so any log size streams through bounded memory. `add` returns the
 * tiles it completed; `partials` the unfinished right edge, which together with the full tiles
 * is the whole tree.
 */
export class TileHasher {
  #size: number;
  // levels[L]: the hashes of the unfinished tile at level L, `widths[L]` of them.
  readonly #levels: Buffer[] = [];
  readonly #widths: number[] = [];

  /** Resumes a tree of `size` leaves from the partial tiles of that size (each `floor(size / 256^L) mod 256` wide). */
  constructor(size = 0, partials: readonly Tile[] = []) {
    this.#size = size;
    for (const p of partials) {
      this.#level(p.level).set(p.hashes.subarray(0, p.width * HASH_SIZE));
      this.#widths[p.level] = p.width;
    }
    for (let level = 0, n = size; n > 0; level++, n = Math.floor(n / TILE_WIDTH)) {
      if ((this.#widths[level] ?? 0) !== n % TILE_WIDTH) throw new RangeError(`TileHasher: level ${level} needs a partial tile of width ${n % TILE_WIDTH}`);
    }
  }

  get size(): number {
    return this.#size;
  }

  #level(level: number): Buffer {
    while (this.#levels.length <= level) {
      this.#levels.push(Buffer.alloc(TILE_BYTES));
      this.#widths.push(0);
    }
    return this.#levels[level]!;
  }

  /** Appends one leaf hash; returns the full tiles this completed, lowest level first. */
  add(leafHash: Uint8Array): Tile[] | undefined {
    let done: Tile[] | undefined;
    let hash: Uint8Array = leafHash;
    let index = this.#size;
    this.#size++;
    for (let level = 0; ; level++) {
      const buf = this.#level(level);
      const w = this.#widths[level]!;
      buf.set(hash, w * HASH_SIZE);
      if (w + 1 < TILE_WIDTH) {
        this.#widths[level] = w + 1;
        return done;
      }
      const full = Buffer.from(buf);
      index = Math.floor(index / TILE_WIDTH);
      (done ??= []).push({ level, index, width: TILE_WIDTH, hashes: full });
      this.#widths[level] = 0;
      hash = fullTileHash(full);
    }
  }

  /** The unfinished tile of each level that has one (width 1..255), lowest level first. */
  partials(): Tile[] {
    const out: Tile[] = [];
    let n = this.#size;
    for (let level = 0; n > 0; level++, n = Math.floor(n / TILE_WIDTH)) {
      const width = n % TILE_WIDTH;
      if (width > 0) out.push({ level, index: Math.floor(n / TILE_WIDTH), width, hashes: Buffer.from(this.#levels[level]!.subarray(0, width * HASH_SIZE)) });
    }
    return out;
  }

  /**
   * MTH of the whole tree (RFC 9162 §2.1.1): its perfect subtrees, largest first, are the
   * power-of-two runs of each level's partial tile from the top level down; folded right to left.
   */
  root(empty: Hash): Hash {
    const subtrees: Hash[] = [];
    for (const p of this.partials().reverse()) {
      let at = 0;
      for (let run = TILE_WIDTH / 2; run >= 1; run /= 2) {
        if (p.width & run) {
          subtrees.push(perfectRoot(p.hashes.subarray(at * HASH_SIZE, (at + run) * HASH_SIZE)));
          at += run;
        }
      }
    }
    if (subtrees.length === 0) return empty;
    let r = subtrees[subtrees.length - 1]!;
    for (let i = subtrees.length - 2; i >= 0; i--) r = hashChildren(subtrees[i]!, r);
    return r;
  }
}

/** C2SP tlog-tiles §Log entries: an entry bundle is each entry prefixed by its big-endian uint16 length. */
export function encodeBundle(bodies: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  for (const b of bodies) {
    const len = Buffer.allocUnsafe(2);
    len.writeUInt16BE(b.length);
    parts.push(len, Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }
  return Buffer.concat(parts);
}

/** The entries of a bundle, or undefined if it is not a sequence of length-prefixed entries. */
export function decodeBundle(data: Uint8Array): Buffer[] | undefined {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    if (at + 2 > buf.length) return undefined;
    const len = buf.readUInt16BE(at);
    if (at + 2 + len > buf.length) return undefined;
    out.push(buf.subarray(at + 2, at + 2 + len));
    at += 2 + len;
  }
  return out;
}
