/**
 * The directory on PostgreSQL behind two replicas, beside the bare node:http floor in the same
 * run (bench/README.md, directory-pg):
 *
 *  1. Populate an SQLite store as the directory benchmark does (directory-populate.ts), then
 *     move it into a throw-away PostgreSQL cluster with `migrateSqliteToPg` (what
 *     `idmint directory migrate` runs), timed.
 *  2. Two directory replicas on that database, each a child process, and the floor (a Map of
 *     the same bytes); both replicas are checked to answer what the floor answers.
 *  3. GET load: the connections split over the two replicas against all of them on the floor,
 *     alternating rounds; the replicas' CPU includes PostgreSQL's processes.
 *  4. Upload throughput into fresh databases with one replica, then two (directory-uploads.ts).
 */
import { performance } from "node:perf_hooks";
import { migrateSqliteToPg } from "../directory/index.js";
import { pgUnavailable, startPgCluster } from "../test/postgres.js";
import { ServerChild, compareServers } from "./directory-children.js";
import { load, type LoadResult } from "./directory-load.js";
import { populate } from "./directory-populate.js";
import { allocate, prepareUploads, sendUploads } from "./directory-uploads.js";
import { median, processCpuMs } from "./measure.js";
import type { Benchmark, Figure } from "./types.js";

const WARMUP_SECONDS = 3;
const UPLOAD_BATCH = 200;

/**
 * CPU of a PostgreSQL cluster so far, in ms: the postmaster's own and its reaped children's,
 * plus the live backends'. A backend that ended (a pool
 * closes idle connections) moves from the second sum into the first, so nothing is lost.
 */
function clusterCpuMs(pids: readonly number[]): number {
  const [main, ...children] = pids;
  return children.reduce((sum, pid) => {
    try {
      return sum + processCpuMs(pid);
    } catch {
      // Ended between the listing and the reading: counted in the postmaster's next reading.
      return sum;
    }
  }, processCpuMs(main!, { reapedChildren: true }));
}

function sideFigures(prefix: string, what: string, runs: readonly LoadResult[]): Figure[] {
  const m = (f: (r: LoadResult) => number) => median(runs.map(f));
  return [
    { key: `${prefix}.per_s`, label: `${what}: requests/s, median`, value: m((r) => r.perS), unit: "req/s" },
    { key: `${prefix}.p99_ms`, label: `${what}: p99 latency, median`, value: m((r) => r.p99), unit: "ms", digits: 2 },
    { key: `${prefix}.p50_ms`, label: `${what}: p50 latency, median`, value: m((r) => r.p50), unit: "ms", digits: 2 },
    { key: `${prefix}.server_cpu_pct`, label: `${what}: server CPU (of one core), median`, value: m((r) => r.serverCpuPct), unit: "%", digits: 0 },
    { key: `${prefix}.cpu_us`, label: `${what}: server CPU per request, median`, value: m((r) => r.cpuUsPerRequest), unit: "µs/req", digits: 1 },
    { key: `${prefix}.generator_cpu_pct`, label: `${what}: load generator CPU, median`, value: m((r) => r.generatorCpuPct), unit: "%", digits: 0 },
  ];
}

