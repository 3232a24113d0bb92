import type { KeyRequest, UnitFixture } from "../link/index.js";
import { StationError } from "./errors.js";
import type { SlotWatch } from "./live.js";
import { provisionUnit, type LineContext, type TimedStage, type UnitOutcome } from "./pipeline.js";
import { DEFAULT_STOP_RULES, FailureWatch, type StopRules } from "./stop.js";
import { StageTimes } from "./stage-times.js";

/**
 * Units in a row that fail before their hello (silence, garbage, a hang-up) after which a
 * slot stops asking the fixture for more: a fixture that stopped answering would otherwise
 * fail one unit per timeout for ever.
 */
const SILENT_LIMIT = 3;

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
  /** SQLite commits the line made, and the unit state changes they carried (group commit). */
  commits: number;
  changesPerCommit: number;
  /** Milliseconds per stage over all units: median and 99th percentile. */
  stages: Partial<Record<TimedStage, { p50: number; p99: number }>>;
}

/**
 * Runs the line: K slots, each taking the next unit from the fixture until it has none.
 * A failed unit never stops the line; only a fixture that cannot be reached, one that
 * stopped answering on every slot (see SILENT_LIMIT), or a line that only fails (see
 * StopRules) does. Reports each unit through `onUnit` as it ends (library code never prints).
 */
export async function runLine(p: {
  fixture: UnitFixture<KeyRequest>;
  slots: number;
  ctx: LineContext;
  onUnit?: (o: UnitOutcome) => void;
  stop?: Partial<StopRules>;
  /** Told where each slot stands (the live state the dashboard shows). */
  watch?: SlotWatch;
}): Promise<LineSummary> {
  const started = performance.now();
  const before = p.ctx.commits.stats;
  // Only counts and stage times (bounded, see StageTimes) are kept, not the outcomes: a long run must not grow memory.
  const stageNames = ["hello", "genkey", "check", "intent", "sign", "store", "install", "total"] as const;
  const times = new Map<TimedStage, StageTimes>(stageNames.map((n) => [n, new StageTimes()]));
  const failures: Record<string, number> = {};
  let units = 0;
  let provisioned = 0;
  let resumed = 0;
  const watch = new FailureWatch({ ...DEFAULT_STOP_RULES, ...p.stop });
  // Why the line stops, once a stop rule fired: the slots take no more units.
  let stopped: StationError | undefined;
  // Serials being provisioned now, in any slot: a second unit claiming one is refused.
  const inFlight = new Set<string>();
  const record = (outcome: UnitOutcome) => {
    units++;
    // A refused CMP request is a stranger's doing, not the line failing: it never stops the line.
    if (!outcome.refused) stopped ??= watch.note(outcome);
    if (outcome.status === "provisioned") {
      provisioned++;
      if (outcome.resumed) resumed++;
    } else {
      const code = outcome.code ?? "UNKNOWN";
      failures[code] = (failures[code] ?? 0) + 1;
    }
    for (const [stage, ms] of Object.entries(outcome.ms) as Array<[TimedStage, number]>) times.get(stage)?.add(ms);
    p.onUnit?.(outcome);
  };
  // Units whose slot is free again but whose delivery is still being recorded.
  const recording = new Set<Promise<void>>();
  // Slots that gave up on the fixture, and why the last one did.
  let silentSlots = 0;
  let silence = "";
  const slot = async (_: unknown, index: number) => {
    const ctx = p.watch?.context(index, p.ctx) ?? p.ctx;
    let silentInARow = 0;
    while (!stopped) {
      p.watch?.waiting(index);
      const link = await p.fixture.next();
      if (!link) return;
      // A unit seated while another slot's unit stopped the line is left as it is.
      if (stopped) return link.close();
      try {
        let freed!: () => void;
        const free = new Promise<void>((resolve) => (freed = resolve));
        p.watch?.seated(index);
        const unit = provisionUnit(link, ctx, { slotFree: freed, inFlight });
        const outcome = unit.then(record);
        recording.add(outcome);
        const recorded = () => recording.delete(outcome);
        outcome.then(recorded, recorded);
        const ended = await Promise.race([free.then(() => undefined), unit]);
        // A unit that failed before it said hello: the fixture, not the unit, is failing.
        const silent = ended?.status === "failed" && ended.serial === undefined;
        silentInARow = silent ? silentInARow + 1 : 0;
        if (silent) silence = ended.reason ?? "";
      } finally {
        await link.close();
      }
      if (silentInARow >= SILENT_LIMIT) {
        silentSlots++;
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: p.slots }, slot));
  await Promise.all(recording);
  if (silentSlots === p.slots) {
    throw new StationError(
      "FIXTURE",
      `the fixture stopped answering: on every slot ${SILENT_LIMIT} units in a row failed before their hello, the last with "${silence}": check the fixture (or allow a longer --timeout-ms), then run the station again; the units done so far are recorded`,
    );
  }
  if (stopped) throw stopped;
  const seconds = (performance.now() - started) / 1000;
  const stages: LineSummary["stages"] = {};
  for (const stage of stageNames) {
    const t = times.get(stage)!;
    if (t.count) stages[stage] = { p50: Number(t.percentile(50).toFixed(3)), p99: Number(t.percentile(99).toFixed(3)) };
  }
  const after = p.ctx.commits.stats;
  const commits = after.commits - before.commits;
  return {
    units,
    provisioned,
    resumed,
    failed: units - provisioned,
    failures,
    seconds: Number(seconds.toFixed(3)),
    unitsPerSecond: Number((units / Math.max(seconds, 1e-9)).toFixed(1)),
    commits,
    changesPerCommit: Number(((after.changes - before.changes) / Math.max(commits, 1)).toFixed(2)),
    stages,
  };
}
