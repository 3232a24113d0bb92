import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { sha256Hex } from "../../core/index.js";
import { x509 } from "../../pki/index.js";
import { FrameDecoder, encodeFrame } from "../../link/index.js";
import { readSoftUnitKey, readUnitRecord } from "../../device/index.js";
import { SoftwareUnit } from "../fixtures/software-unit.js";
import { idmint, idmintBounded, lineHome, oneLineError, openssl, scratch, type Run } from "../helpers.js";

const s = scratch("station");
afterAll(() => s.cleanup());

interface Issued {
  serial: string;
  certificateFingerprint: string;
}

/** The fields of the home's ledger entries of one type, in order. */
function ledgerEntries<T extends { serial: string }>(home: string, type: string): T[] {
  const db = new Database(join(home, "station.db"), { readonly: true });
  try {
    const bodies = db.prepare("SELECT body FROM ledger_entries WHERE type = ? ORDER BY idx").pluck().all(type) as Buffer[];
    return bodies.map((b) => JSON.parse(b.toString("utf8").split("\n")[1]!) as T);
  } finally {
    db.close();
  }
}

describe("idmint station run --sim", () => {
  let line: { home: string; cli: (...args: string[]) => Run };
  beforeAll(() => {
    line = lineHome(s.dir, "line", 210);
  });

  it("200 units over 8 slots: 200 certificates openssl verifies, distinct serials and keys; every fault fails alone", () => {
    const faults = ["SN000003=bad-csr-signature", "SN000050=wrong-serial", "SN000100=duplicate-key", "SN000120=disconnect", "SN000150=garbage", "SN000199=slow"];
    const r = line.cli("station", "run", "--sim", "206", "--slots", "8", "--timeout-ms", "2000", "--slow-ms", "20000", ...faults.flatMap((f) => ["--fault", f]), "--json");
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ units: 206, provisioned: 200, failed: 6 });
    expect(summary.failures).toEqual({ CSR_SIGNATURE: 1, CSR_SERIAL_MISMATCH: 1, KEY_REUSED: 1, UNIT_DISCONNECTED: 1, UNIT_PROTOCOL: 1, UNIT_TIMEOUT: 1 });
    expect(summary.stages.sign.p50).toBeGreaterThan(0);
    expect(summary.allocations[0]).toMatchObject({ allocated: 210, provisioned: 200, reserved: 0, available: 10 });

    const certsDir = join(line.home, "certs");
    const files = readdirSync(certsDir).sort();
    expect(files).toHaveLength(200);
    for (const bad of ["SN000003", "SN000050", "SN000100", "SN000120", "SN000150", "SN000199"]) expect(files).not.toContain(`${bad}.pem`);
    const v = openssl(["verify", "-CAfile", join(line.home, "pki", "root.pem"), "-untrusted", join(line.home, "pki", "factory-ca.pem"), ...files.map((f) => join(certsDir, f))]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout.trim().split("\n")).toHaveLength(200);

    const certs = files.map((f) => new x509.X509Certificate(readFileSync(join(certsDir, f), "utf8")));
    expect(new Set(certs.map((c) => c.subjectName.getField("2.5.4.5")[0])).size).toBe(200);
    expect(new Set(certs.map((c) => Buffer.from(c.publicKey.rawData).toString("hex"))).size).toBe(200);
    expect(new Set(certs.map((c) => c.serialNumber)).size).toBe(200);

    const ledger = line.cli("ledger", "verify", "--json");
    expect(ledger.code, ledger.stderr).toBe(0);
    const issued = ledgerEntries<Issued>(line.home, "certificate.issued");
    expect(issued).toHaveLength(200);
    const status = JSON.parse(line.cli("serials", "status", "--json").stdout);
    expect(status.allocations[0]).toMatchObject({ provisioned: 200 });
  });

  it("the units keep their keys and certificates in HOME/units/units.db", () => {
    const unit = readUnitRecord(join(line.home, "units"), "SN000001")!;
    expect(unit).toMatchObject({ state: "provisioned", key: { keystore: "soft" } });
    expect(readSoftUnitKey(join(line.home, "units"), "SN000001").asymmetricKeyType).toBe("ec");
    expect(unit.certificate).toBe(readFileSync(join(line.home, "certs", "SN000001.pem"), "utf8"));
  });
});

