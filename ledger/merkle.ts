// Merkle tree of idmint's audit ledger, hashed exactly as RFC 9162 §2.1 (the same tree as
// RFC 6962 §2.1) so any off-the-shelf Certificate Transparency / tlog verifier can check our
// checkpoints and proofs. Pure functions only: no I/O, no global state.

import * as nodeCrypto from "node:crypto";

/** A SHA-256 output: always exactly 32 bytes. */
export type Hash = Uint8Array;

export const HASH_SIZE = 32;

// RFC 9162 §2.1.1: domain-separation prefixes, so a leaf can never be passed off as an
// interior node (second-preimage resistance).
export const LEAF_PREFIX = 0x00;
export const NODE_PREFIX = 0x01;

// At a million nodes per root the cost is not SHA-256 but the Hash object and the digest Buffer
// that createHash allocates per node (measured ~3x slower, mostly GC). crypto.hash (Node 20.12+)
// is one-shot and can return the digest as a latin1 ("binary") string, which is written straight
// into the working buffer. Older Node 20 releases fall back to createHash. Looked up on the
// namespace because a named import of a missing export would fail at link time.
const oneShot: ((data: Uint8Array) => string) | undefined =
  typeof nodeCrypto.hash === "function" ? (data) => nodeCrypto.hash("sha256", data, "binary") : undefined;

export function sha256Latin1(data: Uint8Array): string {
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

export function isOdd(x: number): boolean {
  return x % 2 === 1;
}

// Sizes may exceed 2^32, where JavaScript's >> would truncate; halve arithmetically.
export function half(x: number): number {
  return Math.floor(x / 2);
}

export function isSize(x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0;
}

export function isHash(x: unknown): x is Hash {
  return x instanceof Uint8Array && x.length === HASH_SIZE;
}
