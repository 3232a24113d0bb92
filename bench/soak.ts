/**
 * The soak: N simulated units through the line at K=8 on SoftHSM (`station run --sim N`, no
 * certificate files, as a million-unit order would run), sampled every tenth of the run: units/s
 * of that tenth, RSS of the station and of the simulator, station.db and its WAL, the factory-ca
 * token's objects, open file descriptors of both processes. Then, each in a process of its own
 * through the real binary: `station report --tiles`, `serials reconcile --tiles` and `ledger
 * verify`, with their wall time and peak RSS. Targets: the tenths from the second to the last
 * flat within 10% (units/s, and station RSS after a full GC: as sampled, RSS swings with when V8
 * last collected).
 */
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { withHsm } from "../hsm/index.js";
import { expandSerials, signDocument } from "../serials/index.js";
import { MB, databaseMb, memory, perSecond, processCpuMs, settledMemory } from "./measure.js";
import { setUpLineHome } from "./line-home.js";
import { runSimLine } from "./station-line.js";
import { TokenInspector } from "./token-inspector.js";
import type { Benchmark, Figure } from "./types.js";

const BIN = fileURLToPath(new URL("../bin/idmint.js", import.meta.url));

interface Sample {
  units: number;
  perS: number;
  /** CPU per unit in this tenth: flat even when other load on the machine moves units/s. */
  stationCpuMs: number;
  simulatorCpuMs: number;
  stationRssMb: number;
  /** After a full GC: what the station keeps, which is what must stay flat. */
  stationSettledRssMb: number;
  stationHeapMb: number;
  simulatorRssMb: number;
  dbMb: number;
  walMb: number;
  tokenObjects: number;
  stationFds: number;
  simulatorFds: number;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

function fds(pid: number | "self"): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function sizeMb(path: string): number {
  try {
    return statSync(path).size / MB;
  } catch {
    return 0;
  }
}

/** The real binary under /usr/bin/time: its wall time, peak RSS and stdout. */
function timed(args: string[]): { seconds: number; peakMb: number; stdout: string } {
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", process.execPath, BIN, ...args], { encoding: "utf8", maxBuffer: 64 * MB });
  if (r.status !== 0) throw new Error(`idmint ${args.join(" ")}: ${r.stderr}`);
  const [seconds, kb] = r.stderr.trim().split("\n").pop()!.split(" ").map(Number);
  return { seconds: seconds!, peakMb: kb! / 1024, stdout: r.stdout };
}

export const soakBenchmark: Benchmark = {
  name: "soak",
  async run(ctx) {
    const count = ctx.param("BENCH_SOAK_UNITS", 20_000);
    const gcAvailable = typeof (globalThis as { gc?: unknown }).gc === "function";
    const slots = ctx.param("BENCH_SOAK_SLOTS", 8);
    const { home, config, allocation, figures } = await setUpLineHome(ctx, count);
    const inspector = new TokenInspector(config, { "factory-ca": config.keys.factoryCa });
    const samples: Sample[] = [];
    try {
      const tenth = Math.max(1, Math.floor(count / 10));
      let simulatorPid = 0;
      let done = 0;
      let from = 0;
      let cpuFrom = { station: 0, simulator: 0 };
      const cpu = () => ({ station: processCpuMs(process.pid), simulator: processCpuMs(simulatorPid) });
      const sample = () => {
        const now = performance.now();
        const used = cpu();
        const raw = memory();
        const settled = settledMemory();
        samples.push({
          units: done,
          perS: perSecond(tenth, now - from),
          stationCpuMs: (used.station - cpuFrom.station) / tenth,
          simulatorCpuMs: (used.simulator - cpuFrom.simulator) / tenth,
          stationRssMb: raw.rssMb,
          stationSettledRssMb: settled.rssMb,
          stationHeapMb: settled.heapMb,
          simulatorRssMb: rssMb(simulatorPid),
          dbMb: sizeMb(home.stationDbPath),
          walMb: sizeMb(`${home.stationDbPath}-wal`),
          tokenObjects: inspector.count("factory-ca").tokenObjects,
          stationFds: fds("self"),
          simulatorFds: fds(simulatorPid),
        });
        const s = samples[samples.length - 1]!;
        ctx.log(
          `${s.units}/${count} units, ${s.perS.toFixed(0)} units/s this tenth (CPU per unit: station ${s.stationCpuMs.toFixed(2)} ms, simulator ${s.simulatorCpuMs.toFixed(2)} ms), RSS station ${s.stationRssMb.toFixed(0)} MB (${s.stationSettledRssMb.toFixed(0)} MB after gc, JS heap ${s.stationHeapMb.toFixed(0)} MB) simulator ${s.simulatorRssMb.toFixed(0)} MB, ` +
            `station.db ${s.dbMb.toFixed(1)} MB + WAL ${s.walMb.toFixed(1)} MB, factory-ca token objects ${s.tokenObjects}, fds station ${s.stationFds} simulator ${s.simulatorFds}`,
        );
        // The sampling (the token inspector probes every session handle) is not the line's time.
        from = performance.now();
        cpuFrom = cpu();
      };
      await runSimLine(
        home,
        config,
        count,
        slots,
        {
          beforeUnits: (pid) => {
            simulatorPid = pid;
            from = performance.now();
            cpuFrom = cpu();
          },
          onUnit: () => {
            if (++done % tenth === 0 && done <= 10 * tenth) sample();
          },
        },
        0,
        { certsDir: false },
      );
    } finally {
      inspector.close();
    }

    // The vendor's side needs the allocation as a signed list: sign the one the bench imported.
    const allocationFile = join(ctx.dir, "allocation.json");
    const signed = await withHsm({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, env: process.env }, (hsm) =>
      signDocument(allocation, hsm.signer(config.keys.allocationSigner), readFileSync(home.pkiFile("allocation-signer"), "utf8")),
    );
    writeFileSync(allocationFile, JSON.stringify(signed));
    if (expandSerials(allocation).length !== count) throw new Error("the signed allocation does not hold the bench's serials");

    const reportFile = join(ctx.dir, "report.json");
    const tiles = join(ctx.dir, "tiles");
    const report = timed(["--home", home.root, "station", "report", "--out", reportFile, "--tiles", tiles, "--json"]);
    const reportMb = statSync(reportFile).size / MB;
    ctx.log(`station report --tiles: ${reportMb.toFixed(1)} MB in ${report.seconds.toFixed(1)} s, peak RSS ${report.peakMb.toFixed(0)} MB`);
    const reconcile = timed(["--home", home.root, "serials", "reconcile", "--allocation", allocationFile, "--report", reportFile, "--tiles", tiles, "--json"]);
    const reconciled = JSON.parse(reconcile.stdout) as { ok: boolean; provisioned: number };
    if (!reconciled.ok || reconciled.provisioned !== count) throw new Error(`reconcile: ${reconcile.stdout.slice(0, 500)}`);
    ctx.log(`serials reconcile --tiles: ${reconcile.seconds.toFixed(1)} s, peak RSS ${reconcile.peakMb.toFixed(0)} MB`);
    const verify = timed(["--home", home.root, "ledger", "verify", "--json"]);
    const entries = (JSON.parse(verify.stdout) as { entries: number }).entries;
    ctx.log(`ledger verify: ${entries} entries in ${verify.seconds.toFixed(1)} s, peak RSS ${verify.peakMb.toFixed(0)} MB`);

    const steady = samples.slice(1);
    const spread = (xs: number[]) => (Math.max(...xs) - Math.min(...xs)) / Math.min(...xs);
    const last = samples[samples.length - 1]!;
    return [
      ...figures,
      ...samples.flatMap((s, i): Figure[] => [
        { key: `t${i + 1}.per_s`, label: `soak: units/s in tenth ${i + 1} (to ${s.units} units)`, value: s.perS, unit: "units/s", digits: 1 },
        { key: `t${i + 1}.station_cpu_ms`, label: `soak: station CPU per unit in tenth ${i + 1}`, value: s.stationCpuMs, unit: "ms", digits: 2 },
        { key: `t${i + 1}.simulator_cpu_ms`, label: `soak: simulator CPU per unit in tenth ${i + 1}`, value: s.simulatorCpuMs, unit: "ms", digits: 2 },
        { key: `t${i + 1}.station_rss_mb`, label: `soak: station RSS after tenth ${i + 1}`, value: s.stationRssMb, unit: "MB", digits: 0 },
        { key: `t${i + 1}.station_settled_rss_mb`, label: `soak: station RSS after gc, tenth ${i + 1}`, value: s.stationSettledRssMb, unit: "MB", digits: 0 },
        { key: `t${i + 1}.simulator_rss_mb`, label: `soak: simulator RSS after tenth ${i + 1}`, value: s.simulatorRssMb, unit: "MB", digits: 0 },
        { key: `t${i + 1}.db_mb`, label: `soak: station.db after tenth ${i + 1}`, value: s.dbMb, unit: "MB", digits: 1 },
        { key: `t${i + 1}.wal_mb`, label: `soak: station.db WAL after tenth ${i + 1}`, value: s.walMb, unit: "MB", digits: 1 },
        { key: `t${i + 1}.token_objects`, label: `soak: factory-ca token objects after tenth ${i + 1}`, value: s.tokenObjects, unit: "objects" },
        { key: `t${i + 1}.fds`, label: `soak: open fds station / simulator after tenth ${i + 1}`, value: s.stationFds + s.simulatorFds / 1000, unit: "st.sim", digits: 3 },
      ]),
      { key: "per_s_spread", label: "soak: units/s spread over tenths 2..10 ((max-min)/min)", value: spread(steady.map((s) => s.perS)), unit: "ratio", digits: 3, target: { op: "<=", value: 0.1 } },
      { key: "cpu_spread", label: "soak: station CPU per unit, spread over tenths 2..10", value: spread(steady.map((s) => s.stationCpuMs)), unit: "ratio", digits: 3, target: { op: "<=", value: 0.1 } },
      // The simulator does the same work for every unit, so its CPU per unit moves only with the VM's speed; the station's over it moves only if the station's work per unit grows.
      {
        key: "cpu_vs_simulator_spread",
        label: "soak: station CPU per unit over the simulator's, spread over tenths 2..10",
        value: spread(steady.map((s) => s.stationCpuMs / s.simulatorCpuMs)),
        unit: "ratio",
        digits: 3,
      },
      { key: "rss_spread", label: "soak: station RSS spread over tenths 2..10 (as sampled)", value: spread(steady.map((s) => s.stationRssMb)), unit: "ratio", digits: 3 },
      { key: "settled_rss_spread", label: `soak: station RSS after gc, spread over tenths 2..10${gcAvailable ? "" : " (no gc: run with --expose-gc)"}`, value: spread(steady.map((s) => s.stationSettledRssMb)), unit: "ratio", digits: 3, target: { op: "<=", value: 0.1 } },
      { key: "db_kb_per_unit", label: "soak: station.db + WAL per unit at the end", value: (databaseMb(home.stationDbPath) * 1024) / count, unit: "KB", digits: 2 },
      { key: "report_mb", label: "soak: station report --tiles, size", value: reportMb, unit: "MB", digits: 1, target: { op: "<=", value: (100 * count) / 1_000_000 } },
      { key: "report_s", label: "soak: station report --tiles, wall time (tiles written too)", value: report.seconds, unit: "s", digits: 1 },
      { key: "report_peak_mb", label: "soak: station report --tiles, peak RSS", value: report.peakMb, unit: "MB", digits: 0 },
      { key: "reconcile_s", label: "soak: serials reconcile --tiles, wall time", value: reconcile.seconds, unit: "s", digits: 1 },
      { key: "reconcile_peak_mb", label: "soak: serials reconcile --tiles, peak RSS", value: reconcile.peakMb, unit: "MB", digits: 0, target: { op: "<=", value: 500 } },
      { key: "verify_per_s", label: "soak: ledger verify (the binary, start-up included)", value: entries / verify.seconds, unit: "entries/s", digits: 0 },
      { key: "last_units", label: "soak: units", value: last.units, unit: "units" },
    ];
  },
};
