import { openCheckpoint, type Checkpoint } from "./checkpoint.js";
import { decodeEntry, type LedgerEntry } from "./entry.js";
import { LedgerError } from "./errors.js";
import { hashLeaf } from "./merkle.js";
import { verifyInclusion } from "./merkle-verify.js";
import type { Ledger } from "./store.js";

/**
 * What `idmint ledger prove` hands out: one entry, the signed checkpoint, and the RFC 9162
 * inclusion path between them, plus the station certificate so that a third party with only
 * the vendor root can check it offline.
 */
export interface InclusionBundle {
  format: "idmint-inclusion/1";
  origin: string;
  index: number;
  /** The entry's canonical bytes, base64. */
  entry: string;
  /** The signed checkpoint note. */
  checkpoint: string;
  proof: string[];
  stationCertificate: string;
}

export function proveEntry(ledger: Ledger, index: number, origin: string, stationCertificatePem: string): InclusionBundle {
  const latest = ledger.latestCheckpoint();
  if (!latest) throw new LedgerError("NO_CHECKPOINT", "the ledger has no checkpoint yet: run `idmint ledger checkpoint` first");
  if (index >= latest.size) {
    throw new LedgerError("NOT_COVERED", `entry ${index} is newer than the latest checkpoint (size ${latest.size}): run \`idmint ledger checkpoint\` first`);
  }
  const body = ledger.entryBytes(index);
  return {
    format: "idmint-inclusion/1",
    origin,
    index,
    entry: body.toString("base64"),
    checkpoint: latest.note,
    proof: ledger.inclusionProof(index, latest.size).map((h) => Buffer.from(h).toString("base64")),
    stationCertificate: stationCertificatePem,
  };
}

/**
 * Checks a bundle against a station key the caller already trusts (the CLI checks the
 * bundle's station certificate against the vendor root first). Everything in the bundle is
 * attacker-controlled.
 */
export function verifyBundle(bundle: InclusionBundle, stationSpki: Uint8Array): { entry: LedgerEntry; checkpoint: Checkpoint } {
  const bad = (why: string) => new LedgerError("PROOF_INVALID", `the inclusion proof is invalid: ${why}`);
  if (bundle?.format !== "idmint-inclusion/1" || !Number.isSafeInteger(bundle.index) || !Array.isArray(bundle.proof) || typeof bundle.entry !== "string" || typeof bundle.checkpoint !== "string") {
    throw bad("it is not an idmint-inclusion/1 document");
  }
  const checkpoint = openCheckpoint(bundle.checkpoint, bundle.origin, stationSpki);
  const body = Buffer.from(bundle.entry, "base64");
  const entry = decodeEntry(body);
  if (entry.index !== bundle.index) throw bad(`the entry says it is entry ${entry.index}, the proof is for ${bundle.index}`);
  const proof = bundle.proof.map((p) => new Uint8Array(Buffer.from(String(p), "base64")));
  if (!verifyInclusion(bundle.index, checkpoint.size, hashLeaf(body), proof, checkpoint.root)) {
    throw bad(`entry ${bundle.index} is not in the checkpoint of size ${checkpoint.size}`);
  }
  return { entry, checkpoint };
}
