import { sameBytes } from "../pki/index.js";
import { HASH_SIZE, half, hashChildren, isHash, isOdd, isSize, type Hash } from "./merkle.js";

// A valid inclusion path holds one hash per level, and tree sizes are capped by
// Number.MAX_SAFE_INTEGER (< 2^53); a consistency path holds at most one more. Anything longer
// is rejected before any hashing, so a hostile proof cannot buy unbounded work.
export const MAX_INCLUSION_PATH = 64;
export const MAX_CONSISTENCY_PATH = 65;

// ---------------------------------------------------------------------------------------------
// Verification. Every argument is attacker-controlled (proofs and roots arrive from the network
// or from a possibly tampered store), so each is type- and length-checked, hashes are compared
// in constant time, and any malformed or failing input yields false. These never throw.
// ---------------------------------------------------------------------------------------------

function isPath(x: unknown, max: number): x is readonly Hash[] {
  if (!Array.isArray(x) || x.length > max) return false;
  // An indexed loop, not every(): every() skips the holes of a sparse array.
  for (let i = 0; i < x.length; i++) if (!isHash(x[i])) return false;
  return true;
}

function hashesEqual(a: Hash, b: Hash): boolean {
  return a.length === HASH_SIZE && sameBytes(a, b);
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
    if (size1 === size2) return proof.length === 0 && sameBytes(root1, root2);
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
