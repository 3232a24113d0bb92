import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fixedClock, openDb, systemClock, type Clock, type Db } from "../../core/index.js";
import { Ledger } from "../../ledger/index.js";
import { SerialStore, expandSerials, type Allocation } from "../../serials/index.js";
import { REPO, scratch } from "../helpers.js";

const s = scratch("serials-store");
let db: Db;
let ledger: Ledger;
let store: SerialStore;
const now = new Date("2026-11-23T12:00:00.000Z");

function allocation(id: string, start: number, count: number, over: Partial<Allocation> = {}): Allocation {
  return {
    format: "idmint-allocation/1",
    allocationId: id,
    order: "PO-1",
    station: "station-1",
    model: "RT-1",
    notBefore: "2026-01-01T00:00:00.000Z",
    notAfter: "2027-01-01T00:00:00.000Z",
    count,
    ranges: [{ prefix: "SN", start, count, width: 6 }],
    createdAt: "2026-01-01T00:00:00.000Z",
    ...over,
  };
}

function open(clock: Clock = fixedClock(now)): SerialStore {
  return new SerialStore(db, ledger, clock);
}

/** Nothing consumed: the same counts and the same ledger size after the refused call. */
function expectNothingConsumed(fn: () => unknown, code: string): void {
  const before = { status: JSON.stringify(store.status()), ledger: ledger.size() };
  expect(fn).toThrowError(expect.objectContaining({ code }));
  expect({ status: JSON.stringify(store.status()), ledger: ledger.size() }).toEqual(before);
}

beforeAll(() => {
  db = openDb(join(s.dir, "station.db"));
  ledger = new Ledger(db, fixedClock(now));
  store = open();
  store.importAllocation(allocation("alloc-a", 1, 5), "{}", "station-1");
});
afterAll(() => {
  db?.close();
  s.cleanup();
});

describe("serial consumption", () => {
  it("imports once: the same list again is a no-op, with one ledger entry", () => {
    expect(store.importAllocation(allocation("alloc-a", 1, 5), "{}", "station-1")).toEqual({ imported: false, count: 5 });
    expect(store.status()).toEqual([expect.objectContaining({ allocationId: "alloc-a", allocated: 5, available: 5 })]);
    expect(ledger.entry(0).event).toMatchObject({ type: "allocation.imported", allocationId: "alloc-a", count: 5 });
  });

  it("refuses another station's list, an expired one, an overlapping one and a changed one with a reused id", () => {
    expectNothingConsumed(() => store.importAllocation(allocation("alloc-b", 100, 5, { station: "station-2" }), "{}", "station-1"), "ALLOCATION_STATION");
    expectNothingConsumed(() => store.importAllocation(allocation("alloc-c", 100, 5, { notAfter: "2026-06-01T00:00:00.000Z" }), "{}", "station-1"), "ALLOCATION_WINDOW");
    expectNothingConsumed(() => store.importAllocation(allocation("alloc-d", 4, 5), "{}", "station-1"), "ALLOCATION_OVERLAP");
    expectNothingConsumed(() => store.importAllocation(allocation("alloc-a", 1, 5, { model: "RT-2" }), "{}", "station-1"), "ALLOCATION_CONFLICT");
  });

  it("reserves, provisions and scraps, each with its ledger entry", () => {
    expect(store.reserve("SN000001", "run-1")).toMatchObject({ state: "reserved", owner: "run-1" });
    expect(store.reserve("SN000001", "run-1").state).toBe("reserved");
    db.transaction(() => store.markProvisioned("SN000001", "run-1", "ff".repeat(32)))();
    store.scrap("SN000002", "failed RF test");
    expect(store.get("SN000001")).toMatchObject({ state: "provisioned", certificateFingerprint: "ff".repeat(32) });
    expect(store.get("SN000002")).toMatchObject({ state: "scrapped", reason: "failed RF test" });
    const types = Array.from({ length: ledger.size() }, (_, i) => ledger.entry(i).event.type);
    expect(types).toEqual(["allocation.imported", "serial.reserved", "serial.scrapped"]);
  });

  it("refuses, consuming nothing: a serial in no allocation, a provisioned one, a scrapped one, one reserved by another run", () => {
    expectNothingConsumed(() => store.reserve("SN999999", "run-1"), "SERIAL_UNKNOWN");
    expectNothingConsumed(() => store.reserve("SN000001", "run-2"), "SERIAL_PROVISIONED");
    expectNothingConsumed(() => store.reserve("SN000002", "run-1"), "SERIAL_SCRAPPED");
    store.reserve("SN000003", "run-1");
    expectNothingConsumed(() => store.reserve("SN000003", "run-2"), "SERIAL_RESERVED");
    expectNothingConsumed(() => store.scrap("SN000002", "again"), "SERIAL_SCRAPPED");
  });

  it("refuses a serial whose allocation expired since the import", () => {
    const later = open(fixedClock(new Date("2027-02-01T00:00:00.000Z")));
    expectNothingConsumed(() => later.reserve("SN000004", "run-1"), "ALLOCATION_WINDOW");
    expectNothingConsumed(() => later.reserveNext("run-1"), "ALLOCATION_EXHAUSTED");
  });

  it("hands out the rest in order, then refuses an exhausted allocation", () => {
    expect(store.reserveNext("run-1", "alloc-a").serial).toBe("SN000004");
    expect(store.reserveNext("run-1").serial).toBe("SN000005");
    expectNothingConsumed(() => store.reserveNext("run-1", "alloc-a"), "ALLOCATION_EXHAUSTED");
  });

  it("gives a released serial back, with the reason in the ledger", () => {
    store.release("SN000005", "run-1", "unit did not answer");
    expect(store.get("SN000005")!.state).toBe("available");
    expect(ledger.entry(ledger.size() - 1).event).toEqual({ type: "serial.released", serial: "SN000005", reason: "unit did not answer" });
  });
});