describe("a station killed at any step resumes", () => {
  const steps = ["hello", "genkey", "intent", "signed", "issued", "installed", "delivered"];
  let crash: { home: string; cli: (...args: string[]) => Run };
  beforeAll(() => {
    crash = lineHome(s.dir, "crash", steps.length * 8);
  });

  it("with SIGKILL at each pipeline step: no serial issued twice, every certificate in the ledger, no unit lost", () => {
    for (const step of steps) {
      const killed = idmint(["--home", crash.home, "station", "run", "--sim", "4", "--slots", "2"], { env: { IDMINT_TEST_CRASH_AT: `${step}:3` } });
      expect(killed.code, `${step}: ${killed.stderr}`).toBe(-1);
      const halfway = unitsInFlight(crash.home);
      const resumed = crash.cli("station", "run", "--sim", "4", "--slots", "2", "--json");
      expect(resumed.code, `${step}: ${resumed.stderr}`).toBe(0);
      const summary = JSON.parse(resumed.stdout);
      expect(summary.failed, `${step}: ${JSON.stringify(summary.failures)}`).toBe(0);
      expect(summary.allocations[0].reserved, step).toBe(0);

      // No unit lost: every unit the crash left half-way is delivered now.
      expect(unitsInFlight(crash.home), step).toEqual([]);
      const delivered = deliveredSerials(crash.home);
      for (const serial of halfway) expect(delivered, `${step}: ${serial}`).toContain(serial);

      // No serial issued twice, and every certificate issued is in the ledger, on disk and on its unit.
      const issued = ledgerEntries<Issued>(crash.home, "certificate.issued");
      const serials = issued.map((i) => i.serial);
      expect(new Set(serials).size, `${step}: a serial was issued twice`).toBe(serials.length);
      expect([...serials].sort(), step).toEqual([...delivered].sort());
      expect(summary.allocations[0].provisioned, step).toBe(serials.length);
      const files = readdirSync(join(crash.home, "certs"));
      expect(files.sort(), step).toEqual(serials.map((x) => `${x}.pem`).sort());
      for (const i of issued) {
        const pem = readFileSync(join(crash.home, "certs", `${i.serial}.pem`), "utf8");
        const cert = new x509.X509Certificate(pem);
        expect(sha256Hex(new Uint8Array(cert.rawData)), `${step} ${i.serial}`).toBe(i.certificateFingerprint);
        expect(readUnitRecord(join(crash.home, "units"), i.serial)?.certificate, `${step} ${i.serial}`).toBe(pem);
      }
    }
    const v = crash.cli("ledger", "verify");
    expect(v.code, v.stderr).toBe(0);
  });
});

function unitsInFlight(home: string): string[] {
  const db = new Database(join(home, "station.db"), { readonly: true });
  try {
    return db.prepare("SELECT serial FROM units WHERE stage IN ('reserved', 'keyed', 'intent', 'issued') ORDER BY serial").pluck().all() as string[];
  } finally {
    db.close();
  }
}

function deliveredSerials(home: string): string[] {
  const db = new Database(join(home, "station.db"), { readonly: true });
  try {
    return db.prepare("SELECT serial FROM units WHERE stage = 'delivered' ORDER BY serial").pluck().all() as string[];
  } finally {
    db.close();
  }
}

