import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import pkcs11js from "pkcs11js";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Home } from "../../core/index.js";
import { findSoftHsmModule, parsePkcs11Uri } from "../../hsm/index.js";
import { idmint, idmintBounded, lineHome, oneLineError, scratch, type BoundedRun } from "../helpers.js";
import { P11KIT_CLIENT, P11KIT_MISSING, startP11KitServer, type P11KitServer } from "../fixtures/p11kit.js";

const s = scratch("outage");
const servers: P11KitServer[] = [];
afterAll(async () => {
  for (const server of servers) await server.stop();
  s.cleanup();
});

/** One number from a home's station store, read while a run writes (WAL lets a reader in). */
function count(home: string, sql: string): number {
  const db = new Database(join(home, "station.db"), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).pluck().get() as number;
  } finally {
    db.close();
  }
}
const certified = (home: string) => count(home, "SELECT COUNT(*) FROM units WHERE stage IN ('issued', 'delivered')");
/** Serials with more than one certificate.issued entry in the ledger: none, ever. */
const issuedTwice = (home: string) => count(home, "SELECT COUNT(*) - COUNT(DISTINCT serial) FROM ledger_entries WHERE type = 'certificate.issued'");
/** Serials this station holds with nothing certified: none once a run ended cleanly. */
const hanging = (home: string) => count(home, "SELECT COUNT(*) FROM units WHERE stage IN ('reserved', 'keyed', 'intent')");

async function until(what: string, ok: () => boolean, run: Promise<BoundedRun>): Promise<void> {
  let ended = false;
  void run.then(() => (ended = true));
  // The run makes its tables as it starts: until then there is nothing to count.
  const tried = () => {
    try {
      return ok();
    } catch {
      return false;
    }
  };
  while (!tried()) {
    if (ended) throw new Error(`the run ended before ${what}: ${JSON.stringify(await run)}`);
    await sleep(20);
  }
}

/** Changes a SoftHSM token's user PIN behind idmint's back, as a security officer would. */
function changePin(softhsmConf: string, token: string, from: string, to: string): void {
  process.env.SOFTHSM2_CONF = softhsmConf;
  const p11 = new pkcs11js.PKCS11();
  p11.load(findSoftHsmModule());
  p11.C_Initialize();
  try {
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === token)!;
    const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    p11.C_Login(session, pkcs11js.CKU_USER, from);
    p11.C_SetPIN(session, from, to);
    p11.C_CloseSession(session);
  } finally {
    p11.C_Finalize();
    p11.close();
  }
}

describe.skipIf(P11KIT_MISSING !== undefined)(`the line rides out an HSM that goes away${P11KIT_MISSING ? ` (skipped: ${P11KIT_MISSING})` : ""}`, () => {
  let line: ReturnType<typeof lineHome>;
  let softhsmConf: string;
  const socketName = "hsm";
  let server: P11KitServer;
  const start = async () => {
    server = await startP11KitServer(s.dir, softhsmConf, socketName);
    servers.push(server);
  };
  const env = () => ({ P11_KIT_SERVER_ADDRESS: `unix:path=${join(s.dir, `${socketName}.sock`)}` });
  const station = (args: string[], limitMs = 120_000) => idmintBounded(["--home", line.home, "station", "run", ...args], { env: env(), limitMs });

  beforeAll(async () => {
    line = lineHome(s.dir, "line", 1_500);
    const home = new Home(line.home);
    softhsmConf = home.softhsmConfPath;
    // A network HSM's home names only its client module.
    home.writeConfig({ ...home.readConfig(), hsm: { module: P11KIT_CLIENT! } });
    await start();
  });

  it("the HSM server killed mid-run and back 10 s later: the run finishes by itself, no unit failed, each serial certified once, the outage in the events and the summary", async () => {
    const run = station(["--sim", "1000", "--slots", "8", "--json"]);
    await until("50 units were certified", () => certified(line.home) >= 50, run);
    await server.stop();
    await sleep(10_000);
    await start();
    const r = await run;
    expect(r.timedOut).toBe(false);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ units: 1000, provisioned: 1000, failed: 0 });
    expect(summary.hsm.outages).toBeGreaterThanOrEqual(1);
    expect(summary.hsm.outageSeconds).toBeGreaterThanOrEqual(9);
    const events = r.stderr.trim().split("\n").map((l) => JSON.parse(l) as { event: string });
    expect(events.map((e) => e.event)).toContain("hsm-unreachable");
    expect(events.at(-1)!.event).toBe("hsm-back");

    expect(readdirSync(new Home(line.home).certsDir).filter((f) => f.endsWith(".pem"))).toHaveLength(1000);
    expect(certified(line.home)).toBe(1000);
    expect(issuedTwice(line.home)).toBe(0);
    expect(hanging(line.home)).toBe(0);
    // The signatures under way when the HSM went away were asked for again, and the ledger says so.
    expect(summary.hsm.signaturesRetried).toBeGreaterThanOrEqual(1);
    expect(count(line.home, "SELECT COUNT(*) FROM ledger_entries WHERE type = 'signing.retried'")).toBe(summary.hsm.signaturesRetried);
    const verify = idmint(["--home", line.home, "ledger", "verify"], { env: env() });
    expect(verify.code, verify.stderr).toBe(0);
  }, 120_000);

  it("an HSM that never comes back: after --hsm-wait the run stops, exit 4, one line; the next run resumes cleanly", async () => {
    const run = station(["--sim", "300", "--slots", "8", "--hsm-wait", "2"]);
    await until("10 units were certified", () => certified(line.home) >= 1010, run);
    await server.stop();
    const r = await run;
    expect(r.timedOut).toBe(false);
    expect(r.leftovers).toEqual([]);
    expect(r.code).toBe(4);
    expect(oneLineError(r)).toMatch(/the HSM has not answered for 2 s .*--hsm-wait/);
    expect(r.stdout).toMatch(/HSM unreachable since .*retrying/);

    // What nothing was signed for is released: no serial stays reserved by the stopped run.
    expect(hanging(line.home)).toBe(0);
    const before = certified(line.home);

    await start();
    const again = await station(["--sim", "300", "--slots", "8", "--json"]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ provisioned: 300, failed: 0 });
    expect(certified(line.home)).toBe(before + 300);
    expect(issuedTwice(line.home)).toBe(0);
    const verify = idmint(["--home", line.home, "ledger", "verify"], { env: env() });
    expect(verify.code, verify.stderr).toBe(0);
  }, 120_000);

  it("a PIN changed while the HSM was away is tried once when it is back: exit 4 naming the PIN, not a wait until --hsm-wait", async () => {
    const before = certified(line.home);
    const run = station(["--sim", "200", "--slots", "8", "--hsm-wait", "100"]);
    await until("10 more units were certified", () => certified(line.home) >= before + 10, run);
    await server.stop();
    const pinFile = parsePkcs11Uri(new Home(line.home).readConfig().keys.factoryCa).pinSource!.replace(/^file:/, "");
    const pin = readFileSync(pinFile, "utf8").trim();
    changePin(softhsmConf, "factory-ca", pin, "a-new-pin-1234");
    try {
      await start();
      const r = await run;
      expect(r.timedOut).toBe(false);
      expect(r.code).toBe(4);
      expect(oneLineError(r)).toMatch(/wrong PIN for token factory-ca .*tried once and will not retry/);
      expect(hanging(line.home)).toBe(0);
    } finally {
      await server.stop();
      changePin(softhsmConf, "factory-ca", "a-new-pin-1234", pin);
    }
  }, 120_000);
});
