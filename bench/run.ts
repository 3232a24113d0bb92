/**
 * `npm run bench [-- FILTER]`: runs idmint's benchmarks and prints a table, then one JSON line
 * with every figure (the last line of stdout, so a script can `tail -n 1` it).
 *
 * Nothing here asserts anything about time: machines differ too much for a fixed threshold to
 * mean anything. Each benchmark instead measures its subject next to a baseline in the same
 * process and the same run, so the ratios travel between machines even when the rates do not.
 * Targets are printed beside the figures for a human to read, never enforced.
 *
 * Progress goes to stderr so that stdout stays the table and the JSON line.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { cmpBenchmark } from "./cmp.js";
import { dashboardBenchmark } from "./dashboard.js";
import { directoryBenchmark } from "./directory.js";
import { directoryPgBenchmark } from "./directory-pg.js";
import { hsmLinkBenchmark } from "./hsm-link.js";
import { ledgerBenchmark } from "./ledger.js";
import { memory } from "./measure.js";
import { soakBenchmark } from "./soak.js";
import { stationBenchmark } from "./station.js";
import { vouchersBenchmark } from "./vouchers.js";
import type { BenchContext, Benchmark, Figure } from "./types.js";

// An explicit list rather than a directory scan, so a helper file in bench/ is never mistaken
// for a benchmark and every benchmark is type-checked against the interface above.
const BENCHMARKS: readonly Benchmark[] = [ledgerBenchmark, stationBenchmark, directoryBenchmark, directoryPgBenchmark, hsmLinkBenchmark, dashboardBenchmark, vouchersBenchmark, cmpBenchmark, soakBenchmark];

function formatValue(f: Figure): string {
  const digits = f.digits ?? 0;
  return f.value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function formatTarget(f: Figure): string {
  if (!f.target) return "";
  const met = f.target.op === "<=" ? f.value <= f.target.value : f.value >= f.target.value;
  return `${f.target.op} ${f.target.value.toLocaleString("en-US")}  ${met ? "met" : "MISSED"}`;
}

function printTable(rows: Array<{ bench: string; figure: Figure }>): void {
  const cells = rows.map(({ bench, figure }) => [bench, figure.label, formatValue(figure), figure.unit, formatTarget(figure)]);
  const header = ["bench", "figure", "value", "unit", "target"];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  // Values are right-aligned so their digits line up; everything else reads left to right.
  const line = (c: string[]) => c.map((s, i) => (i === 2 ? s.padStart(widths[i]!) : s.padEnd(widths[i]!))).join("  ").trimEnd();
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const c of cells) console.log(line(c));
}

async function main(): Promise<number> {
  const started = performance.now();
  const rssStart = memory().rssMb;
  const filter = process.argv[2];
  const selected = BENCHMARKS.filter((b) => filter === undefined || b.name.includes(filter));
  if (selected.length === 0) {
    console.error(`no benchmark matches "${filter}"; there are: ${BENCHMARKS.map((b) => b.name).join(", ")}`);
    return 2;
  }

  const root = mkdtempSync(join(tmpdir(), "idmint-bench-"));
  // better-sqlite3 is synchronous, so a signal is handled only between two synchronous stretches
  // (at most a few seconds); without a handler Ctrl-C would leave a ledger of a million entries
  // in the temp directory.
  const onSignal = (signal: NodeJS.Signals) => {
    rmSync(root, { recursive: true, force: true });
    console.error(`\nbench: ${signal}, removed ${root}`);
    process.exit(128 + (signal === "SIGINT" ? 2 : 15));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const params: Record<string, number> = {};
  const rows: Array<{ bench: string; figure: Figure }> = [];
  let failed = false;
  try {
    for (const bench of selected) {
      const dir = mkdtempSync(join(root, `${bench.name}-`));
      const ctx: BenchContext = {
        dir,
        param(name, fallback) {
          const raw = process.env[name];
          const value = raw === undefined || raw === "" ? fallback : Number(raw);
          if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`${name}=${raw} is not a positive integer`);
          params[name] = value;
          return value;
        },
        log(message) {
          const at = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
          console.error(`[${at}s] ${bench.name}: ${message}`);
        },
      };
      try {
        for (const figure of await bench.run(ctx)) rows.push({ bench: bench.name, figure });
      } catch (e) {
        // One broken benchmark should not hide the figures of the others.
        failed = true;
        console.error(`bench ${bench.name} failed: ${(e as Error).stack ?? e}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }

  const elapsedS = (performance.now() - started) / 1000;
  // RSS alone cannot tell live data from heap V8 has grown and not yet returned to the OS.
  const { rssMb: rssEnd, heapMb: heapEnd } = memory();
  // maxRSS is in KiB on every platform Node supports.
  const rssPeak = process.resourceUsage().maxRSS / 1024;
  rows.push(
    { bench: "process", figure: { key: "rss_start_mb", label: "RSS at start", value: rssStart, unit: "MB", digits: 1 } },
    { bench: "process", figure: { key: "rss_end_mb", label: "RSS at end", value: rssEnd, unit: "MB", digits: 1 } },
    { bench: "process", figure: { key: "rss_peak_mb", label: "RSS peak", value: rssPeak, unit: "MB", digits: 1 } },
    { bench: "process", figure: { key: "heap_used_end_mb", label: "JS heap in use at end", value: heapEnd, unit: "MB", digits: 1 } },
    { bench: "process", figure: { key: "elapsed_s", label: "whole bench, wall time", value: elapsedS, unit: "s", digits: 1 } },
  );

  console.log();
  console.log(`idmint bench: node ${process.version}, ${process.platform} ${process.arch}, ${availableParallelism()} CPUs, ${new Date().toISOString()}`);
  printTable(rows);
  const figures = Object.fromEntries(rows.map(({ bench, figure }) => [`${bench}.${figure.key}`, figure.value]));
  console.log(
    JSON.stringify({
      bench: "idmint",
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      cpus: availableParallelism(),
      filter: filter ?? null,
      params,
      failed,
      figures,
    }),
  );
  return failed ? 1 : 0;
}

process.exitCode = await main();
