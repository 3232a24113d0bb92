import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { Home } from "../../core/index.js";
import { idmint, idmintBounded, lineHome, openssl, scratch } from "../helpers.js";
import { startHsmLink, type HsmLink } from "../fixtures/hsm-link.js";
import { P11KIT_MISSING, startP11KitServer, type P11KitServer } from "../fixtures/p11kit.js";

// Issue 18's acceptance: the line behind a distant HSM, 2,000 units at K=16 and 16 sessions,
// with 1 ms and then 5 ms per hop. Rates are the bench's (bench/hsm-link.ts), never asserted here.
const s = scratch("network-line");
let server: P11KitServer | undefined;
let link: HsmLink | undefined;

afterAll(async () => {
  await link?.close();
  await server?.stop();
  s.cleanup();
});

describe.skipIf(P11KIT_MISSING !== undefined)(`the line behind a distant HSM${P11KIT_MISSING ? ` (skipped: ${P11KIT_MISSING})` : ""}`, () => {
  let line: ReturnType<typeof lineHome>;
  let home: Home;

  beforeAll(async () => {
    line = lineHome(s.dir, "line", 4_000);
    home = new Home(line.home);
    server = await startP11KitServer(s.dir, home.softhsmConfPath);
    link = await startHsmLink(server.socket, { dir: s.dir });
    home.writeConfig({ ...home.readConfig(), hsm: { module: server.module, sessions: 16 } });
  });

  for (const [delayMs, first] of [
    [1, 1],
    [5, 2_001],
  ] as const) {
    it(`${delayMs} ms per hop: 2,000 units at K=16 with 16 sessions, every certificate verifies, the ledger verifies`, async () => {
      await link!.setDelay(delayMs);
      const r = await idmintBounded(["--home", line.home, "station", "run", "--sim", "2000", "--slots", "16", "--json"], { env: link!.env, limitMs: 170_000 });
      expect(r.timedOut).toBe(false);
      expect(r.code, r.stderr).toBe(0);
      const summary = JSON.parse(r.stdout);
      expect(summary).toMatchObject({ units: 2000, provisioned: 2000, failed: 0, hsm: { sessions: 16, outages: 0 } });
      console.log(`station run --sim 2000 --slots 16 through p11-kit at ${delayMs} ms per hop: ${summary.unitsPerSecond} units/s, sign p50 ${summary.stages.sign.p50} ms`);

      const certs = Array.from({ length: 2000 }, (_, i) => join(home.certsDir, `SN${String(first + i).padStart(6, "0")}.pem`));
      expect(readdirSync(home.certsDir).length).toBeGreaterThanOrEqual(first + 1999);
      // One openssl process verifies them all; each must say OK.
      const v = openssl(["verify", "-x509_strict", "-CAfile", home.pkiFile("root"), "-untrusted", home.pkiFile("factory-ca"), ...certs]);
      expect(v.code, v.stderr).toBe(0);
      expect(v.stdout.split("\n").filter((l) => l.endsWith(": OK"))).toHaveLength(2000);

      const verify = idmint(["--home", line.home, "ledger", "verify"], { env: link!.env });
      expect(verify.code, verify.stderr).toBe(0);
    }, 180_000);
  }
});
