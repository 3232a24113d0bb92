import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Home, openDb, systemClock, systemRandom } from "../../core/index.js";
import { Hsm } from "../../hsm/index.js";
import { Ledger } from "../../ledger/index.js";
import { signDocument, type UsageReport } from "../../serials/index.js";
import { SoftwareUnit } from "../fixtures/software-unit.js";
import { issueFromCsr, withStation } from "../../station/index.js";
import { idmint, idmintInProcess, oneLineError, openssl, scratch, type Run } from "../helpers.js";

const s = scratch("cli-serials");
const homeDir = join(s.dir, "home");
const home = new Home(homeDir);
const rogueHome = join(s.dir, "rogue");
const cli = (...args: string[]): Promise<Run> => idmintInProcess(["--home", homeDir, ...args]);
const file = (name: string) => join(s.dir, name);

async function allocate(name: string, extra: string[], h = homeDir): Promise<string> {
  const out = file(`${name}.json`);
  const r = await idmintInProcess(["--home", h, "serials", "allocate", "--order", `PO-${name}`, "--model", "RT-1", "--out", out, ...extra]);
  if (r.code !== 0) throw new Error(r.stderr);
  return out;
}

async function status(): Promise<unknown> {
  return JSON.parse((await cli("serials", "status", "--json")).stdout);
}

function ledgerSize(): number {
  const db = openDb(home.stationDbPath);
  try {
    return new Ledger(db, systemClock).size();
  } finally {
    db.close();
  }
}

/** Units certified through the station's issue path (what `ca issue` does), each with a key of its own. */
async function provision(serials: string[]): Promise<void> {
  const config = home.readConfig();
  const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
  try {
    await withStation(home, systemClock, async (stores) => {
      for (const serial of serials) {
        const unit = await SoftwareUnit.create(serial, "RT-1");
        await issueFromCsr({ stores, hsm, home, config, clock: systemClock, random: systemRandom, csr: await unit.csr(), serial });
      }
    });
  } finally {
    hsm.close();
  }
}

let main = "";

beforeAll(async () => {
  for (const h of [homeDir, rogueHome]) {
    for (const args of [["hsm", "init"], ["ca", "init"]]) {
      const r = await idmintInProcess(["--home", h, ...args]);
      if (r.code !== 0) throw new Error(r.stderr);
    }
  }
  main = await allocate("main", ["--station", "station-1", "--count", "10", "--prefix", "SN", "--start", "1"]);
  const r = await cli("serials", "import", main);
  if (r.code !== 0) throw new Error(r.stderr);
});
afterAll(() => s.cleanup());

