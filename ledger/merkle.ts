// Merkle tree of idmint's audit ledger, hashed exactly as RFC 9162 §2.1 (the same tree as
// RFC 6962 §2.1) so any off-the-shelf Certificate Transparency / tlog verifier can check our
// checkpoints and proofs. Pure functions only: no I/O, no global state.

import * as nodeCrypto from "node:crypto";

/** A SHA-256 output: always exactly 32 bytes. */
export type Hash = Uint8Array;

const HASH_SIZE = 32;

// RFC 9162 §2.1.1: domain-separation prefixes, so a leaf can never be passed off as an
// interior node (second-preimage resistance).
const LEAF_PREFIX = 0x00;
const NODE_PREFIX = 0x01;

// A valid inclusion path holds one hash per level, and tree sizes are capped by
// Number.MAX_SAFE_INTEGER (< 2^53); a consistency path holds at most one more. Anything longer
// is rejected before any hashing, so a hostile proof cannot buy unbounded work.
const MAX_INCLUSION_PATH = 64;
const MAX_CONSISTENCY_PATH = 65;

// At a million nodes per root the cost is not SHA-256 but the Hash object and the digest Buffer
// that createHash allocates per node (measured ~3x slower, mostly GC). crypto.hash (Node 20.12+)
// is one-shot and can return the digest as a latin1 ("binary") string, which is written straight
// into the working buffer. Older Node 20 releases fall back to createHash. Looked up on the
// namespace because a named import of a missing export would fail at link time.
const oneShot: ((data: Uint8Array) => string) | undefined =
  typeof nodeCrypto.hash === "function" ? (data) => nodeCrypto.hash("sha256", data, "binary") : undefined;

function sha256Latin1(data: Uint8Array): string {
  return oneShot ? oneShot(data) : nodeCrypto.createHash("sha256").update(data).digest("binary");
}

/** SHA-256 as a plain Uint8Array (not a Buffer), so callers comparing with `Uint8Array` values see equal types. */
function sha256(data: Uint8Array): Hash {
  const digest = sha256Latin1(data);
  const out = new Uint8Array(HASH_SIZE);
  for (let i = 0; i < HASH_SIZE; i++) out[i] = digest.charCodeAt(i);
  return out;
}

/** RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0)). */
export function hashLeaf(data: Uint8Array): Hash {
  const input = new Uint8Array(1 + data.length);
  input[0] = LEAF_PREFIX;
  input.set(data, 1);
  return sha256(input);
}

/** RFC 9162 §2.1.1: MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])). */
export function hashChildren(left: Hash, right: Hash): Hash {
  const input = new Uint8Array(1 + left.length + right.length);
  input[0] = NODE_PREFIX;
  input.set(left, 1);
  input.set(right, 1 + left.length);
  return sha256(input);
}

/** RFC 9162 §2.1.1: MTH({}) = HASH(), the hash of the empty string. */
export function emptyRoot(): Hash {
  return sha256(new Uint8Array(0));
}

// ---------------------------------------------------------------------------------------------
// Tree hashing and proof generation (trusted inputs: programming errors throw RangeError)
// ---------------------------------------------------------------------------------------------

function assertRange(what: string, start: number, end: number, limit: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > limit) {
    throw new RangeError(`${what}: invalid range [${start}, ${end}) of ${limit} leaf hashes`);
  }
}

/**
 * MTH(D[start:end]) (RFC 9162 §2.1.1).
 *
 * Computed bottom-up, level by level, in one working buffer: pairing neighbours and carrying an
 * unpaired last node up unchanged yields the same tree as the spec's "k = largest power of two
 * smaller than n" split, because that split makes every tree left-complete. This avoids
 * recursion, slicing and per-node allocations other than the digest itself.
 */