describe("station run refuses with one line", () => {
  let empty: { home: string; cli: (...args: string[]) => Run };
  beforeAll(() => {
    empty = lineHome(s.dir, "refusals", 1);
  });

  it("both or neither of --sim and --fixture, bad --slots", () => {
    for (const args of [[], ["--sim", "2", "--fixture", "127.0.0.1:9"], ["--sim", "2", "--slots", "0"], ["--fixture", "nowhere"]]) {
      const r = empty.cli("station", "run", ...args);
      expect(r.code, args.join(" ")).toBe(2);
      oneLineError(r);
    }
  });

  it("a fixture that cannot be reached", () => {
    const r = empty.cli("station", "run", "--fixture", "127.0.0.1:9", "--timeout-ms", "500");
    expect(r.code).toBe(7);
    expect(oneLineError(r)).toMatch(/127\.0\.0\.1:9/);
  });

  it("a fixture that stops answering: the line gives up once every slot had units fail before their hello", async () => {
    // Accepts connections (the kernel does, while the run blocks this process) and never says a word.
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = silent.address() as AddressInfo;
      const r = empty.cli("station", "run", "--fixture", `127.0.0.1:${port}`, "--slots", "2", "--timeout-ms", "200");
      expect(r.code).toBe(7);
      expect(oneLineError(r)).toMatch(/^idmint: the fixture stopped answering: on every slot 3 units in a row failed before their hello, the last with ".*did not answer hello within 200 ms.*": check the fixture/);
    } finally {
      silent.close();
    }
  });

  it("another run holding the home", () => {
    writeFileSync(join(empty.home, "station.lock"), `${process.pid}\n`);
    try {
      const r = empty.cli("station", "run", "--sim", "1");
      expect(r.code).toBe(5);
      expect(oneLineError(r)).toMatch(/another station run \(pid \d+\) is using this home/);
    } finally {
      rmSync(join(empty.home, "station.lock"));
    }
  });

  it("no serial left", () => {
    expect(empty.cli("station", "run", "--sim", "1").code).toBe(0);
    const r = empty.cli("station", "run", "--sim", "1");
    expect(r.code).toBe(5);
    expect(oneLineError(r)).toMatch(/no serial is left/);
  });
});

const HW_TYPE = "1.3.6.1.4.1.32473.1.1";
type FixtureRequest = { id: number; op: string; certificate?: string };

/**
 * A broken or hostile fixture on 127.0.0.1, one unit per connection: its nth unit says hello
 * as `serialOf(n)`, `after` may follow that answer in the same write, and every other
 * request gets what `answer` returns.
 */