describe("two station processes on one home", () => {
  /** Starts one racer; resolves `ready` once its store is open, `won` with the serials it reserved. */
  function reserver(dbPath: string, owner: string, serials: string[]): { ready: Promise<void>; go: () => void; won: Promise<string[]> } {
    const child = spawn(process.execPath, ["--import", "tsx", join(REPO, "test/fixtures/reserver.ts"), dbPath, owner, JSON.stringify(serials)], { cwd: REPO });
    let out = "";
    let err = "";
    let signalReady: () => void;
    const ready = new Promise<void>((resolve) => (signalReady = resolve));
    child.stdout.on("data", (d) => {
      out += d;
      if (out.startsWith("ready\n")) signalReady();
    });
    child.stderr.on("data", (d) => (err += d));
    const won = new Promise<string[]>((resolve, reject) =>
      child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out.slice("ready\n".length)) as string[]) : reject(new Error(err)))),
    );
    return { ready, go: () => child.stdin.write("go\n"), won };
  }

  it("race 2,000 reservation attempts over 1,000 serials: each serial is reserved exactly once", async () => {
    const path = join(s.dir, "race.db");
    const raceDb = openDb(path);
    const raceLedger = new Ledger(raceDb, systemClock);
    const a = allocation("alloc-race", 1, 1000);
    new SerialStore(raceDb, raceLedger, systemClock).importAllocation({ ...a, notAfter: "2999-01-01T00:00:00.000Z" }, "{}", "station-1");
    raceDb.close();
    const serials = expandSerials(a);
    const shuffled = [...serials].sort((x, y) => ((x.charCodeAt(7) * 31 + x.charCodeAt(6)) % 7) - ((y.charCodeAt(7) * 31 + y.charCodeAt(6)) % 7) || x.localeCompare(y));
    const racers = [reserver(path, "station-proc-1", serials), reserver(path, "station-proc-2", shuffled)];
    await Promise.all(racers.map((r) => r.ready));
    for (const r of racers) r.go();
    const [one, two] = (await Promise.all(racers.map((r) => r.won))) as [string[], string[]];
    expect(one.length + two.length).toBe(1000);
    expect(new Set([...one, ...two]).size).toBe(1000);

    const check = openDb(path);
    try {
      const owners = Object.fromEntries((check.prepare("SELECT owner, COUNT(*) AS n FROM serials GROUP BY owner").all() as Array<{ owner: string; n: number }>).map((r) => [r.owner, r.n]));
      expect(owners["station-proc-1"] ?? 0).toBe(one.length);
      expect(owners["station-proc-2"] ?? 0).toBe(two.length);
      const reservations = check.prepare("SELECT COUNT(*) FROM ledger_entries WHERE type = 'serial.reserved'").pluck().get();
      expect(reservations).toBe(1000);
    } finally {
      check.close();
    }
  });
});
