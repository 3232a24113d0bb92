/**
 * The directory's read path under load, beside a floor measured in the same run (bench/README.md
 * says what each step measures and why):
 *
 *  1. Populate a store with BENCH_DIRECTORY_CERTS IDevIDs, each with its ledger entry, inclusion
 *     proof and the station's signed checkpoint (directory-populate.ts).
 *  2. Two servers, each in a child process (directory-children.ts): the directory
 *     (`startDirectory` on that store) and a bare node:http server answering each path with the
 *     same bytes from a Map; both are checked to send identical bodies.
 *  3. Load with autocannon from this process (directory-load.ts): a warm-up for each server,
 *     then BENCH_DIRECTORY_ROUNDS rounds that alternate which goes first; medians per server
 *     and the ratios of the directory to the floor.
 */
import { join } from "node:path";
import { ServerChild, compareServers } from "./directory-children.js";
import { load, type LoadResult } from "./directory-load.js";
import { populate } from "./directory-populate.js";
import { median } from "./measure.js";
import type { Benchmark, Figure } from "./types.js";

/** Each server gets this much load before the first measured round (JIT, SQLite and OS caches). */
const WARMUP_SECONDS = 3;

function sideFigures(prefix: string, what: string, runs: readonly LoadResult[], target?: Figure["target"]): Figure[] {
  const m = (f: (r: LoadResult) => number) => median(runs.map(f));
  return [
    { key: `${prefix}.per_s`, label: `${what}: requests/s, median`, value: m((r) => r.perS), unit: "req/s", ...(target ? { target } : {}) },
    { key: `${prefix}.p99_ms`, label: `${what}: p99 latency, median`, value: m((r) => r.p99), unit: "ms", digits: 2 },
    { key: `${prefix}.p50_ms`, label: `${what}: p50 latency, median`, value: m((r) => r.p50), unit: "ms", digits: 2 },
    { key: `${prefix}.server_cpu_pct`, label: `${what}: server CPU (of one core), median`, value: m((r) => r.serverCpuPct), unit: "%", digits: 0 },
    { key: `${prefix}.generator_cpu_pct`, label: `${what}: load generator CPU, median`, value: m((r) => r.generatorCpuPct), unit: "%", digits: 0 },
    { key: `${prefix}.cpu_us`, label: `${what}: server CPU per request, median`, value: m((r) => r.cpuUsPerRequest), unit: "µs/req", digits: 1 },
    ...(runs.some((r) => Number.isNaN(r.otherCpuPct))
      ? []
      : [{ key: `${prefix}.other_cpu_pct`, label: `${what}: other processes' CPU meanwhile, median`, value: m((r) => r.otherCpuPct), unit: "%", digits: 0 }]),
  ];
}

export const directoryBenchmark: Benchmark = {
  name: "directory",
  async run(ctx) {
    const count = ctx.param("BENCH_DIRECTORY_CERTS", 100_000);
    const connections = ctx.param("BENCH_DIRECTORY_CONNECTIONS", 32);
    const seconds = ctx.param("BENCH_DIRECTORY_SECONDS", 10);
    const rounds = ctx.param("BENCH_DIRECTORY_ROUNDS", 3);
    const profileDir = process.env.BENCH_DIRECTORY_CPU_PROF;

    const populated = await populate(ctx, count);
    const paths = populated.serials.map((s) => `/certificates/${s}.crt`);

    if (profileDir) ctx.log(`servers: both run with --cpu-prof; profiles in ${profileDir}/directory and ${profileDir}/baseline when they stop (the main thread's is *.0.001.cpuprofile)`);
    const servers: ServerChild[] = [];
    try {
      const profile = (name: string) => (profileDir ? ["--cpu-prof", `--cpu-prof-dir=${join(profileDir, name)}`] : []);
      const directory = await ServerChild.start("directory", ["directory", populated.dbPath, populated.rootPath, populated.caPath], profile("directory"));
      servers.push(directory);
      const baseline = await ServerChild.start("baseline", ["baseline", populated.dbPath, populated.caPath], profile("baseline"));
      servers.push(baseline);
      const bodyBytes = await compareServers(ctx, populated, directory, baseline);

      ctx.log(`load: warm-up, ${WARMUP_SECONDS} s each`);
      await load(directory, paths, connections, WARMUP_SECONDS);
      await load(baseline, paths, connections, WARMUP_SECONDS);

      const results: Record<"directory" | "baseline", LoadResult[]> = { directory: [], baseline: [] };
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? [directory, baseline] : [baseline, directory];
        for (const server of order) {
          const r = await load(server, paths, connections, seconds);
          results[server.name as "directory" | "baseline"].push(r);
          ctx.log(
            `round ${round + 1}/${rounds} ${server.name.padEnd(9)}: ${r.perS.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ` +
              `server CPU ${r.serverCpuPct.toFixed(0)}% (${r.cpuUsPerRequest.toFixed(1)} µs/req), generator CPU ${r.generatorCpuPct.toFixed(0)}%, others ${r.otherCpuPct.toFixed(0)}%`,
          );
        }
      }
      const dirPerS = median(results.directory.map((r) => r.perS));
      const basePerS = median(results.baseline.map((r) => r.perS));
      const dirP99 = median(results.directory.map((r) => r.p99));
      const baseP99 = median(results.baseline.map((r) => r.p99));
      ctx.log(`ratio: ${(dirPerS / basePerS).toFixed(3)} (per round: ${results.directory.map((r, i) => (r.perS / results.baseline[i]!.perS).toFixed(3)).join(", ")})`);
      return [
        ...populated.figures,
        { key: "load.connections", label: "load: autocannon connections", value: connections, unit: "" },
        { key: "load.seconds", label: "load: seconds per round per server", value: seconds, unit: "s" },
        { key: "load.rounds", label: "load: rounds (alternating first server)", value: rounds, unit: "" },
        { key: "load.body_bytes", label: "load: response body (IDevID + factory CA, PEM), mean", value: bodyBytes, unit: "bytes" },
        ...sideFigures("directory", "directory GET .crt", results.directory),
        ...sideFigures("baseline", "floor: node:http from a Map", results.baseline),
        { key: "ratio.per_s", label: "directory req/s / floor req/s", value: dirPerS / basePerS, unit: "x", digits: 3, target: { op: ">=", value: 0.7 } },
        { key: "ratio.p99", label: "directory p99 / floor p99", value: dirP99 / baseP99, unit: "x", digits: 2 },
        // Capacity per core, whichever side was the bottleneck (the floor's is usually the generator).
        {
          key: "ratio.cpu",
          label: "floor CPU per request / directory CPU per request",
          value: median(results.baseline.map((r) => r.cpuUsPerRequest)) / median(results.directory.map((r) => r.cpuUsPerRequest)),
          unit: "x",
          digits: 3,
        },
      ];
    } finally {
      for (const s of servers.reverse()) await s.stop();
    }
  },
};
