import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { openDb, systemClock } from "../../core/index.js";
import { Ledger } from "../../ledger/index.js";
import { SerialStore, type Allocation } from "../../serials/index.js";
import { GroupCommitter, UnitStore, type UnitChange } from "../../station/index.js";
import { scratch } from "../helpers.js";

const s = scratch("group-commit");
afterAll(() => s.cleanup());
const owner = "station:station-1";
let path: string;
let n = 0;

/** A station store with SN000001..SN000010 allocated to station-1, as `serials import` leaves it. */
beforeEach(() => {
  path = join(s.dir, `station-${n++}.db`);
  const db = openDb(path);
  try {
    const ledger = new Ledger(db, systemClock);
    const serials = new SerialStore(db, ledger, systemClock);
    new UnitStore(db, systemClock);
    const now = Date.now();
    const allocation: Allocation = {
      format: "idmint-allocation/1",
      allocationId: "a-1",
      order: "PO-1",
      station: "station-1",
      model: "RT-1",
      notBefore: new Date(now - 86_400_000).toISOString(),
      notAfter: new Date(now + 86_400_000).toISOString(),
      count: 10,
      ranges: [{ prefix: "SN", start: 1, count: 10, width: 6 }],
      createdAt: new Date(now).toISOString(),
    };
    serials.importAllocation(allocation, JSON.stringify(allocation), "station-1");
  } finally {
    db.close();
  }
});

/** The intent change for `serial` with a key and certificate serial of its own (the serial's digits). */
function intent(serial: string, keyFingerprint = serial.slice(-2).repeat(32)): UnitChange {
  return { op: "intent", serial, keyFingerprint, certificateSerial: serial.slice(-2).repeat(16) };
}

/** What another connection sees: committed state only. */
function committed(): { reserved: string[]; ledger: string[] } {
  const db = new Database(path, { readonly: true });
  try {
    return {
      reserved: db.prepare("SELECT serial FROM serials WHERE state = 'reserved' ORDER BY serial").pluck().all() as string[],
      ledger: db.prepare("SELECT type || ' ' || serial FROM ledger_entries WHERE type <> 'allocation.imported' ORDER BY idx").pluck().all() as string[],
    };
  } finally {
    db.close();
  }
}