async function hostileFixture(p: { serialOf: (n: number) => string; after?: Buffer; answer: (req: FixtureRequest, serial: string) => Promise<unknown> }): Promise<Server & { port: number }> {
  let n = 0;
  const server = createServer((socket) => {
    const decoder = new FrameDecoder();
    let serial = "";
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      for (const frame of decoder.push(chunk).frames) {
        const req = frame as FixtureRequest;
        const reply = (result: unknown) => encodeFrame({ v: 1, id: req.id, ok: true, result });
        if (req.op === "hello") {
          serial = p.serialOf(++n);
          socket.write(Buffer.concat([reply({ serial, model: "RT-1", hwType: HW_TYPE, firmware: "1.0", protocol: 1 }), p.after ?? Buffer.alloc(0)]));
        } else {
          void p.answer(req, serial).then((result) => !socket.destroyed && socket.write(reply(result)));
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return Object.assign(server, { port: (server.address() as AddressInfo).port });
}

const pemDer = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
const csrOf = async (serial: string) => ({ csr: await (await SoftwareUnit.create(serial, "RT-1")).csr() });
const serialNo = (prefix: string, n: number) => `${prefix}${String(n).padStart(6, "0")}`;

/** station.db and its WAL, in bytes. */
function storeBytes(home: string): number {
  return ["station.db", "station.db-wal"].map((f) => join(home, f)).reduce((sum, f) => sum + (existsSync(f) ? statSync(f).size : 0), 0);
}

describe("a line that only fails stops by itself (exit 7, one line), and the store stays small", () => {
  let line: { home: string; cli: (...args: string[]) => Run };
  beforeAll(() => {
    line = lineHome(s.dir, "hostile", 100);
  });

  /** Runs the line against `fixture` until it ends by itself (or a minute passes: code -1). */
  async function runAgainst(fixture: Server & { port: number }, ...args: string[]): Promise<{ r: Run; grew: number }> {
    const before = storeBytes(line.home);
    try {
      const r = await idmintBounded(["--home", line.home, "station", "run", "--fixture", `127.0.0.1:${fixture.port}`, "--timeout-ms", "2000", ...args], { limitMs: 60_000 });
      return { r, grew: storeBytes(line.home) - before };
    } finally {
      fixture.close();
    }
  }

  it("a healthy line with a failure here and there is not stopped, even with small limits", () => {
    const faults = ["SN000010=bad-csr-signature", "SN000025=wrong-serial", "SN000040=bad-csr-signature"];
    const r = line.cli("station", "run", "--sim", "40", "--slots", "2", "--stop-after-failures", "2", "--stop-after-serial-failures", "2", ...faults.flatMap((f) => ["--fault", f]), "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ units: 40, provisioned: 37, failed: 3 });
  });

  it("endless units with serials in no allocation", async () => {
    const fixture = await hostileFixture({ serialOf: (n) => serialNo("ZZ", n), answer: (_req, serial) => csrOf(serial) });
    const { r, grew } = await runAgainst(fixture);
    expect(r.code, r.stderr).toBe(7);
    expect(oneLineError(r)).toMatch(/^idmint: the line stopped: 50 units in a row failed, \d+ of them with SERIAL_UNKNOWN \(the last: serial ZZ\d+ is in no imported allocation.*--stop-after-failures/);
    expect(grew).toBeLessThan(1024 * 1024);
  });

  it("endless CSRs without proof of possession", async () => {
    const badCsr = async (serial: string) => {
      const der = pemDer((await csrOf(serial)).csr);
      der[der.length - 1]! ^= 1; // the last byte of the signature
      return { csr: `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n` };
    };
    const fixture = await hostileFixture({ serialOf: (n) => serialNo("SN", 40 + n), answer: (_req, serial) => badCsr(serial) });
    const { r, grew } = await runAgainst(fixture, "--stop-after-failures", "10");
    expect(r.code, r.stderr).toBe(7);
    expect(oneLineError(r)).toMatch(/^idmint: the line stopped: 10 units in a row failed, \d+ of them with CSR_SIGNATURE \(the last: the CSR's self-signature does not verify/);
    expect(grew).toBeLessThan(1024 * 1024);
  });

  it("two slots claiming one serial for ever: signed once, its failures logged once, then the line stops", async () => {
    const fixture = await hostileFixture({
      serialOf: () => "SN000099",
      answer: async (req, serial) => {
        if (req.op === "genkey") return csrOf(serial);
        if (req.op === "install") return { fingerprint: sha256Hex(new Uint8Array(pemDer(req.certificate!))) };
        return { serial, state: "new" };
      },
    });
    const { r, grew } = await runAgainst(fixture, "--slots", "2");
    expect(r.code, r.stderr).toBe(7);
    expect(oneLineError(r)).toMatch(/^idmint: the line stopped: serial SN000099 failed 5 times in this run, the last with SERIAL_(BUSY|PROVISIONED) .*: take that unit out of the fixture/);
    const about = (type: string) => ledgerEntries(line.home, type).filter((e) => e.serial === "SN000099");
    expect(about("signing.intent")).toHaveLength(1);
    expect(about("error").length).toBeLessThanOrEqual(1);
    expect(grew).toBeLessThan(1024 * 1024);
  });

  it("a flood of frames with an unknown id right behind each hello", async () => {
    const flood = Buffer.concat(Array.from({ length: 1000 }, () => encodeFrame({ v: 1, id: 99_999, ok: true, result: {} })));
    const fixture = await hostileFixture({ serialOf: (n) => serialNo("SN", 60 + (n % 30)), after: flood, answer: () => new Promise(() => {}) });
    const { r, grew } = await runAgainst(fixture, "--stop-after-failures", "10");
    expect(r.code, r.stderr).toBe(7);
    expect(oneLineError(r)).toMatch(/^idmint: the line stopped: 10 units in a row failed, \d+ of them with UNIT_PROTOCOL \(the last: .*an answer to request 99999, which is not outstanding/);
    expect(grew).toBeLessThan(1024 * 1024);
  });

  it("refuses limits below 1", () => {
    const r = line.cli("station", "run", "--sim", "1", "--stop-after-failures", "0");
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toMatch(/--stop-after-failures and --stop-after-serial-failures must be whole numbers of at least 1/);
  });
});
