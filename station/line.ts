import type { UnitFixture } from "../units/index.js";
import { provisionUnit, type LineContext, type TimedStage, type UnitOutcome } from "./pipeline.js";

export interface LineSummary {
  units: number;
  provisioned: number;
  /** Of the provisioned: units finished after a restart (confirmed or delivered again). */
  resumed: number;
  failed: number;
  /** Failures by code, e.g. { CSR_SIGNATURE: 1, KEY_REUSED: 1 }. */
  failures: Record<string, number>;
  seconds: number;
  unitsPerSecond: number;
  /** Milliseconds per stage over all units: median and 99th percentile. */
  stages: Partial<Record<TimedStage, { p50: number; p99: number }>>;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * Runs the line: K slots, each taking the next unit from the fixture until it has none.
 * A failed unit never stops the line; only a fixture that cannot be reached does. Reports
 * each unit through `onUnit` as it ends (library code never prints).
 */
export async function runLine(p: { fixture: UnitFixture; slots: number; ctx: LineContext; onUnit?: (o: UnitOutcome) => void }): Promise<LineSummary> {
  const started = performance.now();
  const outcomes: UnitOutcome[] = [];
  const slot = async () => {
    for (;;) {
      const link = await p.fixture.next();
      if (!link) return;
      try {
        const outcome = await provisionUnit(link, p.ctx);
        outcomes.push(outcome);
        p.onUnit?.(outcome);
      } finally {
        await link.close();
      }
    }
  };
  await Promise.all(Array.from({ length: p.slots }, slot));
  const seconds = (performance.now() - started) / 1000;
  const failures: Record<string, number> = {};
  for (const o of outcomes) if (o.status === "failed") failures[o.code ?? "UNKNOWN"] = (failures[o.code ?? "UNKNOWN"] ?? 0) + 1;
  const stages: LineSummary["stages"] = {};
  for (const stage of ["hello", "reserve", "genkey", "check", "sign", "store", "install", "total"] as const) {
    const values = outcomes.map((o) => o.ms[stage]).filter((v): v is number => v !== undefined).sort((a, b) => a - b);
    if (values.length) stages[stage] = { p50: Number(percentile(values, 50).toFixed(3)), p99: Number(percentile(values, 99).toFixed(3)) };
  }
  const provisioned = outcomes.filter((o) => o.status === "provisioned").length;
  return {
    units: outcomes.length,
    provisioned,
    resumed: outcomes.filter((o) => o.status === "provisioned" && o.resumed).length,
    failed: outcomes.length - provisioned,
    failures,
    seconds: Number(seconds.toFixed(3)),
    unitsPerSecond: Number((outcomes.length / Math.max(seconds, 1e-9)).toFixed(1)),
    stages,
  };
}