describe("GroupCommitter", () => {
  it("commits the changes asked for in one turn together, each settling only once it is committed", async () => {
    const commits = new GroupCommitter({ dbPath: path, owner });
    try {
      const seen: string[][] = [];
      const all = ["SN000001", "SN000002", "SN000003"].map((serial) => commits.commit(intent(serial)).then(() => seen.push(committed().reserved)));
      await Promise.all(all);
      const three = ["SN000001", "SN000002", "SN000003"];
      expect(seen).toEqual([three, three, three]);
      expect(commits.stats).toEqual({ commits: 1, changes: 3 });
      expect(committed().ledger).toEqual(three.flatMap((x) => [`serial.reserved ${x}`, `signing.intent ${x}`]));
    } finally {
      await commits.close();
    }
  });

  it("undoes a refused change alone: the others in its group commit", async () => {
    const commits = new GroupCommitter({ dbPath: path, owner });
    try {
      const results = await Promise.allSettled([
        commits.commit(intent("SN000001", "ab".repeat(32))),
        commits.commit(intent("XX000001", "cd".repeat(32))),
        commits.commit(intent("SN000002", "ab".repeat(32))),
      ]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected"]);
      expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: "SERIAL_UNKNOWN", kind: "verify", message: expect.stringMatching(/^serial XX000001 is in no imported allocation/) });
      // The third unit presented the first one's key: refused with the first one named, and nothing of it recorded (not even its serial's reservation).
      expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: "KEY_REUSED", kind: "verify", message: expect.stringMatching(/^unit SN000002 presented the public key unit SN000001 already presented/) });
      expect(committed()).toEqual({
        reserved: ["SN000001"],
        ledger: ["serial.reserved SN000001", "signing.intent SN000001"],
      });
      // The refused serial's key was not recorded either: a unit with a good serial may present it.
      await expect(commits.commit(intent("SN000003", "cd".repeat(32)))).resolves.toBeUndefined();
    } finally {
      await commits.close();
    }
  });

  it("rejects every change of a group whose commit fails, and makes none of them", async () => {
    const commits = new GroupCommitter({ dbPath: path, owner, busyTimeoutMs: 0 });
    await commits.commit(intent("SN000009"));
    // Another connection holds the write lock: the writer's BEGIN IMMEDIATE fails at once.
    const other = new Database(path, { timeout: 0 });
    other.exec("BEGIN IMMEDIATE");
    try {
      const results = await Promise.allSettled([commits.commit(intent("SN000001")), commits.commit(intent("SN000002"))]);
      expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
      expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: "SQLITE_BUSY" });
      other.exec("ROLLBACK");
      expect(committed().reserved).toEqual(["SN000009"]);
      await commits.commit(intent("SN000003"));
      expect(committed().reserved).toEqual(["SN000003", "SN000009"]);
    } finally {
      if (other.inTransaction) other.exec("ROLLBACK");
      other.close();
      await commits.close();
    }
  });

  it("copies each issued unit's certificate before its delivery is recorded; a copy that fails fails that delivery alone", async () => {
    const certsDir = join(s.dir, `certs-${n}`);
    mkdirSync(join(certsDir, "SN000002.pem"), { recursive: true }); // a directory where the copy goes: rename fails
    const issue = async (commits: GroupCommitter, serials: string[]) => {
      for (const [i, serial] of serials.entries()) {
        await commits.commit({ op: "intent", serial, keyFingerprint: serial.slice(-1).repeat(64), certificateSerial: String(i + 4).repeat(32) });
        await commits.commit({ op: "issued", serial, certificateSerial: String(i + 4).repeat(32), pem: `PEM ${serial}\n`, fingerprint: String(i + 7).repeat(64) });
      }
    };
    const deliver = (commits: GroupCommitter, serials: string[]) => Promise.allSettled(serials.map((serial) => commits.commit({ op: "delivered", serial, pem: `PEM ${serial}\n`, fingerprint: "f".repeat(64) })));
    // SN000003 is issued by a run that stops before delivering it.
    const earlier = new GroupCommitter({ dbPath: path, owner, certsDir });
    await issue(earlier, ["SN000003"]);
    await earlier.close();
    rmSync(join(certsDir, "SN000003.pem"));

    const commits = new GroupCommitter({ dbPath: path, owner, certsDir });
    try {
      await issue(commits, ["SN000001", "SN000002"]);
      expect(readFileSync(join(certsDir, "SN000001.pem"), "utf8")).toBe("PEM SN000001\n"); // copied once issued, before delivery
      const results = await deliver(commits, ["SN000001", "SN000002", "SN000003"]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
      expect((results[1] as PromiseRejectedResult).reason).toMatchObject({
        code: "CERT_COPY",
        kind: "state",
        message: expect.stringMatching(/^cannot write .*SN000002\.pem \(EISDIR\): make the home's certs directory writable/),
      });
      // The resumed unit is copied at its delivery.
      expect(readFileSync(join(certsDir, "SN000003.pem"), "utf8")).toBe("PEM SN000003\n");
      expect(readdirSync(certsDir).sort()).toEqual(["SN000001.pem", "SN000002.pem", "SN000003.pem"]); // no temporary left behind
      expect(committed().ledger.filter((e) => e.startsWith("unit.delivered"))).toEqual(["unit.delivered SN000001", "unit.delivered SN000003"]);
    } finally {
      await commits.close();
    }
  });

  it("records a failed unit whether or not it got as far as its intent, and gives back only a serial the station holds", async () => {
    const commits = new GroupCommitter({ dbPath: path, owner });
    const failed = (serial: string, releaseSerial: boolean) => commits.commit({ op: "failed", serial, code: "CSR_SIGNATURE", message: "bad", releaseSerial });
    try {
      await commits.commit(intent("SN000001"));
      await commits.commit(intent("SN000002"));
      await commits.commit({ op: "issued", serial: "SN000002", certificateSerial: "02".repeat(16), pem: "PEM SN000002\n", fingerprint: "2".repeat(64) });
      await failed("SN000001", true); // failed after its intent: the serial goes back
      await failed("SN000003", true); // failed before it: never reserved, nothing to give back
      await failed("SN000002", false); // failed after its certificate was stored: it keeps it
      expect(committed()).toEqual({
        reserved: [],
        ledger: [
          "serial.reserved SN000001",
          "signing.intent SN000001",
          "serial.reserved SN000002",
          "signing.intent SN000002",
          "certificate.issued SN000002",
          "error SN000001",
          "serial.released SN000001",
          "error SN000003",
          "error SN000002",
        ],
      });
      const db = new Database(path, { readonly: true });
      try {
        expect(db.prepare("SELECT serial, stage FROM units ORDER BY serial").all()).toEqual([
          { serial: "SN000001", stage: "failed" },
          { serial: "SN000002", stage: "issued" },
          { serial: "SN000003", stage: "failed" },
        ]);
      } finally {
        db.close();
      }
      // A unit whose certificate is on record is never signed for again: its serial is spent.
      await expect(commits.commit(intent("SN000002", "ee".repeat(32)))).rejects.toMatchObject({ code: "SERIAL_PROVISIONED" });
    } finally {
      await commits.close();
    }
  });

  it("logs a unit failing the same way again only as a count on its row; another failure, or one after a delivery, in full", async () => {
    const commits = new GroupCommitter({ dbPath: path, owner });
    const failed = (serial: string, code: string, releaseSerial = true) => commits.commit({ op: "failed", serial, code, message: `${code} at ${serial}`, releaseSerial });
    const row = () => {
      const db = new Database(path, { readonly: true });
      try {
        return db.prepare("SELECT serial, stage, failure_code AS code, failure_message AS message, failure_repeats AS repeats FROM units ORDER BY serial").all();
      } finally {
        db.close();
      }
    };
    try {
      for (let i = 0; i < 3; i++) await failed("SN000001", "CSR_SIGNATURE");
      await failed("SN000001", "UNIT_TIMEOUT");
      await failed("SN000001", "UNIT_TIMEOUT");
      expect(row()).toEqual([{ serial: "SN000001", stage: "failed", code: "UNIT_TIMEOUT", message: "UNIT_TIMEOUT at SN000001", repeats: 1 }]);
      expect(committed().ledger).toEqual(["error SN000001", "error SN000001"]);

      // Delivered, then claimed again by a clone, over and over: one entry for the clone.
      await commits.commit(intent("SN000001"));
      await commits.commit({ op: "issued", serial: "SN000001", certificateSerial: "01".repeat(16), pem: "PEM SN000001\n", fingerprint: "1".repeat(64) });
      await commits.commit({ op: "delivered", serial: "SN000001", pem: "PEM SN000001\n", fingerprint: "1".repeat(64) });
      expect(row()).toEqual([{ serial: "SN000001", stage: "delivered", code: null, message: null, repeats: 0 }]);
      for (let i = 0; i < 4; i++) await failed("SN000001", "SERIAL_PROVISIONED", false);
      expect(row()).toEqual([{ serial: "SN000001", stage: "delivered", code: "SERIAL_PROVISIONED", message: "SERIAL_PROVISIONED at SN000001", repeats: 3 }]);
      expect(committed().ledger.filter((e) => e.startsWith("error"))).toHaveLength(3);
    } finally {
      await commits.close();
    }
  });

  it("refuses changes once closed", async () => {
    const commits = new GroupCommitter({ dbPath: path, owner });
    await commits.close();
    await expect(commits.commit(intent("SN000001"))).rejects.toThrow(/closed/);
  });

  it("fails every change, one line each, when the writer cannot start", async () => {
    // A directory where the store should be: the writer cannot open it.
    const commits = new GroupCommitter({ dbPath: s.dir, owner });
    try {
      await expect(commits.commit(intent("SN000001"))).rejects.toMatchObject({ code: "STORE_WRITER", message: expect.stringMatching(/^the station store's writer thread failed: [^\n]+$/) });
    } finally {
      await commits.close();
    }
  });

  it("a store damaged under the writer fails its changes as DB_DAMAGED (exit 5), whether found at its start or in a commit", async () => {
    const damaged = { kind: "state", code: "DB_DAMAGED", message: expect.stringContaining(path) };
    // Damage a commit meets: the page of the serials the intent reserves.
    const db = new Database(path);
    const { rootpage, pageSize } = db.prepare("SELECT rootpage, (SELECT page_size FROM pragma_page_size) AS pageSize FROM sqlite_schema WHERE name = 'serials'").get() as { rootpage: number; pageSize: number };
    db.close();
    const bytes = readFileSync(path);
    bytes.fill(0xff, (rootpage - 1) * pageSize, rootpage * pageSize);
    writeFileSync(path, bytes);
    const inCommit = new GroupCommitter({ dbPath: path, owner });
    try {
      await expect(inCommit.commit(intent("SN000001"))).rejects.toMatchObject(damaged);
    } finally {
      await inCommit.close();
    }
    // Damage the writer meets as it opens the store.
    writeFileSync(path, "");
    const atStart = new GroupCommitter({ dbPath: path, owner });
    try {
      await expect(atStart.commit(intent("SN000001"))).rejects.toMatchObject(damaged);
    } finally {
      await atStart.close();
    }
  });
});
