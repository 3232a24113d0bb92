import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { sha256Hex } from "../../core/index.js";
import { x509 } from "../../pki/index.js";
import { readSoftUnitKey, readUnitRecord } from "../../device/index.js";
import { idmint, lineHome, oneLineError, openssl, scratch, type Run } from "../helpers.js";

const s = scratch("station");
afterAll(() => s.cleanup());

interface Issued {
  serial: string;
  certificateFingerprint: string;
}

function ledgerFacts(home: string): { issued: Issued[]; intents: number } {
  const db = new Database(join(home, "station.db"), { readonly: true });
  try {
    const bodies = db.prepare("SELECT body FROM ledger_entries WHERE type = 'certificate.issued' ORDER BY idx").pluck().all() as Buffer[];
    const issued = bodies.map((b) => JSON.parse(b.toString("utf8").split("\n")[1]!) as Issued);
    const intents = db.prepare("SELECT COUNT(*) FROM ledger_entries WHERE type = 'signing.intent'").pluck().get() as number;
    return { issued, intents };
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
    const { issued } = ledgerFacts(line.home);
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
      const { issued } = ledgerFacts(crash.home);
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
