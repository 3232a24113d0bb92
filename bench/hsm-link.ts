/**
 * The line with its factory CA behind a network HSM (issue 18), all in one run: on SoftHSM
 * directly, through p11-kit's remote module with nothing between client and server, and through
 * the latency-and-fault link of the tests (test/fixtures/hsm-link.ts) at 0, 1 and 5 ms per hop.
 * Each case is the same `station run --sim` through `runStation` as the station benchmark's
 * (station-line.ts), at K slots, with the station process's event-loop delay beside its rate.
 * bench/README.md says what each figure means.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { IdmintConfig } from "../core/index.js";
// The p11-kit server and the link are the tests' own fixtures: one harness for tests and bench.
import { startHsmLink, type HsmLink, type LinkStats } from "../test/fixtures/hsm-link.js";
import { P11KIT_MISSING, startP11KitServer, type P11KitServer } from "../test/fixtures/p11kit.js";
import { setUpLineHome } from "./line-home.js";
import { LOOP_RESOLUTION_MS, loopDelayMs, startBystander, type Bystander } from "./loop-bystander.js";
import { median } from "./measure.js";
import { runSimLine } from "./station-line.js";
import type { BenchContext, Benchmark, Figure } from "./types.js";

// The station process's JIT, the first certificate build and the first WAL frames are paid before any case starts.
const WARMUP_UNITS = 300;
const DELAYS_MS = [0, 1, 5] as const;

interface Case {
  key: string;
  label: string;
  /** Where the client module finds its server (P11_KIT_SERVER_ADDRESS); absent: SoftHSM in this process. */
  address?: string;
  link?: HsmLink;
  /** The link's delay per hop for this case. */
  delayMs?: number;
}

/** One run of one case, as numbers (medians over the rounds are taken of each). */
interface CaseResult {
  perS: number;
  wholeRunPerS: number;
  stationCpuMs: number;
  loopP50Ms: number;
  loopP99Ms: number;
  loopMaxMs: number;
  /** An idle process's event-loop delay over the same units: the machine's share of the station's. */
  bystanderP99Ms: number;
  signP50Ms: number;
  signP99Ms: number;
  /** Through the link only. */
  callsPerUnit?: number;
  peakInFlight?: number;
  holdMs?: number;
}

/**
 * The home's config for one case. Its HSM sessions are the line's own today (one per key, the
 * signer on the event loop); issue 18's pool sizes itself from `hsm.sessions`, which goes here,
 * set to the slots.
 */
function caseConfig(config: IdmintConfig, module: string | undefined): IdmintConfig {
  return module === undefined ? config : { ...config, hsm: { module } };
}

async function runCase(ctx: BenchContext, c: Case, config: IdmintConfig, home: Parameters<typeof runSimLine>[0], count: number, slots: number, warmup: number, bystander: Bystander): Promise<CaseResult> {
  const histogram = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  let ended = 0;
  // Starts the link's window of counters.
  await c.link?.stats();
  if (c.address) process.env.P11_KIT_SERVER_ADDRESS = c.address;
  try {
    const line = await runSimLine(
      home,
      config,
      count,
      slots,
      {
        beforeUnits: () => histogram.enable(),
        // The delay is taken over the measured units only, as the rate is.
        onUnit: () => {
          if (++ended !== warmup) return;
          histogram.reset();
          bystander.reset();
        },
        afterUnits: () => histogram.disable(),
      },
      warmup,
    );
    const link = await c.link?.stats();
    const idle = await bystander.read();
    const result: CaseResult = {
      perS: line.measured.perS,
      wholeRunPerS: line.units / line.seconds,
      stationCpuMs: line.measured.stationCpuMsPerUnit,
      loopP50Ms: loopDelayMs(histogram.percentile(50)),
      loopP99Ms: loopDelayMs(histogram.percentile(99)),
      loopMaxMs: loopDelayMs(histogram.max),
      bystanderP99Ms: idle.p99Ms,
      signP50Ms: line.stages.sign?.p50 ?? Number.NaN,
      signP99Ms: line.stages.sign?.p99 ?? Number.NaN,
      ...(link && { callsPerUnit: link.requests / line.units, peakInFlight: link.peakInFlight, holdMs: link.meanHoldMs }),
    };
    ctx.log(
      `${c.label}: ${result.perS.toFixed(1)} units/s, event-loop delay p99 ${result.loopP99Ms.toFixed(1)} ms (an idle process's ${result.bystanderP99Ms.toFixed(1)} ms)` +
        (link ? `, ${result.callsPerUnit!.toFixed(1)} p11-kit calls per unit, at most ${link.peakInFlight} in flight, chunks held ${link.meanHoldMs.toFixed(2)} ms` : ""),
    );
    return result;
  } finally {
    histogram.disable();
    delete process.env.P11_KIT_SERVER_ADDRESS;
  }
}

