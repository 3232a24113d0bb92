/**
 * `npm run bench -- cmp`: the line over CMP (the station's --cmp endpoint, the simulated units'
 * CMP client in a process of their own, p10cr + certConf, K=8 at once) beside the TCP link
 * (`station run --sim`, K=8) in the same run and home. Each is measured over the units after
 * its first BENCH_CMP_WARMUP. Target: CMP >= 0.7x TCP.
 */
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { systemClock } from "../core/index.js";
import type { CmpUnitsResult } from "../sim/index.js";
import { runStation } from "../station/index.js";
import { setUpLineHome } from "./line-home.js";
import { perSecond, processCpuMs } from "./measure.js";
import { runSimLine } from "./station-line.js";
import type { Benchmark, Figure } from "./types.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const SLOTS = 8;
const SECRET = "bench-line-secret";

export const cmpBenchmark: Benchmark = {
  name: "cmp",
  async run(ctx) {
    const units = ctx.param("BENCH_CMP_UNITS", 1000);
    const warmup = ctx.param("BENCH_CMP_WARMUP", 200);
    const count = warmup + units;
    const { home, config, figures } = await setUpLineHome(ctx, 2 * count);

    ctx.log(`TCP link: ${count} units at K=${SLOTS} (the first ${warmup} not measured)`);
    const tcp = await runSimLine(home, config, count, SLOTS, {}, warmup);
    ctx.log(`TCP link: ${tcp.measured.perS.toFixed(1)} units/s`);

    ctx.log(`CMP: ${count} units at K=${SLOTS} (the first ${warmup} not measured)`);
    let stop!: () => void;
    const until = new Promise<void>((resolve) => (stop = resolve));
    let ended = 0;
    let childPid = 0;
    const mark = () => ({ at: performance.now(), station: processCpuMs(process.pid), units: processCpuMs(childPid) });
    let from: ReturnType<typeof mark> | undefined;
    let to: ReturnType<typeof mark> | undefined;
    let units$: Promise<CmpUnitsResult> | undefined;
    const width = Math.max(8, String(2 * count).length);
    const { summary } = await runStation({
      home,
      config,
      env: process.env,
      clock: systemClock,
      cmp: {
        host: "127.0.0.1",
        port: 0,
        secret: new Uint8Array(Buffer.from(SECRET)),
        until,
        onListening: (url) => {
          const line = { unitsDir: home.unitsDir, root: readFileSync(home.pkiFile("root"), "utf8"), count, prefix: "SN", start: count + 1, width, hwType: config.profile.hwTypeOid };
          const child = fork(join(HERE, "cmp-units.ts"), [JSON.stringify({ line, cmp: { url, secret: SECRET, concurrency: SLOTS, timeoutMs: 30_000 } })], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
          childPid = child.pid!;
          units$ = new Promise((resolve, reject) => {
            child.once("message", (m) => resolve(m as CmpUnitsResult));
            child.once("exit", (code) => reject(new Error(`the CMP units' process exited (${code}) without a result`)));
          });
          // The units' process ending (with every unit done, or failing) ends the line too.
          void units$.finally(stop).catch(() => undefined);
        },
      },
      slots: SLOTS,
      keyAlgorithm: "EC-P256",
      timeoutMs: 10_000,
      onUnit: () => {
        ended++;
        if (ended === warmup) from = mark();
        if (ended === count) to = mark();
      },
    });
    const result = await units$!;
    if (summary.provisioned !== count || result.enrolled !== count || !from || !to) {
      throw new Error(`over CMP the station provisioned ${summary.provisioned} and the units enrolled ${result.enrolled} of ${count}: ${JSON.stringify(result.failures)} ${JSON.stringify(summary.failures)}`);
    }
    const cmpPerS = perSecond(units, to.at - from.at);
    ctx.log(`CMP: ${cmpPerS.toFixed(1)} units/s`);
    const stage = (s: keyof typeof summary.stages) => summary.stages[s]?.p50 ?? 0;
    const out: Figure[] = [
      ...figures,
      { key: "tcp.per_s", label: `TCP link K=${SLOTS}: throughput (after ${warmup} units)`, value: tcp.measured.perS, unit: "units/s", digits: 1 },
      { key: "cmp.per_s", label: `CMP K=${SLOTS}: throughput (after ${warmup} units)`, value: cmpPerS, unit: "units/s", digits: 1 },
      { key: "ratio.cmp_over_tcp", label: "CMP / TCP link", value: cmpPerS / tcp.measured.perS, unit: "x", digits: 2, target: { op: ">=", value: 0.7 } },
      { key: "cmp.station_cpu_ms", label: "CMP: station process CPU per unit", value: (to.station - from.station) / units, unit: "ms", digits: 3 },
      { key: "cmp.units_cpu_ms", label: "CMP: the units' process CPU per unit", value: (to.units - from.units) / units, unit: "ms", digits: 3 },
      { key: "tcp.station_cpu_ms", label: "TCP link: station process CPU per unit", value: tcp.measured.stationCpuMsPerUnit, unit: "ms", digits: 3 },
      { key: "tcp.simulator_cpu_ms", label: "TCP link: simulator process CPU per unit", value: tcp.measured.simulatorCpuMsPerUnit, unit: "ms", digits: 3 },
      { key: "cmp.check_p50_ms", label: "CMP: stage check (POP), p50", value: stage("check"), unit: "ms", digits: 2 },
      { key: "cmp.install_p50_ms", label: "CMP: stage install (cp -> certConf), p50", value: stage("install"), unit: "ms", digits: 2 },
      { key: "cmp.total_p50_ms", label: "CMP: a unit, request to certConf, p50", value: stage("total"), unit: "ms", digits: 2 },
      { key: "tcp.total_p50_ms", label: "TCP link: a unit, hello to ack, p50", value: tcp.stages.total?.p50 ?? 0, unit: "ms", digits: 2 },
    ];
    return out;
  },
};
