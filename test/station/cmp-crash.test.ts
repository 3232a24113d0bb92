import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { lineHome, openssl, scratch, type Run } from "../helpers.js";
import { atMost, opensslCmp, resent, startCmpStation, unitKey } from "../fixtures/cmp-station.js";

const HAS_CMP = openssl(["cmp", "-help"]).code === 0;
const SECRET = "line-7-bootstrap";
const UNITS = 24;

const { dir, cleanup } = scratch("cmp-crash");
afterAll(cleanup);
const file = (name: string) => join(dir, name);
const serialOf = (i: number) => `SN${String(i).padStart(6, "0")}`;
const text = (r: Run) => r.stdout + r.stderr;

const newKey = (name: string) => unitKey(file(`${name}.key`));

describe.skipIf(!HAS_CMP)("station run --cmp: killed with SIGKILL under 8 enrolling openssl cmp clients, restarted, the clients retried", () => {
  let line: ReturnType<typeof lineHome>;
  const keys: string[] = [];
  let firstTry: Run[];
  let retried: Run[];
  let killed: Run;
  const cmpArgs = (server: string, i: number) => [
    "-cmd", "ir", "-server", `${server}/pkix/`, "-ref", "unit", "-secret", `pass:${SECRET}`, "-msg_timeout", "30",
    "-newkey", keys[i - 1]!, "-subject", `/serialNumber=${serialOf(i)}/CN=${serialOf(i)}`, "-certout", file(`${serialOf(i)}.pem`),
  ];

  beforeAll(async () => {
    line = lineHome(dir, "line", UNITS + 10);
    writeFileSync(file("secret"), `${SECRET}\n`);
    for (let i = 1; i <= UNITS; i++) keys.push(newKey(`unit${i}`));
    // The crash hook kills the station the moment its 12th unit's certificate is signed, not yet stored.
    const crashing = await startCmpStation(line.home, file("secret"), ["--timeout-ms", "3000"], { IDMINT_TEST_CRASH_AT: "signed:12" });
    firstTry = await atMost(8, Array.from({ length: UNITS }, (_, i) => () => opensslCmp(cmpArgs(crashing.server, i + 1))));
    killed = await crashing.ended;
    const station = await startCmpStation(line.home, file("secret"), ["--timeout-ms", "3000"]);
    const again = firstTry.map((r, i) => (r.code === 0 ? undefined : i + 1)).filter((i) => i !== undefined);
    retried = await atMost(8, again.map((i) => () => opensslCmp(cmpArgs(station.server, i))));
    await station.stop("SIGTERM");
  }, 300_000);

  it("the station died mid-line; the units it left failed, and each got its certificate when it tried again", () => {
    expect(killed.code).not.toBe(0);
    const failedFirst = firstTry.filter((r) => r.code !== 0).length;
    expect(failedFirst).toBeGreaterThan(0);
    expect(retried).toHaveLength(failedFirst);
    for (const r of retried) expect(r.code, text(r)).toBe(0);
    const pki = join(line.home, "pki");
    const certs = Array.from({ length: UNITS }, (_, i) => file(`${serialOf(i + 1)}.pem`));
    const v = openssl(["verify", "-x509_strict", "-CAfile", join(pki, "root.pem"), "-untrusted", join(pki, "factory-ca.pem"), ...certs]);
    expect(v.code, v.stderr).toBe(0);
  });

  it("no serial and no key was certified twice, the ledger verifies and reconciles with no anomaly", () => {
    const db = new Database(join(line.home, "station.db"), { readonly: true });
    try {
      const issued = db.prepare("SELECT serial, COUNT(*) AS n FROM ledger_entries WHERE type = 'certificate.issued' GROUP BY serial").all() as Array<{ serial: string; n: number }>;
      expect(issued).toHaveLength(UNITS);
      expect(issued.every((r) => r.n === 1)).toBe(true);
      const keysCertified = db.prepare("SELECT key_fingerprint, COUNT(*) AS n FROM units WHERE stage IN ('issued', 'delivered') GROUP BY key_fingerprint").all() as Array<{ n: number }>;
      expect(keysCertified).toHaveLength(UNITS);
      expect(keysCertified.every((r) => r.n === 1)).toBe(true);
    } finally {
      db.close();
    }
    expect(line.cli("ledger", "verify").code).toBe(0);
    const report = line.cli("station", "report", "--out", file("report.json"), "--json");
    expect(report.code, report.stderr).toBe(0);
    expect(JSON.parse(report.stdout)).toMatchObject({ provisioned: UNITS, unconfirmed: [] });
    const reconciled = line.cli("serials", "reconcile", "--allocation", line.allocation, "--report", file("report.json"), "--json");
    expect(reconciled.code, reconciled.stderr).toBe(0);
    expect(JSON.parse(reconciled.stdout)).toMatchObject({ ok: true, provisioned: UNITS, anomalies: [] });
  });
});