export function rootFromLeafHashes(
  leafHashes: readonly Hash[],
  start = 0,
  end: number = leafHashes.length,
): Hash {
  assertRange("rootFromLeafHashes", start, end, leafHashes.length);
  const n = end - start;
  if (n === 0) return emptyRoot();
  if (n === 1) return Uint8Array.from(leafHash(leafHashes, start));

  // 0x01 || left || right, reused for every interior node.
  const input = Buffer.allocUnsafe(1 + 2 * HASH_SIZE);
  input[0] = NODE_PREFIX;

  // The first level reads the caller's leaf hashes in place, so they are never copied (or
  // written); every level above lives in `work`.
  let width = Math.ceil(n / 2);
  const work = Buffer.allocUnsafe(width * HASH_SIZE);
  for (let i = 0; i < width; i++) {
    const left = leafHash(leafHashes, start + 2 * i);
    if (2 * i + 1 < n) {
      input.set(left, 1);
      input.set(leafHash(leafHashes, start + 2 * i + 1), 1 + HASH_SIZE);
      work.write(sha256Latin1(input), i * HASH_SIZE, HASH_SIZE, "latin1");
    } else {
      work.set(left, i * HASH_SIZE);
    }
  }

  // Higher levels in place: node i is written only after nodes 2i and 2i+1 were read, and
  // i <= 2i, so nothing still needed is overwritten.
  while (width > 1) {
    const next = Math.ceil(width / 2);
    for (let i = 0; i < next; i++) {
      const from = 2 * i * HASH_SIZE;
      if (2 * i + 1 < width) {
        work.copy(input, 1, from, from + 2 * HASH_SIZE);
        work.write(sha256Latin1(input), i * HASH_SIZE, HASH_SIZE, "latin1");
      } else {
        work.copyWithin(i * HASH_SIZE, from, from + HASH_SIZE);
      }
    }
    width = next;
  }
  return Uint8Array.from(work.subarray(0, HASH_SIZE));
}

function leafHash(leafHashes: readonly Hash[], index: number): Hash {
  const h = leafHashes[index];
  if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
    throw new RangeError(`leaf hash ${index} is not a ${HASH_SIZE}-byte Uint8Array`);
  }
  return h;
}

/** RFC 9162 §2.1.1: k is the largest power of two smaller than n (n > 1). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * PATH(m, D[n]) of RFC 9162 §2.1.3.1, for leaf `index` in the tree of the first `treeSize`
 * leaves. Ordered from the leaf's sibling up to the root's child, as §2.1.3.2 consumes it.
 */
export function inclusionProof(
  leafHashes: readonly Hash[],
  index: number,
  treeSize: number = leafHashes.length,
): Hash[] {
  assertRange("inclusionProof", 0, treeSize, leafHashes.length);
  return path(index, treeSize, (start, end) => rootFromLeafHashes(leafHashes, start, end));
}

/**
 * inclusionProof for several leaves of one tree: each subtree root their paths share (the
 * upper levels, for nearby leaves most of a path) is hashed once, so a batch of proofs costs
 * about one tree hash instead of one per proof.
 */
export function inclusionProofs(leafHashes: readonly Hash[], indices: readonly number[], treeSize: number = leafHashes.length): Hash[][] {
  assertRange("inclusionProofs", 0, treeSize, leafHashes.length);
  const roots = new Map<string, Hash>();
  const root = (start: number, end: number): Hash => {
    const key = `${start}:${end}`;
    let r = roots.get(key);
    if (r === undefined) roots.set(key, (r = rootFromLeafHashes(leafHashes, start, end)));
    return r;
  };
  return indices.map((index) => path(index, treeSize, root));
}

function path(index: number, treeSize: number, root: (start: number, end: number) => Hash): Hash[] {
  if (!Number.isSafeInteger(index) || index < 0 || index >= treeSize) {
    throw new RangeError(`inclusionProof: index ${index} not in a tree of size ${treeSize}`);
  }
  // The spec's recursion appends the sibling subtree *after* the deeper path, so walking it
  // top-down collects nodes root-first; reverse once at the end.
  const topDown: Hash[] = [];
  let m = index;
  let start = 0;
  let end = treeSize;
  while (end - start > 1) {
    const k = splitPoint(end - start);
    if (m < k) {
      // §2.1.3.1: PATH(m, D[0:k]) : MTH(D[k:n])
      topDown.push(root(start + k, end));
      end = start + k;
    } else {
      // §2.1.3.1: PATH(m - k, D[k:n]) : MTH(D[0:k])
      topDown.push(root(start, start + k));
      m -= k;
      start += k;
    }
  }
  return topDown.reverse();
}