export const directoryPgBenchmark: Benchmark = {
  name: "directory-pg",
  async run(ctx) {
    const why = pgUnavailable();
    if (why) throw new Error(why);
    const count = ctx.param("BENCH_DIRECTORY_PG_CERTS", 200_000);
    const connections = ctx.param("BENCH_DIRECTORY_CONNECTIONS", 32);
    const seconds = ctx.param("BENCH_DIRECTORY_SECONDS", 10);
    const rounds = ctx.param("BENCH_DIRECTORY_ROUNDS", 3);
    const stations = ctx.param("BENCH_DIRECTORY_PG_STATIONS", 4);
    const perStation = ctx.param("BENCH_DIRECTORY_PG_UPLOAD_CERTS", 2000);

    const populated = await populate(ctx, count);
    const paths = populated.serials.map((s) => `/certificates/${s}.crt`);
    const cluster = startPgCluster();
    const servers: ServerChild[] = [];
    try {
      const url = cluster.createDb("directory");
      const t0 = performance.now();
      const moved = await migrateSqliteToPg(populated.dbPath, url);
      const migrateS = (performance.now() - t0) / 1000;
      ctx.log(`migrate: ${moved.rows.directory_certificates} certificates into PostgreSQL in ${migrateS.toFixed(1)} s, verified`);
      const pgCpuMs = () => clusterCpuMs(cluster.pids());

      const replicas: ServerChild[] = [];
      for (const name of ["replica-1", "replica-2"]) {
        const r = await ServerChild.start(name, ["directory", url, populated.rootPath, populated.caPath]);
        servers.push(r);
        replicas.push(r);
      }
      const baseline = await ServerChild.start("baseline", ["baseline", populated.dbPath, populated.caPath]);
      servers.push(baseline);
      let bodyBytes = 0;
      for (const r of replicas) bodyBytes = await compareServers(ctx, populated, r, baseline);

      ctx.log(`load: warm-up, ${WARMUP_SECONDS} s each`);
      await load(replicas, paths, connections, WARMUP_SECONDS, pgCpuMs);
      await load(baseline, paths, connections, WARMUP_SECONDS);
      const results: Record<"replicas" | "baseline", LoadResult[]> = { replicas: [], baseline: [] };
      for (let round = 0; round < rounds; round++) {
        for (const side of round % 2 === 0 ? (["replicas", "baseline"] as const) : (["baseline", "replicas"] as const)) {
          const r = side === "replicas" ? await load(replicas, paths, connections, seconds, pgCpuMs) : await load(baseline, paths, connections, seconds);
          results[side].push(r);
          ctx.log(`round ${round + 1}/${rounds} ${side.padEnd(8)}: ${r.perS.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, server CPU ${r.serverCpuPct.toFixed(0)}% (${r.cpuUsPerRequest.toFixed(1)} µs/req), generator ${r.generatorCpuPct.toFixed(0)}%`);
        }
      }
      for (const s of replicas) await s.stop();

      const uploads = await prepareUploads(ctx, populated, stations, perStation, UPLOAD_BATCH);
      const uploadFigures: Figure[] = [];
      for (const n of [1, 2]) {
        const db = cluster.createDb(`uploads_${n}`);
        await allocate(db, uploads);
        const up: ServerChild[] = [];
        try {
          for (let i = 0; i < n; i++) {
            const r = await ServerChild.start(`upload-replica-${i + 1}`, ["directory", db, populated.rootPath, populated.caPath]);
            servers.push(r);
            up.push(r);
          }
          const sent = await sendUploads(up.map((r) => `http://127.0.0.1:${r.port}`), uploads);
          ctx.log(`uploads through ${n} replica(s): ${sent.certificates} certificates in ${sent.seconds.toFixed(1)} s, ${sent.certsPerS.toFixed(0)}/s`);
          uploadFigures.push({ key: `uploads.replicas_${n}.per_s`, label: `uploads: certificates accepted/s, ${n} replica(s), ${stations} stations, ${UPLOAD_BATCH} per upload`, value: sent.certsPerS, unit: "certs/s" });
        } finally {
          for (const r of up) await r.stop();
        }
      }

      const m = (side: "replicas" | "baseline", f: (r: LoadResult) => number) => median(results[side].map(f));
      return [
        ...populated.figures,
        { key: "migrate.s", label: "directory migrate: SQLite → PostgreSQL, verified", value: migrateS, unit: "s", digits: 1 },
        { key: "load.connections", label: "load: autocannon connections (split over the replicas)", value: connections, unit: "" },
        { key: "load.body_bytes", label: "load: response body (IDevID + factory CA, PEM), mean", value: bodyBytes, unit: "bytes" },
        ...sideFigures("replicas", "2 replicas on PostgreSQL, GET .crt (CPU: replicas + PostgreSQL)", results.replicas),
        ...sideFigures("baseline", "floor: node:http from a Map", results.baseline),
        { key: "ratio.per_s", label: "replicas req/s / floor req/s", value: m("replicas", (r) => r.perS) / m("baseline", (r) => r.perS), unit: "x", digits: 3 },
        {
          key: "ratio.per_core",
          label: "req/s per core used: replicas (with PostgreSQL) / floor",
          value: m("baseline", (r) => r.cpuUsPerRequest) / m("replicas", (r) => r.cpuUsPerRequest),
          unit: "x",
          digits: 3,
          target: { op: ">=", value: 0.7 },
        },
        { key: "ratio.p99", label: "replicas p99 / floor p99", value: m("replicas", (r) => r.p99) / m("baseline", (r) => r.p99), unit: "x", digits: 2 },
        ...uploadFigures,
      ];
    } finally {
      for (const s of servers.reverse()) await s.stop();
      cluster.stop();
    }
  },
};
