/**
 * One `station run --sim COUNT --slots SLOTS` for the station benchmark (soft keystore, EC-P256
 * units, no faults) through `runStation`, the wiring the command uses: the station in this
 * process, the units in a simulator process of their own. Also the figures of such a run.
 */
import { performance } from "node:perf_hooks";
import { systemClock, type Home, type IdmintConfig } from "../core/index.js";
import { runStation, type LineSummary, type StationRunOptions, type TimedStage } from "../station/index.js";
import { perSecond, processCpuMs } from "./measure.js";
import type { Figure } from "./types.js";

// What `station run` uses unless told otherwise.
const UNIT_TIMEOUT_MS = 10_000;
const SLOW_MS = 5_000;
const STAGES: readonly TimedStage[] = ["hello", "genkey", "check", "intent", "sign", "store", "install", "total"];

export interface LineHooks {
  /** Called with the line's HSM open, its CA signer made and the simulator started, before the first unit. */
  beforeUnits?(simulatorPid: number): void;
  /** Called as the last unit ends, with the line's HSM and simulator still open. */
  afterUnits?(): void;
  onUnit?(): void;
}

export interface SimLineResult extends LineSummary {
  /**
   * The units after the first `warmup` of the run (all of them without a warm-up): how many,
   * their throughput, and the CPU per unit of the station's process and of the simulator's,
   * in ms (which side is the limit).
   */
  measured: { units: number; perS: number; stationCpuMsPerUnit: number; simulatorCpuMsPerUnit: number };
}

/**
 * The line for `count` units; with `warmup`, its first `warmup` units are the run's warm-up
 * (the simulator process, the writer thread and their JIT start cold with every run) and
 * `measured` covers the units after them, in the same run.
 */
export async function runSimLine(home: Home, config: IdmintConfig, count: number, slots: number, hooks: LineHooks = {}, warmup = 0, options: Pick<StationRunOptions, "certsDir"> = {}): Promise<SimLineResult> {
  let simulatorPid = 0;
  const mark = () => ({ at: performance.now(), station: processCpuMs(process.pid), simulator: processCpuMs(simulatorPid) });
  let from: ReturnType<typeof mark> | undefined;
  let to: ReturnType<typeof mark> | undefined;
  let ended = 0;
  const { summary } = await runStation({
    home,
    config,
    env: process.env,
    clock: systemClock,
    source: { sim: { count, keystore: "soft", faults: [], slowMs: SLOW_MS } },
    slots,
    keyAlgorithm: "EC-P256",
    timeoutMs: UNIT_TIMEOUT_MS,
    ...options,
    onStart: (line) => {
      if (line.total !== count) throw new Error(`only ${line.total} serials are left for a line of ${count}: the allocation is too small`);
      simulatorPid = line.simulatorPid!;
      hooks.beforeUnits?.(simulatorPid);
      from = mark();
    },
    onUnit: () => {
      ended++;
      if (ended === warmup) from = mark();
      hooks.onUnit?.();
      // The last unit: the simulator is still running, so its CPU can still be read.
      if (ended === count) {
        to = mark();
        hooks.afterUnits?.();
      }
    },
  });
  if (summary.units !== count || summary.provisioned !== count || !from || !to) {
    throw new Error(`the line provisioned ${summary.provisioned} of ${count} units (${summary.units} seen): failures ${JSON.stringify(summary.failures)}`);
  }
  const measured = count - warmup;
  return {
    ...summary,
    measured: {
      units: measured,
      perS: perSecond(measured, to.at - from.at),
      stationCpuMsPerUnit: (to.station - from.station) / measured,
      simulatorCpuMsPerUnit: (to.simulator - from.simulator) / measured,
    },
  };
}

export function lineFigures(prefix: string, what: string, summary: SimLineResult): Figure[] {
  const warmup = summary.units - summary.measured.units;
  const after = warmup > 0 ? ` (the ${summary.measured.units} units after the run's first ${warmup})` : "";
  const figures: Figure[] = [
    { key: `${prefix}.units`, label: `${what}: units`, value: summary.units, unit: "units" },
    { key: `${prefix}.per_s`, label: `${what}: throughput${after}`, value: summary.measured.perS, unit: "units/s", digits: 1 },
    ...(warmup > 0 ? [{ key: `${prefix}.whole_run_per_s`, label: `${what}: throughput of the whole run, its start included`, value: summary.units / summary.seconds, unit: "units/s", digits: 1 }] : []),
    { key: `${prefix}.seconds`, label: `${what}: wall time`, value: summary.seconds, unit: "s", digits: 1 },
    { key: `${prefix}.commits_per_unit`, label: `${what}: SQLite commits per unit`, value: summary.commits / Math.max(summary.units, 1), unit: "commits", digits: 2 },
    { key: `${prefix}.changes_per_commit`, label: `${what}: unit state changes per commit (group commit)`, value: summary.changesPerCommit, unit: "changes", digits: 2 },
    { key: `${prefix}.station_cpu_ms`, label: `${what}: station process CPU per unit${after}`, value: summary.measured.stationCpuMsPerUnit, unit: "ms", digits: 3 },
    { key: `${prefix}.simulator_cpu_ms`, label: `${what}: simulator process CPU per unit${after}`, value: summary.measured.simulatorCpuMsPerUnit, unit: "ms", digits: 3 },
  ];
  for (const stage of STAGES) {
    const s = summary.stages[stage];
    if (!s) continue;
    figures.push(
      { key: `${prefix}.${stage}_p50_ms`, label: `${what}: stage ${stage}, p50`, value: s.p50, unit: "ms", digits: 2 },
      { key: `${prefix}.${stage}_p99_ms`, label: `${what}: stage ${stage}, p99`, value: s.p99, unit: "ms", digits: 2 },
    );
  }
  return figures;
}