/**
 * PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1, proving that the tree of the
 * first `oldSize` leaves is a prefix of the tree of the first `newSize` leaves. Empty when
 * oldSize == newSize. The spec defines no proof from the empty tree (it requires 0 < m), so
 * oldSize 0 throws.
 */
export function consistencyProof(
  leafHashes: readonly Hash[],
  oldSize: number,
  newSize: number = leafHashes.length,
): Hash[] {
  assertRange("consistencyProof", oldSize, newSize, leafHashes.length);
  if (oldSize === 0) {
    throw new RangeError("consistencyProof: no consistency proof from the empty tree (RFC 9162 §2.1.4.1 needs 0 < m)");
  }
  const topDown: Hash[] = [];
  let m = oldSize;
  let start = 0;
  let end = newSize;
  let whole = true; // the spec's flag b: is D[start:m] still the entire old tree?
  for (;;) {
    const n = end - start;
    if (m === n) {
      // §2.1.4.1: SUBPROOF(m, D[m], true) = {} (the verifier already has that root);
      // SUBPROOF(m, D[m], false) = {MTH(D[m])}.
      if (!whole) topDown.push(rootFromLeafHashes(leafHashes, start, end));
      break;
    }
    const k = splitPoint(n);
    if (m <= k) {
      // §2.1.4.1: SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
      topDown.push(rootFromLeafHashes(leafHashes, start + k, end));
      end = start + k;
    } else {
      // §2.1.4.1: SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
      topDown.push(rootFromLeafHashes(leafHashes, start, start + k));
      m -= k;
      start += k;
      whole = false;
    }
  }
  return topDown.reverse();
}

// ---------------------------------------------------------------------------------------------
// Verification. Every argument is attacker-controlled (proofs and roots arrive from the network
// or from a possibly tampered store), so each is type- and length-checked, hashes are compared
// in constant time, and any malformed or failing input yields false. These never throw.
// ---------------------------------------------------------------------------------------------

function isSize(x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0;
}

function isHash(x: unknown): x is Hash {
  return x instanceof Uint8Array && x.length === HASH_SIZE;
}

function isPath(x: unknown, max: number): x is readonly Hash[] {
  if (!Array.isArray(x) || x.length > max) return false;
  // An indexed loop, not every(): every() skips the holes of a sparse array.
  for (let i = 0; i < x.length; i++) if (!isHash(x[i])) return false;
  return true;
}

function hashesEqual(a: Hash, b: Hash): boolean {
  // timingSafeEqual throws on a length mismatch; both are 32-byte hashes by now.
  return a.length === HASH_SIZE && b.length === HASH_SIZE && nodeCrypto.timingSafeEqual(a, b);
}

function isOdd(x: number): boolean {
  return x % 2 === 1;
}

// Sizes may exceed 2^32, where JavaScript's >> would truncate; halve arithmetically.
function half(x: number): number {
  return Math.floor(x / 2);
}

function isPowerOfTwo(x: number): boolean {
  if (x < 1) return false;
  while (x % 2 === 0) x /= 2;
  return x === 1;
}

/**
 * RFC 9162 §2.1.3.2: does `proof` show that `leafHash` is leaf `leafIndex` of the tree of size
 * `treeSize` whose root is `root`? Returns false for anything malformed; never throws.
 */
export function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  leafHash: Hash,
  proof: readonly Hash[],
  root: Hash,
): boolean {
  try {
    if (!isSize(leafIndex) || !isSize(treeSize)) return false;
    // §2.1.3.2 step 1: leaf_index must be < tree_size (this also rejects the empty tree).
    if (leafIndex >= treeSize) return false;
    if (!isHash(leafHash) || !isHash(root) || !isPath(proof, MAX_INCLUSION_PATH)) return false;

    // §2.1.3.2 step 2
    let fn = leafIndex;
    let sn = treeSize - 1;
    // §2.1.3.2 step 3
    let r = leafHash;
    // §2.1.3.2 step 4
    for (const p of proof) {
      // step 4a: a path longer than the tree is high is forged.
      if (sn === 0) return false;
      // step 4b
      if (isOdd(fn) || fn === sn) {
        r = hashChildren(p, r);
        if (!isOdd(fn)) {
          while (!(isOdd(fn) || fn === 0)) {
            fn = half(fn);
            sn = half(sn);
          }
        }
      } else {
        r = hashChildren(r, p);
      }
      // step 4c
      fn = half(fn);
      sn = half(sn);
    }
    // §2.1.3.2 step 5: sn must be 0 (otherwise the path was too short) and the roots equal.
    return sn === 0 && hashesEqual(r, root);
  } catch {
    return false;
  }
}

