import { afterAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { openDirectoryStore, type PublishedCertificate, type UploadCommit } from "../../directory/index.js";
import { scratch } from "../helpers.js";
import { dump } from "./fixture.js";

const s = scratch("directory-store");
afterAll(() => s.cleanup());

const hash = (b: number) => new Uint8Array(32).fill(b);

function cert(serial: string, fingerprint: string, checkpointSize: number): PublishedCertificate {
  return {
    serial,
    der: new Uint8Array([1, 2, 3]),
    fingerprint,
    certificateSerial: "40",
    station: "station-1",
    ledgerIndex: 0,
    entry: new Uint8Array([4]),
    checkpointSize,
    inclusionProof: [hash(9)],
    issuedAt: "2026-01-01T00:00:00Z",
    publishedAt: "2026-01-01T00:00:00Z",
  };
}

function commit(expected: UploadCommit["expected"], size: number, root: number, certificates: PublishedCertificate[]): UploadCommit {
  return { station: "station-1", expected, checkpoint: { size, root: hash(root), note: `note ${size}`, stationCertificate: "PEM" }, certificates, at: "2026-01-01T00:00:00Z" };
}

describe("the SQLite directory store", () => {
  it("registers an allocation whole or not at all, and refuses another list with the same id", async () => {
    const path = join(s.dir, "alloc.db");
    const store = openDirectoryStore(path);
    try {
      expect(await store.addAllocation({ allocationId: "a1", station: "station-1", digest: "d1", serials: ["SN1", "SN2"] }, "t")).toEqual({ added: true, count: 2 });
      expect(await store.addAllocation({ allocationId: "a1", station: "station-1", digest: "d1", serials: ["SN1", "SN2"] }, "t")).toEqual({ added: false, count: 2 });
      const before = dump(path);
      await expect(store.addAllocation({ allocationId: "a2", station: "station-2", digest: "d2", serials: ["SN3", "SN2"] }, "t")).rejects.toMatchObject({ code: "ALLOCATION_CONFLICT" });
      await expect(store.addAllocation({ allocationId: "a1", station: "station-1", digest: "other", serials: ["SN9"] }, "t")).rejects.toMatchObject({ code: "ALLOCATION_CONFLICT" });
      expect(dump(path)).toEqual(before);
      expect(await store.allocationOf("SN3")).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it("commits an upload only on the checkpoint it was verified against, and rolls back a conflict found inside the transaction", async () => {
    const path = join(s.dir, "commit.db");
    const store = openDirectoryStore(path);
    try {
      expect(await store.commitUpload(commit(undefined, 5, 1, [cert("SN1", "f1", 5)]))).toMatchObject({ ok: true, checkpointAdvanced: true, published: ["SN1"] });
      const before = dump(path);
      // Verified against "no checkpoint yet", but another upload got in first.
      expect(await store.commitUpload(commit(undefined, 7, 2, [cert("SN2", "f2", 7)]))).toEqual({ ok: false, reason: "STALE" });
      // Verified against a checkpoint that is not the latest.
      expect(await store.commitUpload(commit({ size: 5, root: hash(3) }, 7, 2, [cert("SN2", "f2", 7)]))).toEqual({ ok: false, reason: "STALE" });
      // SN1 is held by another certificate: nothing of the upload stays, not even its checkpoint.
      expect(await store.commitUpload(commit({ size: 5, root: hash(1) }, 7, 2, [cert("SN2", "f2", 7), cert("SN1", "other", 7)]))).toEqual({ ok: false, reason: "CONFLICT", serial: "SN1" });
      expect(dump(path)).toEqual(before);
      expect(await store.commitUpload(commit({ size: 5, root: hash(1) }, 7, 2, [cert("SN2", "f2", 7), cert("SN1", "f1", 5)]))).toMatchObject({ ok: true, published: ["SN2"], alreadyPublished: ["SN1"] });
      expect((await store.latestCheckpoint("station-1"))?.size).toBe(7);
      expect((await store.certificate("SN1"))?.checkpointSize).toBe(5);
    } finally {
      await store.close();
    }
  });
});
