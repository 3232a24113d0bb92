import { decodeBase64Strict } from "../core/index.js";
import { LedgerError } from "./errors.js";
import { HASH_SIZE, LEAF_PREFIX, NODE_PREFIX, emptyRoot, half, hashChildren, isHash, isOdd, isSize, rootFromLeafHashes, sha256Latin1, type Hash } from "./merkle.js";

// ---------------------------------------------------------------------------------------------
// Frontier (compact range of the right edge)
// ---------------------------------------------------------------------------------------------

function popCount(x: number): number {
  let count = 0;
  while (x > 0) {
    if (isOdd(x)) count++;
    x = half(x);
  }
  return count;
}

function decodeHash(b64: unknown, index: number): Hash {
  if (typeof b64 !== "string") throw new TypeError(`MerkleFrontier.fromJSON: hashes[${index}] is not a string`);
  const bytes = decodeBase64Strict(b64);
  if (bytes?.length !== HASH_SIZE) throw new RangeError(`MerkleFrontier.fromJSON: hashes[${index}] is not a base64 ${HASH_SIZE}-byte hash`);
  return bytes;
}

/**
 * The right edge of a Merkle tree: the roots of the perfect subtrees into which RFC 9162 §2.1.1
 * splits the tree, one per set bit of the size, largest (leftmost) first. That is all that is
 * needed to append a leaf and to compute the current root, each in O(log n), without keeping
 * the leaves.
 */
export class MerkleFrontier {
  #size = 0;
  #hashes: Hash[] = [];

  get size(): number {
    return this.#size;
  }

  append(leafHash: Hash): void {
    if (!isHash(leafHash)) throw new RangeError(`MerkleFrontier.append: leaf hash must be ${HASH_SIZE} bytes`);
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new RangeError("MerkleFrontier.append: tree is full");
    // Each trailing 1-bit of the old size is a perfect subtree of the same height as the one
    // being carried, so the two merge into their parent (binary increment with carries).
    let carry: Hash = Uint8Array.from(leafHash);
    let s = this.#size;
    while (isOdd(s)) {
      const left = this.#hashes.pop();
      if (left === undefined) throw new LedgerError("FRONTIER_CORRUPT", "MerkleFrontier: internal state corrupt");
      carry = hashChildren(left, carry);
      s = half(s);
    }
    this.#hashes.push(carry);
    this.#size++;
  }

  /** MTH of the current tree (RFC 9162 §2.1.1): fold the perfect subtrees right to left. */
  root(): Hash {
    const last = this.#hashes[this.#hashes.length - 1];
    if (last === undefined) return emptyRoot();
    let r = last;
    for (let i = this.#hashes.length - 2; i >= 0; i--) {
      const left = this.#hashes[i];
      if (left === undefined) throw new LedgerError("FRONTIER_CORRUPT", "MerkleFrontier: internal state corrupt");
      r = hashChildren(left, r);
    }
    return Uint8Array.from(r);
  }

  static fromLeafHashes(hashes: readonly Hash[]): MerkleFrontier {
    // The frontier is MTH of each perfect subtree in the RFC 9162 §2.1.1 split, largest first;
    // building those with rootFromLeafHashes avoids the per-append allocations of n appends.
    const f = new MerkleFrontier();
    let start = 0;
    while (start < hashes.length) {
      let k = 1;
      while (k * 2 <= hashes.length - start) k *= 2;
      f.#hashes.push(rootFromLeafHashes(hashes, start, start + k));
      start += k;
    }
    f.#size = hashes.length;
    return f;
  }

  toJSON(): { size: number; hashes: string[] } {
    return {
      size: this.#size,
      hashes: this.#hashes.map((h) => Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString("base64")),
    };
  }

  /** Rebuilds a persisted frontier; throws on anything that is not exactly what toJSON wrote. */
  static fromJSON(json: { readonly size: number; readonly hashes: readonly string[] }): MerkleFrontier {
    const raw = json as unknown as { size?: unknown; hashes?: unknown } | null;
    if (typeof raw !== "object" || raw === null) throw new TypeError("MerkleFrontier.fromJSON: not an object");
    const { size, hashes } = raw;
    if (!isSize(size)) throw new RangeError("MerkleFrontier.fromJSON: size is not a non-negative safe integer");
    if (!Array.isArray(hashes)) throw new TypeError("MerkleFrontier.fromJSON: hashes is not an array");
    // One perfect subtree per set bit of the size, or the state cannot be a frontier.
    if (hashes.length !== popCount(size)) {
      throw new RangeError(`MerkleFrontier.fromJSON: ${hashes.length} hashes for size ${size}, expected ${popCount(size)}`);
    }
    const f = new MerkleFrontier();
    f.#size = size;
    f.#hashes = hashes.map((h: unknown, i) => decodeHash(h, i));
    return f;
  }
}

/**
 * The verifier's hot path: builds the tree from raw leaf data in one pass with no per-leaf
 * allocation besides the digest strings (hashes are kept as 32-char latin1 strings, the
 * cheapest thing `crypto.hash` returns; see `oneShot` above). Same hashing as everything
 * else here (RFC 9162 §2.1.1).
 */
export class TreeBuilder {
  #size = 0;
  #stack: string[] = [];
  #leafInput = Buffer.allocUnsafe(4096);
  readonly #nodeInput = Buffer.allocUnsafe(1 + 2 * HASH_SIZE);

  constructor() {
    this.#nodeInput[0] = NODE_PREFIX;
  }

  get size(): number {
    return this.#size;
  }

  /** Appends one leaf by its data and returns its leaf hash (latin1 string). */
  addLeafData(data: Uint8Array): string {
    if (data.length + 1 > this.#leafInput.length) this.#leafInput = Buffer.allocUnsafe(2 * (data.length + 1));
    const input = this.#leafInput;
    input[0] = LEAF_PREFIX;
    input.set(data, 1);
    const leaf = sha256Latin1(input.subarray(0, data.length + 1));
    let carry = leaf;
    let s = this.#size;
    while (s % 2 === 1) {
      carry = this.#node(this.#stack.pop()!, carry);
      s = half(s);
    }
    this.#stack.push(carry);
    this.#size++;
    return leaf;
  }

  #node(left: string, right: string): string {
    this.#nodeInput.write(left, 1, HASH_SIZE, "latin1");
    this.#nodeInput.write(right, 1 + HASH_SIZE, HASH_SIZE, "latin1");
    return sha256Latin1(this.#nodeInput);
  }

  /** MTH of the leaves added so far. */
  root(): Hash {
    if (this.#stack.length === 0) return emptyRoot();
    let r = this.#stack[this.#stack.length - 1]!;
    for (let i = this.#stack.length - 2; i >= 0; i--) r = this.#node(this.#stack[i]!, r);
    return new Uint8Array(Buffer.from(r, "latin1"));
  }
}
