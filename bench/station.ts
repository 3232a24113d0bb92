/**
 * The factory line's throughput, each figure beside floors measured in the same process and run
 * (bench/README.md says what each step measures and why):
 *
 *  1. Setup: a real SoftHSM home, the key ceremony (`initCa`), and one allocation for every
 *     unit below, imported straight into the station's SerialStore.
 *  2. The line through `runStation` (station-line.ts) at K=1 and at K=8 slots.
 *  3. Floor (a), the bare work of a unit, in three slices around the line runs, and floor (b),
 *     the OpenSSL CLI loop (station-floors.ts).
 *  4. Ratios of the line to both floors.
 *  5. A long run at K=8 for flatness (station-long.ts).
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Home, systemClock, type IdmintConfig } from "../core/index.js";
import { initEmbeddedHsm, withHsm } from "../hsm/index.js";
import { initCa } from "../pki/index.js";
import type { Allocation } from "../serials/index.js";
import { withStation } from "../station/index.js";
import { floorBare, floorBareSlice, floorOpenssl, type FloorSlice } from "./station-floors.js";
import { lineFigures, runSimLine } from "./station-line.js";
import { longRun } from "./station-long.js";
import type { BenchContext, Benchmark, Figure } from "./types.js";

const STATION_ID = "station-1";
// JIT, the first certificate build and the first WAL frames are paid before any clock starts.
const WARMUP_UNITS = 32;

interface Setup {
  home: Home;
  config: IdmintConfig;
  figures: Figure[];
}

export async function setUp(ctx: BenchContext, serialCount: number): Promise<Setup> {
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
    figures: [
      { key: "setup.hsm_init_ms", label: "setup: initEmbeddedHsm (5 SoftHSM tokens)", value: t1 - t0, unit: "ms", digits: 0 },
      { key: "setup.ceremony_ms", label: "setup: initCa (key ceremony, 4 certificates)", value: t2 - t1, unit: "ms", digits: 0 },
      { key: "setup.serials", label: "setup: serials imported (importAllocation)", value: serialCount, unit: "serials" },
      { key: "setup.import_ms", label: "setup: importAllocation", value: t3 - t2, unit: "ms", digits: 0 },
    ],
  };
}

export const stationBenchmark: Benchmark = {
  name: "station",
  async run(ctx) {
    const units = ctx.param("BENCH_STATION_UNITS", 1000);
    const opensslUnits = ctx.param("BENCH_STATION_OPENSSL_UNITS", 100);
    const longUnits = ctx.param("BENCH_STATION_LONG_UNITS", 20_000);
    // A fresh run is slow over its first thousands of units (bench/README.md), so each line run warms up first.
    const warmup = ctx.param("BENCH_STATION_RUN_WARMUP", 3000);
    if (spawnSync("openssl", ["version"]).status !== 0) throw new Error("the openssl CLI is not on PATH: floor (b) needs it");

    const setup = await setUp(ctx, WARMUP_UNITS + 2 * (warmup + units) + longUnits);
    const { home, config } = setup;

    ctx.log(`line warm-up: ${WARMUP_UNITS} units at K=8 (not measured)`);
    await runSimLine(home, config, WARMUP_UNITS, 8);

    // Floor (a) in slices around the line runs, so that the floor and the line meet the same disk.
    const slices: FloorSlice[] = [];
    ctx.log(`floor (a): ${units} units of bare work, three times`);
    slices.push(await floorBareSlice(ctx, config, units, 1));
    ctx.log(`line K=1: ${warmup} warm-up units, then ${units} measured`);
    const k1 = await runSimLine(home, config, warmup + units, 1, {}, warmup);
    ctx.log(`line K=1: ${k1.measured.perS.toFixed(1)} units/s (whole run ${(k1.units / k1.seconds).toFixed(1)})`);
    slices.push(await floorBareSlice(ctx, config, units, 2));
    ctx.log(`line K=8: ${warmup} warm-up units, then ${units} measured`);
    const k8 = await runSimLine(home, config, warmup + units, 8, {}, warmup);
    ctx.log(`line K=8: ${k8.measured.perS.toFixed(1)} units/s (whole run ${(k8.units / k8.seconds).toFixed(1)})`);
    slices.push(await floorBareSlice(ctx, config, units, 3));
    const a = floorBare(slices);
    ctx.log(`floor (a): median slice ${a.perS.toFixed(0)} units/s`);
    ctx.log(`floor (b): ${opensslUnits} units through the OpenSSL CLI`);
    const b = floorOpenssl(ctx, opensslUnits);

    const k1PerS = k1.measured.perS;
    const k8PerS = k8.measured.perS;
    const ratios: Figure[] = [
      { key: "ratio.k8_over_bare", label: "line K=8 / floor (a) bare work", value: k8PerS / a.perS, unit: "x", digits: 3, target: { op: ">=", value: 0.5 } },
      { key: "ratio.k8_over_openssl", label: "line K=8 / floor (b) OpenSSL CLI", value: k8PerS / b.perS, unit: "x", digits: 2, target: { op: ">=", value: 20 } },
      { key: "ratio.k1_over_bare", label: "line K=1 / floor (a) bare work", value: k1PerS / a.perS, unit: "x", digits: 3 },
      { key: "ratio.k1_over_openssl", label: "line K=1 / floor (b) OpenSSL CLI", value: k1PerS / b.perS, unit: "x", digits: 2 },
      { key: "ratio.k8_over_k1", label: "line K=8 / line K=1", value: k8PerS / k1PerS, unit: "x", digits: 2 },
    ];

    ctx.log(`long run: ${longUnits} units at K=8`);
    const long = await longRun(ctx, home, config, longUnits, 8);

    return [...setup.figures, ...lineFigures("k1", "line K=1", k1), ...lineFigures("k8", "line K=8", k8), ...a.figures, ...b.figures, ...ratios, ...long];
  },
};
