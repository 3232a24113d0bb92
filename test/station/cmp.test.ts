import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { lineHome, openssl, scratch, type Run } from "../helpers.js";
import { atMost, opensslCmp, startCmpStation, type CmpStation, unitKey } from "../fixtures/cmp-station.js";

const HAS_CMP = openssl(["cmp", "-help"]).code === 0;
const SECRET = "line-7-bootstrap";
const UNITS = 100;

const { dir, cleanup } = scratch("cmp-station");
afterAll(cleanup);
const file = (name: string) => join(dir, name);

/** The command a unit's firmware runs (README, "Provisioning units over CMP"). */
function irArgs(server: string, serial: string, key: string, out: string, secret = SECRET): string[] {
  return ["-cmd", "ir", "-server", `${server}/pkix/`, "-ref", "unit", "-secret", `pass:${secret}`, "-newkey", key, "-subject", `/serialNumber=${serial}/CN=${serial}`, "-certout", out, "-msg_timeout", "30"];
}

const newKey = (name: string) => unitKey(file(`${name}.key`));

const serialOf = (i: number) => `SN${String(i).padStart(6, "0")}`;

describe.skipIf(!HAS_CMP)("station run --cmp: 100 units enrol with openssl cmp, eight at a time", () => {
  let line: ReturnType<typeof lineHome>;
  let station: CmpStation;
  let results: Run[];
  let ended: Run;

  beforeAll(async () => {
    line = lineHome(dir, "line", UNITS + 10);
    writeFileSync(file("secret"), `${SECRET}\n`);
    station = await startCmpStation(line.home, file("secret"), ["--slots", "8"]);
    const keys = Array.from({ length: UNITS }, (_, i) => newKey(`unit${i + 1}`));
    results = await atMost(
      8,
      keys.map((key, i) => () => opensslCmp(irArgs(station.server, serialOf(i + 1), key, file(`${serialOf(i + 1)}.pem`)))),
    );
    // One more: a unit whose CSR was made by openssl req enrols with p10cr.
    const csr = file("p10.csr");
    const req = openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", file("p10.key"), "-subj", `/serialNumber=${serialOf(UNITS + 1)}/CN=p10`, "-out", csr]);
    if (req.code !== 0) throw new Error(req.stderr);
    results.push(await opensslCmp(["-cmd", "p10cr", "-server", `${station.server}/pkix/`, "-ref", "unit", "-secret", `pass:${SECRET}`, "-csr", csr, "-certout", file(`${serialOf(UNITS + 1)}.pem`)]));
    ended = await station.stop("SIGTERM");
  }, 300_000);

  it("every openssl cmp run ends with its certificate, confirmed (certConf -> pkiConf)", () => {
    for (const r of results) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout + r.stderr).toMatch(/received PKICONF/);
    }
  });

  it("all 101 IDevIDs pass openssl verify -x509_strict against the vendor root, each for its serial", () => {
    const pki = join(line.home, "pki");
    const certs = Array.from({ length: UNITS + 1 }, (_, i) => file(`${serialOf(i + 1)}.pem`));
    const v = openssl(["verify", "-x509_strict", "-CAfile", join(pki, "root.pem"), "-untrusted", join(pki, "factory-ca.pem"), ...certs]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout.trim().split("\n").filter((l) => l.endsWith(": OK"))).toHaveLength(UNITS + 1);
    for (const [i, cert] of certs.entries()) {
      expect(openssl(["x509", "-in", cert, "-noout", "-subject"]).stdout).toContain(`serialNumber = ${serialOf(i + 1)}`);
      // The station's own copy, HOME/certs/SERIAL.pem, is the same certificate.
      expect(readFileSync(join(line.home, "certs", `${serialOf(i + 1)}.pem`), "utf8").trim()).toBe(readFileSync(cert, "utf8").trim());
    }
  });

  it("the line's --json summary counts them, the ledger verifies, station report and serials reconcile agree", () => {
    expect(ended.code, ended.stderr).toBe(0);
    const summary = JSON.parse(ended.stdout);
    expect(summary).toMatchObject({ units: UNITS + 1, provisioned: UNITS + 1, failed: 0 });
    const verify = line.cli("ledger", "verify", "--json");
    expect(verify.code, verify.stderr).toBe(0);
    expect(line.cli("ledger", "checkpoint").code).toBe(0);
    const report = line.cli("station", "report", "--out", file("report.json"), "--json");
    expect(report.code, report.stderr).toBe(0);
    expect(JSON.parse(report.stdout)).toMatchObject({ provisioned: UNITS + 1 });
    const reconciled = line.cli("serials", "reconcile", "--allocation", line.allocation, "--report", file("report.json"), "--json");
    expect(reconciled.code, reconciled.stderr).toBe(0);
    expect(JSON.parse(reconciled.stdout)).toMatchObject({ ok: true, provisioned: UNITS + 1, anomalies: [] });
  });
});