describe.skipIf(!HAS_CMP)("station run --cmp: a lost answer and a missing certConf", () => {
  it("the same transaction sent again gets the same certificate; a certificate never confirmed is issued and reported unconfirmed", async () => {
    const line = lineHome(dir, "lost", 10);
    writeFileSync(file("secret"), `${SECRET}\n`);
    const station = await startCmpStation(line.home, file("secret"), ["--timeout-ms", "3000"]);
    const base = ["-server", `${station.server}/pkix/`, "-ref", "unit", "-secret", `pass:${SECRET}`, "-msg_timeout", "30"];
    try {
      // SN000001's unit gets its ip but never confirms it (-disable_confirm): as if its answer were lost.
      const key = newKey("lost");
      const subject = ["-newkey", key, "-subject", "/serialNumber=SN000001/CN=lost"];
      const first = await opensslCmp([...base, "-cmd", "ir", "-disable_confirm", ...subject, "-certout", file("lost-1.pem"), "-reqout", file("lost-ir.der")]);
      expect(first.code, text(first)).toBe(0);
      // It sends the same transaction again (a fresh nonce, its MAC made again): the same certificate, confirmed this time.
      const again = await opensslCmp([...base, "-cmd", "ir", ...subject, "-certout", file("lost-2.pem"), "-reqin", resent(file("lost-ir.der"), file("lost-ir-again.der"), SECRET)]);
      expect(again.code, text(again)).toBe(0);
      expect(text(again)).toMatch(/received PKICONF/);
      expect(readFileSync(file("lost-2.pem"), "utf8")).toBe(readFileSync(file("lost-1.pem"), "utf8"));
      // A new transaction with the same key and serial: the same certificate again, nothing signed anew.
      const third = await opensslCmp([...base, "-cmd", "ir", ...subject, "-certout", file("lost-3.pem")]);
      expect(third.code, text(third)).toBe(0);
      expect(readFileSync(file("lost-3.pem"), "utf8")).toBe(readFileSync(file("lost-1.pem"), "utf8"));

      // SN000002's unit never confirms at all: its certificate stays issued, and is reported so.
      const quiet = await opensslCmp([...base, "-cmd", "ir", "-disable_confirm", "-newkey", newKey("quiet"), "-subject", "/serialNumber=SN000002/CN=quiet", "-certout", file("quiet.pem")]);
      expect(quiet.code, text(quiet)).toBe(0);
    } finally {
      // The line ends once the unconfirmed unit's wait for its certConf (--timeout-ms) is over.
      const ended = await station.stop("SIGTERM");
      expect(ended.code, ended.stderr).toBe(0);
    }
    const issued = line.cli("ledger", "verify");
    expect(issued.code, issued.stderr).toBe(0);
    const report = line.cli("station", "report", "--out", file("lost-report.json"), "--json");
    expect(report.code, report.stderr).toBe(0);
    expect(JSON.parse(report.stdout)).toMatchObject({ provisioned: 2, unconfirmed: ["SN000002"] });
    const human = line.cli("station", "report", "--out", file("lost-report-2.json"));
    expect(human.stdout).toMatch(/1 unconfirmed \(issued, the unit never acknowledged it, e\.g\. no CMP certConf\): SN000002/);
  }, 120_000);
});