function caseFigures(c: Case, rounds: CaseResult[]): Figure[] {
  const what = `line ${c.label}`;
  const m = (pick: (r: CaseResult) => number) => median(rounds.map(pick));
  const figures: Figure[] = [
    { key: `${c.key}.per_s`, label: `${what}: throughput (after the run's warm-up)`, value: m((r) => r.perS), unit: "units/s", digits: 1 },
    { key: `${c.key}.whole_run_per_s`, label: `${what}: throughput of the whole run`, value: m((r) => r.wholeRunPerS), unit: "units/s", digits: 1 },
    { key: `${c.key}.station_cpu_ms`, label: `${what}: station process CPU per unit`, value: m((r) => r.stationCpuMs), unit: "ms", digits: 3 },
    { key: `${c.key}.loop_delay_p50_ms`, label: `${what}: station event-loop delay p50`, value: m((r) => r.loopP50Ms), unit: "ms", digits: 2 },
    { key: `${c.key}.loop_delay_p99_ms`, label: `${what}: station event-loop delay p99`, value: m((r) => r.loopP99Ms), unit: "ms", digits: 2, target: { op: "<=", value: 5 } },
    { key: `${c.key}.bystander_loop_delay_p99_ms`, label: `${what}: an idle process's event-loop delay p99, same units`, value: m((r) => r.bystanderP99Ms), unit: "ms", digits: 2 },
    { key: `${c.key}.loop_delay_max_ms`, label: `${what}: station event-loop delay max`, value: m((r) => r.loopMaxMs), unit: "ms", digits: 1 },
    { key: `${c.key}.sign_p50_ms`, label: `${what}: stage sign, p50`, value: m((r) => r.signP50Ms), unit: "ms", digits: 2 },
    { key: `${c.key}.sign_p99_ms`, label: `${what}: stage sign, p99`, value: m((r) => r.signP99Ms), unit: "ms", digits: 2 },
  ];
  if (c.link) {
    figures.push(
      { key: `${c.key}.calls_per_unit`, label: `${what}: p11-kit calls per unit (the run's opening included)`, value: m((r) => r.callsPerUnit!), unit: "calls", digits: 2 },
      { key: `${c.key}.peak_in_flight`, label: `${what}: most p11-kit calls in flight at once (any round)`, value: Math.max(...rounds.map((r) => r.peakInFlight!)), unit: "calls" },
      { key: `${c.key}.hold_ms`, label: `${what}: delay per hop as measured (mean hold of a chunk)`, value: m((r) => r.holdMs!), unit: "ms", digits: 3 },
    );
  }
  return figures;
}

export const hsmLinkBenchmark: Benchmark = {
  name: "hsm-link",
  async run(ctx) {
    if (P11KIT_MISSING) throw new Error(P11KIT_MISSING);
    const units = ctx.param("BENCH_HSM_LINK_UNITS", 300);
    const warmup = ctx.param("BENCH_HSM_LINK_WARMUP", 300);
    const slots = ctx.param("BENCH_HSM_LINK_SLOTS", 16);
    const rounds = ctx.param("BENCH_HSM_LINK_ROUNDS", 3);
    const count = warmup + units;

    const setup = await setUpLineHome(ctx, WARMUP_UNITS + rounds * (2 + DELAYS_MS.length) * count);
    const { home, config } = setup;
    ctx.log(`line warm-up: ${WARMUP_UNITS} units at K=${slots} on SoftHSM (not measured)`);
    await runSimLine(home, config, WARMUP_UNITS, slots);

    let server: P11KitServer | undefined;
    let link: HsmLink | undefined;
    const bystander = await startBystander();
    try {
      server = await startP11KitServer(ctx.dir, home.softhsmConfPath);
      const linked = (link = await startHsmLink(server.socket, { dir: ctx.dir }));
      const remote = caseConfig(config, server.module);
      const all: Array<Case & { config: IdmintConfig }> = [
        { key: "direct", label: `K=${slots}, SoftHSM in the station process`, config: caseConfig(config, undefined) },
        { key: "p11kit", label: `K=${slots}, p11-kit without the link`, address: server.env.P11_KIT_SERVER_ADDRESS, config: remote },
        ...DELAYS_MS.map((ms) => ({ key: `link_${ms}ms`, label: `K=${slots}, p11-kit through the link, ${ms} ms per hop`, delayMs: ms, address: linked.env.P11_KIT_SERVER_ADDRESS, link: linked, config: remote })),
      ];

      // Every round runs every case, so that each ratio is taken between runs a minute or two apart.
      const results = new Map<string, CaseResult[]>(all.map((c) => [c.key, []]));
      for (let round = 1; round <= rounds; round++) {
        for (const c of all) {
          if (c.delayMs !== undefined) await c.link!.setDelay(c.delayMs);
          ctx.log(`round ${round}/${rounds}, ${c.label}: ${warmup} warm-up units, then ${units} measured`);
          results.get(c.key)!.push(await runCase(ctx, c, c.config, home, count, slots, warmup, bystander));
        }
      }

      const figures: Figure[] = [...setup.figures, ...all.flatMap((c) => caseFigures(c, results.get(c.key)!))];
      // The median over the rounds of each round's own ratio.
      const ratio = (a: string, b: string) => median(results.get(a)!.map((r, i) => r.perS / results.get(b)![i]!.perS));
      figures.push(
        { key: "ratio.link_1ms_over_0ms", label: "line through the link: 1 ms per hop / 0 ms", value: ratio("link_1ms", "link_0ms"), unit: "x", digits: 3, target: { op: ">=", value: 0.8 } },
        { key: "ratio.link_5ms_over_0ms", label: "line through the link: 5 ms per hop / 0 ms", value: ratio("link_5ms", "link_0ms"), unit: "x", digits: 3, target: { op: ">=", value: 0.5 } },
        { key: "ratio.p11kit_over_direct", label: "line through p11-kit (no link) / SoftHSM directly", value: ratio("p11kit", "direct"), unit: "x", digits: 3 },
        { key: "ratio.link_0ms_over_p11kit", label: "line through the link at 0 ms / p11-kit without it (the link's own cost)", value: ratio("link_0ms", "p11kit"), unit: "x", digits: 3 },
      );
      return figures;
    } finally {
      await link?.close();
      await server?.stop();
      await bystander.close();
    }
  },
};
