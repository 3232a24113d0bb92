/**
 * The directory benchmark's load: autocannon in the benchmark's process against one server
 * child, every request for a uniformly random path, with the latency of every response and the
 * CPU of the server, the generator and everything else on the machine meanwhile.
 */
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import type { ServerChild } from "./directory-children.js";
import { machineBusyMs, percentile } from "./measure.js";

// autocannon (no type declarations are installed; only what this file uses)

interface AutocannonRequest {
  method?: string;
  path?: string;
  setupRequest?: (req: { path: string }) => { path: string };
}

interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  pipelining: number;
  requests: AutocannonRequest[];
}

interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  resets: number;
  requests: { total: number };
}

interface AutocannonInstance {
  on(event: "response", listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void): void;
}

type Autocannon = (opts: AutocannonOptions, done: (err: Error | null, result: AutocannonResult) => void) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

export interface LoadResult {
  perS: number;
  /** Server CPU time per answered request, µs. */
  cpuUsPerRequest: number;
  p50: number;
  p99: number;
  requests: number;
  /** The server's CPU time over the wall time of the run, in % of one core. */
  serverCpuPct: number;
  /** The same for this process, the load generator. */
  generatorCpuPct: number;
  /** CPU used by everything else on the machine meanwhile, % of one core (NaN without /proc/stat). */
  otherCpuPct: number;
}

/**
 * Load on one server, or on several at once (replicas: the connections split evenly, one
 * autocannon each, latencies and CPU summed). `otherCpu` (ms so far) adds processes that serve
 * the servers, e.g. their database, to the servers' CPU.
 */
export async function load(servers: ServerChild | readonly ServerChild[], paths: readonly string[], connections: number, seconds: number, otherCpu?: () => number): Promise<LoadResult> {
  const targets = Array.isArray(servers) ? (servers as readonly ServerChild[]) : [servers as ServerChild];
  const name = targets.map((t) => t.name).join("+");
  // Every latency, so the percentiles are exact (autocannon's histogram keeps whole milliseconds).
  let latencies = new Float64Array(1 << 20);
  let ok = 0;
  let other = 0;
  const n = paths.length;
  const serverCpu = async () => (await Promise.all(targets.map((t) => t.cpuMs()))).reduce((a, b) => a + b, 0) + (otherCpu?.() ?? 0);
  const cpu0 = await serverCpu();
  const gen0 = process.cpuUsage();
  const busy0 = machineBusyMs();
  const t0 = performance.now();
  const results = await Promise.all(
    targets.map(
      (server, k) =>
        new Promise<AutocannonResult>((resolve, reject) => {
          const instance = autocannon(
            {
              url: `http://127.0.0.1:${server.port}`,
              connections: Math.max(1, Math.round(connections / targets.length) + (k === 0 ? connections % targets.length : 0)),
              duration: seconds,
              pipelining: 1,
              requests: [
                {
                  method: "GET",
                  setupRequest: (req) => {
                    req.path = paths[Math.floor(Math.random() * n)]!;
                    return req;
                  },
                },
              ],
            },
            (err, res) => (err ? reject(err) : resolve(res)),
          );
          instance.on("response", (_client, status, _bytes, ms) => {
            if (status !== 200) {
              other++;
              return;
            }
            if (ok === latencies.length) {
              const grown = new Float64Array(latencies.length * 2);
              grown.set(latencies);
              latencies = grown;
            }
            latencies[ok++] = ms;
          });
        }),
    ),
  );
  const result = {
    duration: Math.max(...results.map((r) => r.duration)),
    errors: results.reduce((a, r) => a + r.errors, 0),
    timeouts: results.reduce((a, r) => a + r.timeouts, 0),
    non2xx: results.reduce((a, r) => a + r.non2xx, 0),
  };
  const wallMs = performance.now() - t0;
  const busy = machineBusyMs() - busy0;
  const gen = process.cpuUsage(gen0);
  const cpu = (await serverCpu()) - cpu0;
  const genMs = (gen.user + gen.system) / 1000;
  if (result.errors !== 0 || result.timeouts !== 0 || result.non2xx !== 0 || other !== 0) {
    throw new Error(`load on the ${name} server: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx + other} answers other than 200`);
  }
  const sorted = latencies.subarray(0, ok).sort();
  return {
    perS: ok / result.duration,
    cpuUsPerRequest: (1000 * cpu) / ok,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    requests: ok,
    serverCpuPct: (100 * cpu) / wallMs,
    generatorCpuPct: (100 * genMs) / wallMs,
    // The other half of the machine's two busiest users: a test suite run meanwhile shows here.
    otherCpuPct: Math.max(0, (100 * (busy - cpu - genMs)) / wallMs),
  };
}