describe("idmint serials allocate", () => {
  it("writes a signed list with compact ranges, and claim codes only as hashes", async () => {
    const out = await allocate("claims", ["--station", "station-1", "--count", "3", "--prefix", "CL", "--start", "7", "--width", "4", "--claim-codes", "--claim-codes-out", file("claims.csv")]);
    const doc = JSON.parse(readFileSync(out, "utf8"));
    expect(doc.payload).toMatchObject({ format: "idmint-allocation/1", station: "station-1", count: 3, ranges: [{ prefix: "CL", start: 7, count: 3, width: 4 }] });
    const codes = readFileSync(file("claims.csv"), "utf8").trim().split("\n");
    expect(codes.map((l) => l.split(",")[0])).toEqual(["CL0007", "CL0008", "CL0009"]);
    expect(Object.keys(doc.payload.claimCodeHashes)).toEqual(["CL0007", "CL0008", "CL0009"]);
    expect(JSON.stringify(doc)).not.toContain(codes[0]!.split(",")[1]);
  });

  it("takes an explicit list from a file", async () => {
    writeFileSync(file("list.txt"), "X-1\nX-7\n\nX-9\n");
    const doc = JSON.parse(readFileSync(await allocate("list", ["--station", "station-1", "--from-file", file("list.txt")]), "utf8"));
    expect(doc.payload).toMatchObject({ count: 3, serials: ["X-1", "X-7", "X-9"] });
  });

  // The real binary, for its contract: the exit code and one "idmint: ..." line, no stack trace.
  it("refuses to allocate a serial twice, and writes nothing", () => {
    const out = file("again.json");
    const r = idmint(["--home", homeDir, "serials", "allocate", "--order", "PO-x", "--station", "station-1", "--model", "RT-1", "--count", "5", "--prefix", "SN", "--start", "8", "--out", out]);
    expect(r.code).toBe(5);
    expect(oneLineError(r)).toMatch(/serial SN000008 is already allocated/);
    expect(existsSync(out)).toBe(false);
  });

  it("an --out or --claim-codes-out it cannot write is refused before anything is signed or registered, and nothing is left", async () => {
    const aFile = file("plain-file");
    writeFileSync(aFile, "not a directory");
    const base = ["serials", "allocate", "--order", "PO-u", "--station", "station-1", "--model", "RT-1", "--count", "3", "--prefix", "UW", "--start", "1"];
    const r = await cli(...base, "--out", join(aFile, "list.json"));
    expect(r.code).toBe(3);
    expect(oneLineError(r)).toMatch(/--out .*plain-file\/list.json cannot be written \(part of its path is a file, not a directory\)/);
    const out = file("uw.json");
    const codes = await cli(...base, "--out", out, "--claim-codes", "--claim-codes-out", "/proc/idmint-claim-codes.csv");
    expect(codes.code).toBe(3);
    expect(oneLineError(codes)).toMatch(/--claim-codes-out \/proc\/idmint-claim-codes.csv cannot be written/);
    expect(existsSync(out)).toBe(false);
    // Nothing was registered: the same serials are allocated now.
    const ok = await cli(...base, "--out", out);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it("refuses bad options with one line", async () => {
    for (const [args, message] of [
      [["--count", "0", "--prefix", "SN", "--start", "1"], /--count must be a whole number/],
      [["--count", "5", "--start", "1"], /--prefix is required/],
      [["--count", "5", "--prefix", "SN", "--start", "1", "--not-after", "someday"], /--not-after someday is not a date/],
      [["--count", "5", "--prefix", "S N", "--start", "900"], /serial "S N000900" is not valid/],
      [["--count", "5", "--prefix", "SN", "--start", "900", "--claim-codes"], /--claim-codes needs --claim-codes-out/],
    ] as const) {
      const out = file("bad.json");
      const r = await cli("serials", "allocate", "--order", "PO-b", "--station", "station-1", "--model", "RT-1", "--out", out, ...args);
      expect(r.code, r.stderr).toBeGreaterThan(0);
      expect(oneLineError(r)).toMatch(message);
      expect(existsSync(out)).toBe(false);
    }
  });
});

describe("idmint serials import refuses, consuming nothing", () => {
  async function refused(list: string, code: number, message: RegExp): Promise<void> {
    const before = { status: await status(), ledger: ledgerSize() };
    const r = await cli("serials", "import", list);
    expect(r.code, r.stderr).toBe(code);
    expect(oneLineError(r)).toMatch(message);
    expect({ status: await status(), ledger: ledgerSize() }).toEqual(before);
  }

  it("a list with one byte changed", async () => {
    const text = readFileSync(main, "utf8").replace('"model": "RT-1"', '"model": "RT-7"');
    writeFileSync(file("tampered.json"), text);
    await refused(file("tampered.json"), 6, /signature on the allocation list does not verify/);
  });

  it("a list signed by a key that does not chain to the root", async () => {
    await refused(await allocate("rogue", ["--station", "station-1", "--count", "3", "--prefix", "RG", "--start", "1"], rogueHome), 6, /does not chain to the vendor root/);
  });

  it("a list signed by the station key instead of the allocation signer", async () => {
    const doc = JSON.parse(readFileSync(main, "utf8"));
    const config = home.readConfig();
    const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
    try {
      const forged = await signDocument({ ...doc.payload, allocationId: "alloc-forged" }, hsm.signer(config.keys.station), readFileSync(home.pkiFile("station"), "utf8"));
      writeFileSync(file("forged.json"), JSON.stringify(forged));
    } finally {
      hsm.close();
    }
    await refused(file("forged.json"), 6, /not an allocation signer certificate/);
  });

  it("another station's list", async () => {
    await refused(await allocate("other", ["--station", "station-2", "--count", "3", "--prefix", "OT", "--start", "1"]), 6, /is for station station-2, not station-1/);
  });

  it("an expired list", async () => {
    await refused(await allocate("expired", ["--station", "station-1", "--count", "3", "--prefix", "EX", "--start", "1", "--not-before", "2020-01-01", "--not-after", "2020-12-31"]), 6, /valid from 2020-01-01.*not now/);
  });

  it("a list overlapping one already imported (the vendor's register was lost)", async () => {
    rmSync(join(homeDir, "vendor.db"));
    await refused(await allocate("overlap", ["--station", "station-1", "--count", "5", "--prefix", "SN", "--start", "9"]), 6, /overlaps alloc-.* at serial SN000009/);
  });

  it("garbage and missing files", async () => {
    writeFileSync(file("garbage.json"), "{not json");
    await refused(file("garbage.json"), 3, /is not JSON/);
    writeFileSync(file("shape.json"), JSON.stringify({ hello: 1 }));
    await refused(file("shape.json"), 3, /not a signed idmint document/);
    await refused(file("absent.json"), 3, /does not exist/);
  });

  it("but importing the same list again is a no-op", async () => {
    const r = await cli("serials", "import", main, "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ imported: false, count: 10 });
  });
});

describe("scrap, report and reconcile", () => {
  it("a clean run reconciles with no anomaly; an edited report and a lying station are caught", async () => {
    await provision(["SN000001", "SN000002", "SN000003"]);
    const scrap = await cli("serials", "scrap", "SN000004", "--reason", "failed RF test");
    expect(scrap.code, scrap.stderr).toBe(0);
    const again = await cli("serials", "scrap", "SN000004", "--reason", "twice");
    expect(again.code).toBe(6);
    expect(oneLineError(again)).toMatch(/was scrapped \(failed RF test\)/);
    expect(await status()).toMatchObject({ allocations: [{ allocated: 10, provisioned: 3, scrapped: 1, reserved: 0, available: 6 }] });

    const reportPath = file("report.json");
    const rep = await cli("station", "report", "--out", reportPath);
    expect(rep.code, rep.stderr).toBe(0);
    const ok = await cli("serials", "reconcile", "--allocation", main, "--report", reportPath, "--json");
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, allocated: 10, provisioned: 3, scrapped: 1, reserved: 0, unused: 6, anomalies: [] });

    // Someone edits the report to hide a unit: the station's signature no longer verifies.
    const doc = JSON.parse(readFileSync(reportPath, "utf8")) as { payload: UsageReport; signature: unknown };
    const section = doc.payload.allocations[0]!;
    section.serials["SN000002"] = { state: "unused" };
    writeFileSync(file("edited.json"), JSON.stringify(doc));
    const edited = await cli("serials", "reconcile", "--allocation", main, "--report", file("edited.json"));
    expect(edited.code).toBe(6);
    expect(oneLineError(edited)).toMatch(/signature on the usage report does not verify/);

    // The station itself signs a report hiding a unit: its own ledger gives it away.
    const config = home.readConfig();
    const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
    try {
      const lie = await signDocument(doc.payload, hsm.signer(config.keys.station), readFileSync(home.pkiFile("station"), "utf8"));
      writeFileSync(file("lie.json"), JSON.stringify(lie));
      const dropped = { ...doc.payload, ledger: doc.payload.ledger.slice(0, -1) };
      writeFileSync(file("short.json"), JSON.stringify(await signDocument(dropped, hsm.signer(config.keys.station), readFileSync(home.pkiFile("station"), "utf8"))));
    } finally {
      hsm.close();
    }
    const caught = await cli("serials", "reconcile", "--allocation", main, "--report", file("lie.json"), "--json");
    expect(caught.code).toBe(6);
    expect(oneLineError(caught)).toMatch(/1 anomalies/);
    expect(JSON.parse(caught.stdout).anomalies).toEqual([
      { kind: "report-disagrees", serial: "SN000002", detail: "the report says SN000002 is unused, its ledger says provisioned" },
    ]);
    const short = await cli("serials", "reconcile", "--allocation", main, "--report", file("short.json"), "--json");
    expect(short.code).toBe(6);
    expect(JSON.parse(short.stdout).anomalies[0]).toMatchObject({ kind: "report-disagrees", detail: expect.stringMatching(/do not hash to its signed checkpoint/) });
  });

  it("refuses to reconcile a report against another station's allocation", async () => {
    const reportPath = file("report2.json");
    expect((await cli("station", "report", "--out", reportPath)).code).toBe(0);
    const station2 = await allocate("station-2", ["--station", "station-2", "--count", "2", "--prefix", "ST", "--start", "1"]);
    const r = await cli("serials", "reconcile", "--allocation", station2, "--report", reportPath);
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/allocation is for station-2/);
  });

  it("station report: an --out it cannot write is refused before a checkpoint is signed", async () => {
    const checkpoints = async () => JSON.parse((await cli("ledger", "verify", "--json")).stdout).checkpoints as number;
    const before = await checkpoints();
    const r = idmint(["--home", homeDir, "station", "report", "--out", "/proc/idmint-report.json"]);
    expect(r.code).toBe(3);
    expect(oneLineError(r)).toMatch(/--out \/proc\/idmint-report.json cannot be written/);
    expect(await checkpoints()).toBe(before);
  });

  it("names every serial certified outside the allocation, every key certified twice, and every lab unit", async () => {
    // A lab unit, declared with the explicit flag.
    const key = file("lab.key");
    const csr = file("lab.csr");
    expect(openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", "/serialNumber=LAB000001", "-out", csr]).code).toBe(0);
    const lab = await cli("ca", "issue", "--csr", csr, "--serial", "LAB000001", "--out", file("lab.pem"), "--outside-allocation", "--reason", "EMC test sample");
    expect(lab.code, lab.stderr).toBe(0);
    // What the issue path refuses, written into the ledger as a rogue station's software could:
    // a serial in no allocation, certified under SN000001's key.
    const db = openDb(home.stationDbPath);
    try {
      const ledger = new Ledger(db, systemClock);
      const { keyFingerprint } = ledger.entry(ledger.findBySerial("SN000001", "signing.intent")!).event as { keyFingerprint: string };
      const certificateSerial = "4" + "0".repeat(31);
      ledger.append({ type: "signing.intent", serial: "XX000001", keyFingerprint, certificateSerial });
      ledger.append({ type: "certificate.issued", serial: "XX000001", certificateSerial, certificateFingerprint: "e".repeat(64) });
    } finally {
      db.close();
    }
    const reportPath = file("rogue-report.json");
    expect((await cli("station", "report", "--out", reportPath)).code).toBe(0);
    const r = await cli("serials", "reconcile", "--allocation", main, "--report", reportPath, "--json");
    expect(r.code).toBe(6);
    const { anomalies } = JSON.parse(r.stdout) as { anomalies: Array<{ kind: string; serial?: string; detail: string }> };
    expect(anomalies).toEqual([
      { kind: "lab-unit", serial: "LAB000001", detail: 'LAB000001 was certified outside every allocation as a lab unit ("EMC test sample")' },
      { kind: "outside-allocation", serial: "XX000001", detail: "the ledger certifies XX000001, which no allocation the station imported holds" },
      { kind: "key-reused", serial: "SN000001", detail: expect.stringMatching(/^one public key \(SHA-256 [0-9a-f]{16}…\) was certified under 2 serials: SN000001, XX000001$/) },
    ]);
    const human = await cli("serials", "reconcile", "--allocation", main, "--report", reportPath);
    expect(human.stdout).toMatch(/ANOMALY lab-unit: .*\nANOMALY outside-allocation: .*\nANOMALY key-reused: /);
  });

  it("has help with an example for every serials and station command", async () => {
    for (const cmd of [["serials", "allocate"], ["serials", "import"], ["serials", "status"], ["serials", "scrap"], ["serials", "reconcile"], ["station", "report"]]) {
      const r = await idmintInProcess([...cmd, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Examples:/);
    }
  });
});
