/** What the benchmarks that run the line start from: a SoftHSM home, the key ceremony, an allocation imported. */
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Home, systemClock, type IdmintConfig } from "../core/index.js";
import { initEmbeddedHsm, withHsm } from "../hsm/index.js";
import { initCa } from "../pki/index.js";
import type { Allocation } from "../serials/index.js";
import { withStation } from "../station/index.js";
import type { BenchContext, Figure } from "./types.js";

const STATION_ID = "station-1";

export interface LineHome {
  home: Home;
  config: IdmintConfig;
  /** The allocation imported (unsigned: sign it to hand it to `serials reconcile`). */
  allocation: Allocation;
  figures: Figure[];
}

/**
 * A real SoftHSM home in the benchmark's directory, the key ceremony (`initCa`, as `idmint ca
 * init`), and one allocation of `serialCount` serials imported straight into the station's
 * SerialStore (`importAllocation` takes an already-verified allocation, so no signature is made).
 */
export async function setUpLineHome(ctx: BenchContext, serialCount: number): Promise<LineHome> {
  const home = new Home(join(ctx.dir, "home"));
  const t0 = performance.now();
  initEmbeddedHsm(home);
  const t1 = performance.now();
  const ceremonyConfig = home.readConfig();
  await withHsm({ module: ceremonyConfig.hsm.module, softhsmConf: ceremonyConfig.hsm.softhsmConf, env: process.env }, (hsm) => initCa(home, ceremonyConfig, STATION_ID, hsm));
  const t2 = performance.now();
  const config = home.readConfig();

  const now = Date.now();
  const width = Math.max(8, String(serialCount).length);
  const allocation: Allocation = {
    format: "idmint-allocation/1",
    allocationId: "bench-allocation-1",
    order: "BENCH-1",
    station: config.station.id,
    model: "Bench Router",
    notBefore: new Date(now - 86_400_000).toISOString(),
    notAfter: new Date(now + 365 * 86_400_000).toISOString(),
    count: serialCount,
    ranges: [{ prefix: "SN", start: 1, count: serialCount, width }],
    createdAt: new Date(now).toISOString(),
  };
  const imported = await withStation(home, systemClock, ({ serials }) => serials.importAllocation(allocation, JSON.stringify(allocation), config.station.id));
  const t3 = performance.now();
  if (!imported.imported || imported.count !== serialCount) throw new Error(`the allocation import took ${imported.count} serials, expected ${serialCount}`);
  ctx.log(`setup: SoftHSM home ${(t1 - t0).toFixed(0)} ms, ceremony ${(t2 - t1).toFixed(0)} ms, ${serialCount} serials imported in ${(t3 - t2).toFixed(0)} ms`);
  return {
    home,
    config,
    allocation,
    figures: [
      { key: "setup.hsm_init_ms", label: "setup: initEmbeddedHsm (5 SoftHSM tokens)", value: t1 - t0, unit: "ms", digits: 0 },
      { key: "setup.ceremony_ms", label: "setup: initCa (key ceremony, 4 certificates)", value: t2 - t1, unit: "ms", digits: 0 },
      { key: "setup.serials", label: "setup: serials imported (importAllocation)", value: serialCount, unit: "serials" },
      { key: "setup.import_ms", label: "setup: importAllocation", value: t3 - t2, unit: "ms", digits: 0 },
    ],
  };
}