describe("unit sim --link cmp: simulated units enrol over CMP with the device's own client (p10cr, certConf)", () => {
  it("12 units, 4 at a time, each with its certificate checked and kept in its flash; the station counts them", async () => {
    const sim = lineHome(dir, "sim-cmp", 20);
    writeFileSync(file("sim-secret"), `${SECRET}\n`);
    const station = await startCmpStation(sim.home, file("sim-secret"));
    let enrolled: Run;
    try {
      enrolled = sim.cli("unit", "sim", "--link", "cmp", "--station", `http://${station.server}/.well-known/cmp`, "--cmp-secret-file", file("sim-secret"), "--count", "12", "--prefix", "SN", "--start", "1", "--concurrency", "4", "--json");
    } finally {
      const ended = await station.stop("SIGTERM");
      expect(JSON.parse(ended.stdout)).toMatchObject({ units: 12, provisioned: 12, failed: 0 });
    }
    expect(enrolled.code, enrolled.stderr).toBe(0);
    expect(JSON.parse(enrolled.stdout)).toMatchObject({ enrolled: 12, failed: 0 });
    // The unit's flash holds the certificate the station issued it.
    const out = file("sim-SN000007.pem");
    expect(sim.cli("unit", "export", "--serial", "SN000007", "--cert", "--out", out).code).toBe(0);
    expect(readFileSync(out, "utf8").trim()).toBe(readFileSync(join(sim.home, "certs", "SN000007.pem"), "utf8").trim());
    // A wrong secret: every unit is refused, nothing enrolled.
    writeFileSync(file("wrong-secret"), "not-the-line-secret\n");
    const again = await startCmpStation(sim.home, file("sim-secret"));
    try {
      const refused = sim.cli("unit", "sim", "--link", "cmp", "--station", `http://${again.server}/.well-known/cmp`, "--cmp-secret-file", file("wrong-secret"), "--count", "2", "--prefix", "SN", "--start", "13", "--json");
      expect(JSON.parse(refused.stdout)).toMatchObject({ enrolled: 0, failed: 2, failures: { CMP_REFUSED: 2 } });
    } finally {
      await again.stop("SIGTERM");
    }
  }, 120_000);
});

describe.skipIf(!HAS_CMP)("station run --sim beside --cmp: one line, two kinds of unit", () => {
  it("the simulated units and the openssl cmp units are provisioned by the same run, counted in one summary", async () => {
    const both = lineHome(dir, "both", 30);
    writeFileSync(file("both-secret"), `${SECRET}\n`);
    const station = await startCmpStation(both.home, file("both-secret"), ["--sim", "6", "--slots", "4"]);
    // The simulator takes the first serials not yet delivered (SN000001..6); the CMP units come from further on.
    const results = await atMost(
      4,
      [21, 22, 23, 24].map((i) => () => opensslCmp(irArgs(station.server, serialOf(i), newKey(`both${i}`), file(`both-${i}.pem`)))),
    );
    for (const r of results) expect(r.code, r.stdout + r.stderr).toBe(0);
    // SIGTERM ends the CMP side; the line ends once the simulator has no more units too.
    const ended = await station.stop("SIGTERM");
    expect(ended.code, ended.stderr).toBe(0);
    expect(JSON.parse(ended.stdout)).toMatchObject({ units: 10, provisioned: 10, failed: 0 });
    expect(both.cli("ledger", "verify").code).toBe(0);
  }, 120_000);
});