/**
 * RFC 9162 §2.1.4.2: does `proof` show that the tree of size `size1` with root `root1` is a
 * prefix of the tree of size `size2` with root `root2`? Returns false for anything malformed;
 * never throws.
 *
 * Edge cases outside the spec's 0 < first < second: size1 == 0 is always rejected (RFC 9162
 * §2.1.4.1 defines no proof from the empty tree, and "consistent with nothing" proves nothing);
 * size1 == size2 is accepted only with an empty proof and equal roots.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Hash[],
  root1: Hash,
  root2: Hash,
): boolean {
  try {
    if (!isSize(size1) || !isSize(size2)) return false;
    if (size1 === 0 || size1 > size2) return false;
    // RFC 9162 §2.1.4.2: equal sizes need an empty proof and equal roots; nothing is hashed,
    // so (as the transparency-dev vectors expect) the roots are compared as given.
    if (size1 === size2) return proof.length === 0 && root1.length === root2.length && nodeCrypto.timingSafeEqual(root1, root2);
    if (!isHash(root1) || !isHash(root2) || !isPath(proof, MAX_CONSISTENCY_PATH)) return false;

    // §2.1.4.2 step 1
    if (proof.length === 0) return false;
    // §2.1.4.2 step 2: when first is a power of two its root is itself a node of the new tree,
    // so the proof omits it and the verifier supplies it.
    const path: readonly Hash[] = isPowerOfTwo(size1) ? [root1, ...proof] : proof;
    // §2.1.4.2 step 3
    let fn = size1 - 1;
    let sn = size2 - 1;
    // §2.1.4.2 step 4
    while (isOdd(fn)) {
      fn = half(fn);
      sn = half(sn);
    }
    // §2.1.4.2 step 5 (path is non-empty: step 1 or step 2 guarantees it)
    const seed = path[0];
    if (seed === undefined) return false;
    let fr = seed;
    let sr = seed;
    // §2.1.4.2 step 6
    for (let i = 1; i < path.length; i++) {
      const c = path[i];
      if (c === undefined) return false;
      // step 6a: a path longer than the tree is high is forged.
      if (sn === 0) return false;
      // step 6b
      if (isOdd(fn) || fn === sn) {
        fr = hashChildren(c, fr); // 6b.i
        sr = hashChildren(c, sr); // 6b.ii
        if (!isOdd(fn)) {
          // 6b.iii
          while (!(isOdd(fn) || fn === 0)) {
            fn = half(fn);
            sn = half(sn);
          }
        }
      } else {
        sr = hashChildren(sr, c);
      }
      // step 6c
      fn = half(fn);
      sn = half(sn);
    }
    // §2.1.4.2 step 7: both reconstructed roots must match and the whole path be consumed.
    // Both comparisons always run, so timing does not tell which root mismatched.
    const firstOk = hashesEqual(fr, root1);
    const secondOk = hashesEqual(sr, root2);
    return sn === 0 && firstOk && secondOk;
  } catch {
    return false;
  }
}

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
  const bytes = Buffer.from(b64, "base64");
  // Buffer's base64 decoder skips junk silently; a round trip enforces canonical encoding.
  if (bytes.length !== HASH_SIZE || bytes.toString("base64") !== b64) {
    throw new RangeError(`MerkleFrontier.fromJSON: hashes[${index}] is not a base64 ${HASH_SIZE}-byte hash`);
  }
  return Uint8Array.from(bytes);
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
      if (left === undefined) throw new Error("MerkleFrontier: internal state corrupt");
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
      if (left === undefined) throw new Error("MerkleFrontier: internal state corrupt");
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
