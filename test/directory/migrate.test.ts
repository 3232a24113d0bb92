import { afterAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import type { PublishedCertificate, UploadCommit } from "../../directory/index.js";
import { oneLineError, scratch } from "../helpers.js";
import { directoryCli } from "./fixture.js";
import { dump, onStore, testStores } from "./stores.js";

const hash = (b: number) => new Uint8Array(32).fill(b);

function cert(station: string, serial: string, checkpointSize: number): PublishedCertificate {
  return {
    serial,
    der: new Uint8Array([1, 2, serial.length]),
    fingerprint: `fp-${serial}`,
    certificateSerial: "40",
    station,
    ledgerIndex: checkpointSize - 1,
    entry: new Uint8Array([4]),
    checkpointSize,
    inclusionProof: [hash(9)],
    issuedAt: "2026-01-01T00:00:00Z",
    publishedAt: "2026-01-01T00:00:00Z",
  };
}

/** Rows as compared across the two stores: ids and PostgreSQL's seq aside, every value as text, in one order. */
function comparable(d: Record<string, unknown[]>): Record<string, string[]> {
  return Object.fromEntries(
    Object.entries(d).map(([table, rows]) => [
      table,
      (rows as Array<Record<string, unknown>>).map((r) => JSON.stringify(Object.entries(r).filter(([k]) => k !== "seq" && k !== "id").map(([k, v]) => [k, String(v)]))).sort(),
    ]),
  );
}

onStore("postgres", () => {
  const s = scratch("directory-migrate");
  const sqlite = testStores("sqlite", s.dir);
  const pg = testStores("postgres", s.dir);
  afterAll(() => s.cleanup());

  describe("idmint directory migrate", () => {
    it("moves every certificate, checkpoint, allocation and conflict from SQLite into an empty PostgreSQL, verified; a second run into it is refused", async () => {
      const from = sqlite.fresh("source");
      const store = await sqlite.open(from);
      try {
        for (const [station, prefix] of [["station-1", "SN"], ["station-2", "SB"]] as const) {
          const serials = Array.from({ length: 30 }, (_, i) => `${prefix}${String(i + 1).padStart(6, "0")}`);
          await store.addAllocation({ allocationId: `alloc-${station}`, station, digest: `d-${station}`, serials }, "t");
          let expected: UploadCommit["expected"];
          // Three uploads a station: a chain of three checkpoints, ten certificates each.
          for (let k = 1; k <= 3; k++) {
            const size = k * 10;
            const root = hash(k + (station === "station-1" ? 0 : 100));
            const outcome = await store.commitUpload({
              station,
              expected,
              checkpoint: { size, root, note: `note ${station} ${size}`, stationCertificate: "PEM" },
              certificates: serials.slice(size - 10, size).map((serial) => cert(station, serial, size)),
              at: "t",
            });
            expect(outcome.ok).toBe(true);
            expected = { size, root };
          }
        }
        await store.recordConflicts([{ ...cert("station-1", "SN000001", 10), fingerprint: "other", checkpointNote: "note", heldFingerprint: "fp-SN000001", receivedAt: "t" }]);
      } finally {
        await store.close();
      }
      const to = pg.fresh("target");
      const home = join(s.dir, "home");

      const r = directoryCli(home, "migrate", "--from", from, "--to", to, "--json");
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({
        rows: { directory_allocations: 2, directory_serials: 60, directory_checkpoints: 6, directory_certificates: 60, directory_conflicts: 1 },
        stations: 2,
      });
      expect(comparable(await dump(to))).toEqual(comparable(await dump(from)));
      const moved = await pg.open(to);
      try {
        expect((await moved.latestCheckpoint("station-2"))?.size).toBe(30);
        expect(await moved.certificate("SB000017")).toMatchObject({ fingerprint: "fp-SB000017", checkpointSize: 20 });
        expect(await moved.conflicts("SN000001")).toHaveLength(1);
      } finally {
        await moved.close();
      }

      const again = directoryCli(home, "migrate", "--from", from, "--to", to);
      expect(again.code).toBe(5);
      expect(oneLineError(again)).toMatch(/already holds a directory .*: migrate into an empty database/);
      const wrongWay = directoryCli(home, "migrate", "--from", to, "--to", from);
      expect(wrongWay.code).toBe(2);
      const password = directoryCli(home, "migrate", "--from", from, "--to", "postgres://idmint:secret@localhost/directory");
      expect(password.code).toBe(2);
      expect(oneLineError(password)).toMatch(/carries a password.*IDMINT_DIRECTORY_DB/);
      const help = directoryCli(home, "migrate", "--help");
      expect(help.stdout).toMatch(/Examples:\n\s+idmint directory migrate --from sqlite:/);
    });
  });
});
