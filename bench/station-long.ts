/**
 * The station benchmark's long run, for flatness: one run at K slots, with the station process's
 * memory, the throughput of the first and the last tenth, and the factory-ca and station tokens'
 * objects and open sessions before and after (the simulator process holds no session on them:
 * it keeps unit keys in software).
 */
import { performance } from "node:perf_hooks";
import type { Home, IdmintConfig } from "../core/index.js";
import { memory, perSecond, settledMemory } from "./measure.js";
import { lineFigures, runSimLine } from "./station-line.js";
import { TokenInspector, type TokenCounts } from "./token-inspector.js";
import type { BenchContext, Figure } from "./types.js";

export async function longRun(ctx: BenchContext, home: Home, config: IdmintConfig, count: number, slots: number): Promise<Figure[]> {
  const gcAvailable = typeof (globalThis as { gc?: unknown }).gc === "function";
  const inspector = new TokenInspector(config, { "factory-ca": config.keys.factoryCa, station: config.keys.station });
  try {
    const counts: Record<"before" | "after" | "closed", Record<string, TokenCounts>> = { before: {}, after: {}, closed: {} };
    const snapshot = (when: "before" | "after" | "closed") => {
      for (const token of ["factory-ca", "station"]) counts[when][token] = inspector.count(token);
    };
    const memStart = settledMemory();
    // Progress, and the moment each unit ended, for the rate of the first and the last tenth.
    const ends = new Float64Array(count);
    let done = 0;
    let lastLog = performance.now();
    let started = 0;
    const summary = await runSimLine(home, config, count, slots, {
      beforeUnits: () => {
        snapshot("before");
        started = performance.now();
      },
      afterUnits: () => snapshot("after"),
      onUnit: () => {
        const now = performance.now();
        ends[done++] = now;
        if (now - lastLog > 10_000) {
          lastLog = now;
          ctx.log(`long run: ${done}/${count} units, ${perSecond(done, now - started).toFixed(0)} units/s so far, RSS ${memory().rssMb.toFixed(0)} MB`);
        }
      },
    });
    // The line's Hsm is closed by now: every session it opened should be gone with it.
    snapshot("closed");
    const memEnd = settledMemory();
    const tenth = Math.max(1, Math.floor(count / 10));
    const firstTenth = perSecond(tenth, ends[tenth - 1]! - started);
    const lastTenth = perSecond(tenth, ends[count - 1]! - ends[count - 1 - tenth]!);
    if (count >= 10) {
      const tenths = Array.from({ length: 10 }, (_, i) => perSecond(tenth, ends[(i + 1) * tenth - 1]! - (i === 0 ? started : ends[i * tenth - 1]!)).toFixed(0));
      ctx.log(`long run: units/s by tenth of the run: ${tenths.join(" ")}`);
    }
    ctx.log(`long run: ${count} units in ${summary.seconds.toFixed(1)} s (${(summary.units / summary.seconds).toFixed(1)} units/s); RSS ${memStart.rssMb.toFixed(0)} -> ${memEnd.rssMb.toFixed(0)} MB${gcAvailable ? " after gc()" : " (no gc(): run node with --expose-gc for settled figures)"}`);
    for (const token of ["factory-ca", "station"]) {
      const b = counts.before[token]!;
      const a = counts.after[token]!;
      const c = counts.closed[token]!;
      ctx.log(
        `long run: token ${token}: token objects ${b.tokenObjects} -> ${a.tokenObjects}, session objects ${b.sessionObjects} -> ${a.sessionObjects}, ` +
          `open sessions ${b.openSessions} -> ${a.openSessions} (${c.openSessions} once the line's Hsm closed), ` +
          `C_GetTokenInfo ulSessionCount ${b.reportedSessions ?? "unavailable"} -> ${a.reportedSessions ?? "unavailable"}`,
      );
    }
    const tokenFigures = (["factory-ca", "station"] as const).flatMap((token) =>
      (["before", "after"] as const).flatMap((when): Figure[] => {
        const c = counts[when][token]!;
        const fig: Figure[] = [
          { key: `long.${token}.objects_${when}`, label: `long run: ${token} token objects, ${when}`, value: c.tokenObjects, unit: "objects" },
          { key: `long.${token}.session_objects_${when}`, label: `long run: ${token} session objects, ${when}`, value: c.sessionObjects, unit: "objects" },
          { key: `long.${token}.sessions_${when}`, label: `long run: ${token} open sessions (C_GetSessionInfo), ${when}`, value: c.openSessions, unit: "sessions" },
        ];
        if (c.reportedSessions !== undefined) {
          fig.push({ key: `long.${token}.token_info_sessions_${when}`, label: `long run: ${token} ulSessionCount, ${when}`, value: c.reportedSessions, unit: "sessions" });
        }
        return fig;
      }),
    );
    for (const token of ["factory-ca", "station"] as const) {
      const c = counts.closed[token]!;
      tokenFigures.push({ key: `long.${token}.sessions_closed`, label: `long run: ${token} open sessions, line's Hsm closed`, value: c.openSessions, unit: "sessions" });
    }
    return [
      ...lineFigures("long", `long run, K=${slots}`, summary),
      { key: "long.first_tenth_per_s", label: "long run: throughput, first tenth", value: firstTenth, unit: "units/s", digits: 1 },
      { key: "long.last_tenth_per_s", label: "long run: throughput, last tenth", value: lastTenth, unit: "units/s", digits: 1 },
      { key: "long.last_over_first", label: "long run: last tenth / first tenth", value: lastTenth / firstTenth, unit: "x", digits: 2 },
      { key: "long.gc", label: "long run: RSS taken after gc() (1) or without (0)", value: gcAvailable ? 1 : 0, unit: "" },
      { key: "long.rss_start_mb", label: "long run: RSS at start", value: memStart.rssMb, unit: "MB", digits: 1 },
      { key: "long.rss_end_mb", label: "long run: RSS at end", value: memEnd.rssMb, unit: "MB", digits: 1 },
      { key: "long.heap_start_mb", label: "long run: JS heap in use at start", value: memStart.heapMb, unit: "MB", digits: 1 },
      { key: "long.heap_end_mb", label: "long run: JS heap in use at end", value: memEnd.heapMb, unit: "MB", digits: 1 },
      ...tokenFigures,
    ];
  } finally {
    inspector.close();
  }
}
