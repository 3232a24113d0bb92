import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { Home } from "../../core/index.js";
import { Hsm } from "../../hsm/index.js";
import { idmint, lineHome, oneLineError, openssl, run, scratch, type Run } from "../helpers.js";
import { P11KIT_MISSING, startP11KitServer, type P11KitServer } from "../fixtures/p11kit.js";

// The Hsm's own operations through p11-kit are test/hsm/hsm.test.ts, run over both modules.
const s = scratch("remote");
const servers: P11KitServer[] = [];
afterAll(async () => {
  for (const server of servers) await server.stop();
  s.cleanup();
});

/** The processes of a group that are still running (a zombie waiting for its reaper has ended). */
const alive = (group: number) => run("pgrep", ["-g", String(group), "-r", "R,S,D,T"]).stdout.split("\n").filter(Boolean);

describe.skipIf(P11KIT_MISSING !== undefined)(`the line with its HSM behind p11-kit's remote PKCS#11 module${P11KIT_MISSING ? ` (skipped: ${P11KIT_MISSING})` : ""}`, () => {
  let line: { home: string; cli: (...args: string[]) => Run };
  let server: P11KitServer;
  const rates: Record<string, number> = {};
  const remote = (...args: string[]) => idmint(["--home", line.home, ...args], { env: server.env });
  const runLine = (r: Run): { provisioned: number; failed: number; unitsPerSecond: number; hsm: { sessions: number } } => {
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout);
  };

  beforeAll(async () => {
    line = lineHome(s.dir, "line", 150);
    server = await startP11KitServer(s.dir, new Home(line.home).softhsmConfPath);
    servers.push(server);
  });

  afterAll(() => {
    // Measured, not asserted: 50 units are too few for a stable rate on a shared machine.
    if (rates.direct && rates.remote) console.log(`station run --sim 50 --slots 4: ${rates.direct} units/s on SoftHSM directly, ${rates.remote} through p11-kit (same home)`);
  });

  it("station run --sim 50 --slots 4 on SoftHSM directly, for comparison: it signs in-process", () => {
    const summary = runLine(line.cli("station", "run", "--sim", "50", "--slots", "4", "--json"));
    expect(summary).toMatchObject({ provisioned: 50, failed: 0, hsm: { sessions: 1, outages: 0 } });
    rates.direct = summary.unitsPerSecond;
  });

  it("on SoftHSM directly with hsm.sessions set, the line signs in a pool of that many threads sharing the process's SoftHSM", () => {
    const home = new Home(line.home);
    const config = home.readConfig();
    home.writeConfig({ ...config, hsm: { ...config.hsm, sessions: 3 } });
    try {
      const summary = runLine(line.cli("station", "run", "--sim", "30", "--slots", "4", "--json"));
      expect(summary).toMatchObject({ provisioned: 30, failed: 0, hsm: { sessions: 3, outages: 0 } });
      expect(line.cli("ledger", "verify").code).toBe(0);
    } finally {
      home.writeConfig(config);
    }
  });

  it("station run --sim 50 --slots 4 with hsm.module the p11-kit client: all 50 provisioned, the ledger verifies, openssl accepts an IDevID", () => {
    const home = new Home(line.home);
    const config = home.readConfig();
    // A network HSM's home names only its client module: no SoftHSM configuration in this process.
    home.writeConfig({ ...config, hsm: { module: server.module } });

    const summary = runLine(remote("station", "run", "--sim", "50", "--slots", "4", "--json"));
    expect(summary).toMatchObject({ provisioned: 50, failed: 0 });
    rates.remote = summary.unitsPerSecond;

    const verify = remote("ledger", "verify");
    expect(verify.code, verify.stderr).toBe(0);
    const cert = join(s.dir, "SN000051.pem");
    const exported = remote("unit", "export", "--serial", "SN000051", "--cert", "--out", cert);
    expect(exported.code, exported.stderr).toBe(0);
    const v = openssl(["verify", "-CAfile", home.pkiFile("root"), "-untrusted", home.pkiFile("factory-ca"), cert]);
    expect(v.stdout + v.stderr).toMatch(/: OK/);
  });

  it("a client module that cannot reach its server: exit 4 and one line that says so, not 'no token'", () => {
    const r = idmint(["--home", line.home, "station", "run", "--sim", "1", "--json"], { env: { P11_KIT_SERVER_ADDRESS: `unix:path=${join(s.dir, "no-server.sock")}` } });
    expect(r.code).toBe(4);
    expect(oneLineError(r)).toMatch(/shows no token at all: check that the HSM is reachable .*P11_KIT_SERVER_ADDRESS/);
  });

  it("stop() ends the server and the p11-kit-remote serving an open connection", async () => {
    const other = await startP11KitServer(s.dir, new Home(line.home).softhsmConfPath, "stop-check");
    servers.push(other);
    process.env.P11_KIT_SERVER_ADDRESS = other.env.P11_KIT_SERVER_ADDRESS;
    const hsm = Hsm.open({ module: other.module });
    try {
      expect(hsm.tokens().map((t) => t.label)).toContain("factory-ca");
      expect(alive(other.group).length).toBeGreaterThanOrEqual(2);
      await other.stop();
      expect(alive(other.group)).toEqual([]);
    } finally {
      hsm.close();
      delete process.env.P11_KIT_SERVER_ADDRESS;
    }
  });
});
