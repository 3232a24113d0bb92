/**
 * What the dashboard costs the line: the same home's line at K=8, run after run, alternately
 * with nothing watching, with the dashboard process and 5 event-stream clients (the server's
 * whole cost: one read a second shared by every client), and with the dashboard open in 5
 * headless Chromium pages on the same machine (which also pay for rendering, on the line's
 * two cores). Each run warms up first; the figures are the medians of each kind's runs.
 */
import { readdirSync, readFileSync } from "node:fs";
import { startDashboardProcess, type DashboardProcess } from "../dashboard/index.js";
import { CHROMIUM, NO_CHROMIUM, openBrowser } from "../test/fixtures/browser.js";
import { median, processCpuMs } from "./measure.js";
import { setUpLineHome } from "./line-home.js";
import { runSimLine } from "./station-line.js";
import type { BenchContext, Benchmark, Figure } from "./types.js";

const VIEWERS = 5;
type Kind = "bare" | "sse" | "browsers";

/** Five clients reading /api/events as a page does, without a page; the returned function ends them. */
async function eventClients(url: string): Promise<() => void> {
  const abort = new AbortController();
  const responses = await Promise.all(Array.from({ length: VIEWERS }, () => fetch(`${url}/api/events`, { signal: abort.signal })));
  for (const r of responses) void r.body!.pipeTo(new WritableStream()).catch(() => undefined);
  return () => abort.abort();
}

/** CPU (ms) used so far by this process's descendants whose command starts with `name` (e.g. every Chromium process). */
function descendantsCpuMs(name: string): number {
  const parent = new Map<number, { ppid: number; comm: string }>();
  for (const entry of readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      parent.set(Number(entry), { ppid: Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]), comm });
    } catch {
      // Ended since the listing.
    }
  }
  const isMine = (pid: number): boolean => {
    for (let p = parent.get(pid)?.ppid; p !== undefined && p > 1; p = parent.get(p)?.ppid) if (p === process.pid) return true;
    return false;
  };
  let ms = 0;
  for (const [pid, { comm }] of parent) {
    if (!comm.startsWith(name) || !isMine(pid)) continue;
    try {
      ms += processCpuMs(pid);
    } catch {
      // Ended since the listing: its time is lost to both ends of the measure.
    }
  }
  return ms;
}

async function watched(ctx: BenchContext, kind: Kind, url: string): Promise<() => Promise<void>> {
  if (kind === "sse") {
    const stop = await eventClients(url);
    return async () => stop();
  }
  const browsers = await Promise.all(Array.from({ length: VIEWERS }, () => openBrowser(ctx.dir)));
  await Promise.all(browsers.map(async (b) => (await b.newPage()).goto(url)));
  return async () => void (await Promise.all(browsers.map((b) => b.close())));
}

export const dashboardBenchmark: Benchmark = {
  name: "dashboard",
  async run(ctx) {
    const units = ctx.param("BENCH_DASHBOARD_UNITS", 2000);
    const warmup = ctx.param("BENCH_DASHBOARD_WARMUP", 1000);
    const rounds = ctx.param("BENCH_DASHBOARD_ROUNDS", 3);
    const kinds: Kind[] = CHROMIUM ? ["bare", "sse", "browsers"] : ["bare", "sse"];
    if (!CHROMIUM) ctx.log(NO_CHROMIUM);
    const { home, config } = await setUpLineHome(ctx, rounds * kinds.length * (warmup + units) + 32);
    await runSimLine(home, config, 32, 8);
    const rates: Record<Kind, number[]> = { bare: [], sse: [], browsers: [] };
    // The station's CPU per unit: what the machine's load moves far less than the rate.
    const stationCpu: Record<Kind, number[]> = { bare: [], sse: [], browsers: [] };
    // The dashboard process's CPU per second of a watched run: its own share of the two cores.
    const dashboardCpu: number[] = [];
    // The 5 Chromium pages' CPU per second: what they take from the line's two cores.
    const browsersCpu: number[] = [];
    const dashboard: DashboardProcess = await startDashboardProcess({ home: home.root, port: 0, host: "127.0.0.1" });
    try {
      for (let round = 0; round < rounds; round++) {
        // A different kind goes first each round, so the machine's drift spreads over all three.
        for (const kind of [...kinds.slice(round % kinds.length), ...kinds.slice(0, round % kinds.length)]) {
          const stop = kind === "bare" ? async () => undefined : await watched(ctx, kind, dashboard.url);
          try {
            const cpu = processCpuMs(dashboard.pid);
            const chromium = descendantsCpuMs("chrom");
            const r = await runSimLine(home, config, warmup + units, 8, {}, warmup);
            if (kind !== "bare") dashboardCpu.push((processCpuMs(dashboard.pid) - cpu) / r.seconds);
            if (kind === "browsers") browsersCpu.push((descendantsCpuMs("chrom") - chromium) / r.seconds);
            rates[kind].push(r.measured.perS);
            stationCpu[kind].push(r.measured.stationCpuMsPerUnit);
            ctx.log(`round ${round + 1}, ${kind}: ${r.measured.perS.toFixed(1)} units/s`);
          } finally {
            await stop();
          }
        }
      }
    } finally {
      await dashboard.close();
    }
    const bare = median(rates.bare);
    const figures: Figure[] = [
      { key: "bare.per_s", label: "line K=8, nothing watching (median)", value: bare, unit: "units/s", digits: 1 },
      { key: "bare.station_cpu_ms", label: "station CPU per unit, nothing watching (median)", value: median(stationCpu.bare), unit: "ms", digits: 3 },
      { key: "dashboard_cpu_ms_per_s", label: "dashboard process CPU while watched (median)", value: median(dashboardCpu), unit: "ms/s", digits: 1 },
    ];
    for (const kind of kinds.filter((k) => k !== "bare")) {
      const what = kind === "sse" ? `${VIEWERS} event-stream clients` : `${VIEWERS} Chromium pages on this machine`;
      const rate = median(rates[kind]);
      figures.push(
        { key: `${kind}.per_s`, label: `line K=8, dashboard with ${what} (median)`, value: rate, unit: "units/s", digits: 1 },
        { key: `${kind}.station_cpu_ms`, label: `station CPU per unit, dashboard with ${what} (median)`, value: median(stationCpu[kind]), unit: "ms", digits: 3 },
        { key: `${kind}.cost_pct`, label: `the line's loss with ${what}`, value: (100 * (bare - rate)) / bare, unit: "%", digits: 1, target: { op: "<=", value: 5 } },
      );
    }
    if (browsersCpu.length) figures.push({ key: "browsers.cpu_ms_per_s", label: `${VIEWERS} Chromium pages' CPU while watching (median)`, value: median(browsersCpu), unit: "ms/s", digits: 1 });
    return figures;
  },
};
