import { afterAll, describe, expect, it } from "vitest";
import type { PublishedCertificate, UploadCommit } from "../../directory/index.js";
import { scratch } from "../helpers.js";
import Database from "better-sqlite3";
import pg from "pg";
import { parseStoreLocation } from "../../directory/index.js";
import { dump, testStores, type StoreKind } from "./stores.js";

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

/** The store's own contract, on one store kind (store.test.ts: SQLite, store-pg.test.ts: PostgreSQL). */
export function storeSuite(kind: StoreKind): void {
  const s = scratch(`directory-store-${kind}`);
  const stores = testStores(kind, s.dir);
  afterAll(() => s.cleanup());

  describe(`the ${kind} directory store`, () => {
    it("registers an allocation whole or not at all, and refuses another list with the same id", async () => {
      const path = stores.fresh("alloc");
      const store = await stores.open(path);
      try {
        expect(await store.addAllocation({ allocationId: "a1", station: "station-1", digest: "d1", serials: ["SN1", "SN2"] }, "t")).toEqual({ added: true, count: 2 });
        expect(await store.addAllocation({ allocationId: "a1", station: "station-1", digest: "d1", serials: ["SN1", "SN2"] }, "t")).toEqual({ added: false, count: 2 });
        const before = await dump(path);
        await expect(store.addAllocation({ allocationId: "a2", station: "station-2", digest: "d2", serials: ["SN3", "SN2"] }, "t")).rejects.toMatchObject({ code: "ALLOCATION_CONFLICT" });
        await expect(store.addAllocation({ allocationId: "a1", station: "station-1", digest: "other", serials: ["SN9"] }, "t")).rejects.toMatchObject({ code: "ALLOCATION_CONFLICT" });
        expect(await dump(path)).toEqual(before);
        expect(await store.allocationOf("SN3")).toBeUndefined();
      } finally {
        await store.close();
      }
    });

    it("commits an upload only on the checkpoint it was verified against, and rolls back a conflict found inside the transaction", async () => {
      const path = stores.fresh("commit");
      const store = await stores.open(path);
      try {
        expect(await store.commitUpload(commit(undefined, 5, 1, [cert("SN1", "f1", 5)]))).toMatchObject({ ok: true, checkpointAdvanced: true, published: ["SN1"] });
        const before = await dump(path);
        // Verified against "no checkpoint yet", but another upload got in first.
        expect(await store.commitUpload(commit(undefined, 7, 2, [cert("SN2", "f2", 7)]))).toEqual({ ok: false, reason: "STALE" });
        // Verified against a checkpoint that is not the latest.
        expect(await store.commitUpload(commit({ size: 5, root: hash(3) }, 7, 2, [cert("SN2", "f2", 7)]))).toEqual({ ok: false, reason: "STALE" });
        // SN1 is held by another certificate: nothing of the upload stays, not even its checkpoint.
        expect(await store.commitUpload(commit({ size: 5, root: hash(1) }, 7, 2, [cert("SN2", "f2", 7), cert("SN1", "other", 7)]))).toEqual({ ok: false, reason: "CONFLICT", serial: "SN1" });
        expect(await dump(path)).toEqual(before);
        expect(await store.commitUpload(commit({ size: 5, root: hash(1) }, 7, 2, [cert("SN2", "f2", 7), cert("SN1", "f1", 5)]))).toMatchObject({ ok: true, published: ["SN2"], alreadyPublished: ["SN1"] });
        expect((await store.latestCheckpoint("station-1"))?.size).toBe(7);
        expect((await store.certificate("SN1"))?.checkpointSize).toBe(5);
        expect(await store.published("SN2")).toEqual({ der: Buffer.from([1, 2, 3]), fingerprint: "f2" });
        expect(await store.published("SN9")).toBeUndefined();
      } finally {
        await store.close();
      }
    });
  
    it("refuses a store whose schema a newer idmint migrated, naming both versions", async () => {
      const location = stores.fresh("newer");
      await (await stores.open(location)).close();
      const where = parseStoreLocation(location);
      if (where.kind === "sqlite") {
        const db = new Database(where.path);
        db.prepare("INSERT INTO schema_migrations (module, version) VALUES ('directory', 99)").run();
        db.close();
      } else {
        const client = new pg.Client({ connectionString: where.url });
        await client.connect();
        await client.query("INSERT INTO directory_schema (version, name) VALUES (99, '099-future.sql')");
        await client.end();
      }
      await expect(stores.open(location)).rejects.toMatchObject({ code: "SCHEMA_TOO_NEW", kind: "state", message: expect.stringMatching(/schema version 99, newer than this idmint's 1: run the idmint that migrated it/) });
    });
  });
}
