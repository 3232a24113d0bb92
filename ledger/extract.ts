import { openCheckpoint, type Checkpoint } from "./checkpoint.js";
import { decodeEntry, type LedgerEntry } from "./entry.js";
import { hashLeaf, rootFromLeafHashes } from "./merkle.js";

export interface LedgerExtract {
  checkpoint: Checkpoint;
  /** Whether the entries are exactly the tree the signed checkpoint commits to. */
  matchesCheckpoint: boolean;
  entries: LedgerEntry[];
  /** Indices of entries that are not well-formed. */
  malformed: number[];
}

/**
 * Opens a copy of a ledger handed to someone else (a usage report carries one): the
 * checkpoint's signature must verify with the station key (else this throws), and the
 * entries are checked against it by recomputing the whole tree.
 */
export function openExtract(bodies: readonly Uint8Array[], checkpointNote: string, origin: string, stationSpki: Uint8Array): LedgerExtract {
  const checkpoint = openCheckpoint(checkpointNote, origin, stationSpki);
  const matchesCheckpoint = bodies.length === checkpoint.size && Buffer.from(rootFromLeafHashes(bodies.map((b) => hashLeaf(b)))).equals(Buffer.from(checkpoint.root));
  const entries: LedgerEntry[] = [];
  const malformed: number[] = [];
  bodies.forEach((b, i) => {
    try {
      entries.push(decodeEntry(b));
    } catch {
      malformed.push(i);
    }
  });
  return { checkpoint, matchesCheckpoint, entries, malformed };
}
