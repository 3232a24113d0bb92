import { readFileSync } from "node:fs";
import { rename, writeFile } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { writeCopy, type Home } from "../core/index.js";
import type { HsmStatus } from "../hsm/index.js";
import { processAlive } from "./lock.js";
import type { LineContext, Step, UnitOutcome } from "./pipeline.js";
import type { UploadEvent } from "./uploader.js";

/*
 * The line's live state for the dashboard (another process): where each slot stands, this
 * run's counts, rate, failures, the HSM's and the uploads' state. It is kept in memory and
 * written to HOME/station-live.json every PUBLISH_MS, replaced whole (a rename, no fsync, off
 * the event loop), never per unit: losing it in an OS crash costs nothing the store does not
 * hold, and neither the store's single writer nor its lock is touched for it.
 */

const PUBLISH_MS = 500;
/** Seconds of per-second unit counts kept for the dashboard's chart. */
const RECENT_SECONDS = 600;
const LATEST_FAILURES = 10;
/** Sign times kept for the HSM's round trip (median). */
const SIGN_SAMPLES = 64;

export function liveStatePath(home: Home): string {
  return join(home.root, "station-live.json");
}

/** What the unit in a slot is waiting for now (the step after the last one it reached). */
export type SlotActivity = "waiting-for-unit" | "hello" | "genkey" | "sign" | "store" | "install";
const NEXT: Partial<Record<Step, SlotActivity>> = { hello: "genkey", genkey: "sign", intent: "sign", signed: "store", issued: "install" };

export interface LiveSlot {
  slot: number;
  activity: SlotActivity;
  /** The unit in the slot, once it said hello. */
  serial?: string;
  /** When the slot started its activity (ISO 8601). */
  since: string;
  lastSerial?: string;
  lastStatus?: "provisioned" | "failed";
}

/**
 * The HSM as the line sees it: "ok" once a signature was made, "failing" after a unit failed
 * while the CA key signed, "out" while the signing pool says it is unreachable (its units
 * wait), with the run's outages and their seconds.
 */
export interface LiveHsm {
  state: "unknown" | "ok" | "failing" | "out";
  since: string;
  lastSignAt?: string;
  /** Median sign time over the last units (ms). */
  signMs?: number;
  lastError?: string;
  outages: number;
  outageSeconds: number;
}

export interface LiveUpload {
  directory?: string;
  state: "off" | "idle" | "sending" | "waiting";
  since: string;
  lastError?: string;
  lastBatchAt?: string;
  pending?: number;
}

export interface LiveState {
  version: 1;
  station: string;
  pid: number;
  running: boolean;
  startedAt: string;
  updatedAt: string;
  endedAt?: string;
  /** How the run ended, when it failed. */
  endError?: string;
  /** Units the line will see, if known (--sim). */
  total?: number;
  units: number;
  provisioned: number;
  failed: number;
  failures: Record<string, number>;
  latestFailures: Array<{ serial?: string; code: string; message: string; at: string }>;
  /** Units ended per second, oldest first, the last entry being the second `recentEnd` (epoch seconds). */
  recent: number[];
  recentEnd: number;
  /** Units ended per clock hour of this run: [hour start ISO, units]. */
  hourly: Array<[string, number]>;
  slots: LiveSlot[];
  hsm: LiveHsm;
  upload: LiveUpload;
}

/** What runLine tells of each slot (see line.ts); cheap, it runs on the line's own turns. */
export interface SlotWatch {
  /** The context slot `slot` provisions with: it reports the unit's steps. */
  context(slot: number, ctx: LineContext): LineContext;
  waiting(slot: number): void;
  seated(slot: number): void;
}

/**
 * Reads the live state a station published, or undefined if none ever ran here. A state
 * that says "running" whose process is gone was left by a killed run: it is returned as
 * stopped, with why.
 */
export function readLiveState(path: string): LiveState | undefined {
  let state: LiveState;
  try {
    state = JSON.parse(readFileSync(path, "utf8")) as LiveState;
  } catch {
    return undefined;
  }
  if (state.running && !processAlive(state.pid)) {
    state.running = false;
    state.endError = `the line (pid ${state.pid}) stopped without closing at ${state.updatedAt}: it was killed or crashed; run it again to resume`;
  }
  return state;
}

/** The live state of one `station run`: fed by the line's hooks, published by a timer. */
export class LiveLine implements SlotWatch {
  private readonly path: string;
  private readonly state: LiveState;
  private readonly signTimes: number[] = [];
  private recentCounts: number[] = new Array(RECENT_SECONDS).fill(0);
  private timer: NodeJS.Timeout | undefined;
  /** The write under way: a tick meanwhile skips its own, the next one writes a newer state. */
  private writing: Promise<void> | undefined;
  private hourStart = 0;
  // Times taken on every step are kept as numbers and written as ISO 8601 only when published.
  private readonly slotSince: number[];
  private lastSignMs = 0;

  constructor(p: { path: string; station: string; slots: number; directory?: string }) {
    this.path = p.path;
    this.slotSince = new Array<number>(p.slots).fill(Date.now());
    const now = new Date().toISOString();
    this.state = {
      version: 1,
      station: p.station,
      pid: process.pid,
      running: true,
      startedAt: now,
      updatedAt: now,
      units: 0,
      provisioned: 0,
      failed: 0,
      failures: {},
      latestFailures: [],
      recent: [],
      recentEnd: Math.floor(Date.now() / 1000),
      hourly: [],
      slots: Array.from({ length: p.slots }, (_, slot) => ({ slot, activity: "waiting-for-unit" as const, since: now })),
      hsm: { state: "unknown", since: now, outages: 0, outageSeconds: 0 },
      upload: p.directory ? { directory: p.directory, state: "idle", since: now } : { state: "off", since: now },
    };
    this.publish();
    this.timer = setInterval(() => this.publish(), PUBLISH_MS);
    this.timer.unref();
  }

  started(total: number | undefined): void {
    this.state.total = total;
  }

  context(slot: number, ctx: LineContext): LineContext {
    return {
      ...ctx,
      reached: (step, serial) => {
        this.reached(slot, step, serial);
        ctx.reached?.(step, serial);
      },
    };
  }

  waiting(slot: number): void {
    this.set(slot, "waiting-for-unit", undefined);
  }

  seated(slot: number): void {
    this.set(slot, "hello", undefined);
  }

  private reached(index: number, step: Step, serial: string): void {
    const slot = this.state.slots[index]!;
    // A unit whose delivery is recorded after its slot took the next unit speaks for itself only.
    if (step !== "hello" && slot.serial !== serial) return;
    if (step === "signed") this.noteSigned();
    if (step === "installed") {
      slot.lastSerial = serial;
      return this.set(index, "waiting-for-unit", undefined);
    }
    const next = NEXT[step];
    if (next) this.set(index, next, serial);
  }

  private set(index: number, activity: SlotActivity, serial: string | undefined): void {
    const slot = this.state.slots[index]!;
    slot.activity = activity;
    slot.serial = serial;
    this.slotSince[index] = Date.now();
  }

  private noteSigned(): void {
    const hsm = this.state.hsm;
    this.lastSignMs = Date.now();
    // A signature made just before an outage can land after it began: only the pool says the HSM is back.
    if (hsm.state !== "ok" && hsm.state !== "out") Object.assign(hsm, { state: "ok", since: new Date(this.lastSignMs).toISOString(), lastError: undefined });
  }

  /** The signing pool's word that the HSM went away or came back (its units wait meanwhile). */
  hsmStatus(status: HsmStatus): void {
    const hsm = this.state.hsm;
    if (status.state === "unreachable") {
      Object.assign(hsm, { state: "out", since: status.since.toISOString(), lastError: status.cause, outages: hsm.outages + 1 });
    } else {
      Object.assign(hsm, { state: "ok", since: status.since.toISOString(), lastError: undefined, outageSeconds: Number((hsm.outageSeconds + status.outageMs / 1000).toFixed(1)) });
    }
  }

  /** Each unit as it ends (runLine's onUnit). */
  unit(o: UnitOutcome): void {
    const s = this.state;
    const at = new Date();
    s.units++;
    this.count(at);
    const slot = s.slots.find((x) => x.lastSerial === o.serial || x.serial === o.serial);
    if (slot && o.serial !== undefined) slot.lastStatus = o.status;
    if (o.status === "provisioned") {
      s.provisioned++;
      if (o.ms.sign !== undefined) {
        this.signTimes.push(o.ms.sign);
        if (this.signTimes.length > SIGN_SAMPLES) this.signTimes.shift();
      }
      return;
    }
    s.failed++;
    const code = o.code ?? "UNKNOWN";
    s.failures[code] = (s.failures[code] ?? 0) + 1;
    s.latestFailures.unshift({ serial: o.serial, code, message: o.reason ?? "", at: at.toISOString() });
    s.latestFailures.length = Math.min(s.latestFailures.length, LATEST_FAILURES);
    // A unit that reached its intent but not its signature failed in the HSM's hands.
    if (o.ms.intent !== undefined && o.ms.sign === undefined) Object.assign(s.hsm, { state: "failing", since: at.toISOString(), lastError: `${code}: ${o.reason ?? ""}` });
  }

  /** The uploader's events (runInBackground and the final flush). */
  upload(e: UploadEvent): void {
    const u = this.state.upload;
    const now = new Date().toISOString();
    const state = e.type === "waiting" ? "waiting" : e.type === "start" ? (e.pending > 0 ? "sending" : "idle") : "sending";
    if (state !== u.state) Object.assign(u, { state, since: now });
    if (e.type === "waiting") u.lastError = e.error;
    else u.pending = e.pending;
    if (e.type === "batch") Object.assign(u, { lastBatchAt: now, lastError: undefined });
  }

  private count(at: Date): void {
    const second = Math.floor(at.getTime() / 1000);
    this.roll(second);
    this.recentCounts[RECENT_SECONDS - 1]!++;
    const hour = Math.floor(at.getTime() / 3_600_000) * 3_600_000;
    if (hour !== this.hourStart) {
      this.hourStart = hour;
      this.state.hourly.push([new Date(hour).toISOString(), 0]);
    }
    this.state.hourly.at(-1)![1]++;
  }

  /** Moves the per-second window so that its last entry is `second`. */
  private roll(second: number): void {
    const shift = Math.min(RECENT_SECONDS, second - this.state.recentEnd);
    if (shift <= 0) return;
    this.recentCounts = [...this.recentCounts.slice(shift), ...new Array<number>(shift).fill(0)];
    this.state.recentEnd = second;
  }

  /** The state as it is now, as JSON. */
  private render(): string {
    const s = this.state;
    this.roll(Math.floor(Date.now() / 1000));
    s.updatedAt = new Date().toISOString();
    s.slots.forEach((slot, i) => (slot.since = new Date(this.slotSince[i]!).toISOString()));
    if (this.lastSignMs) s.hsm.lastSignAt = new Date(this.lastSignMs).toISOString();
    const sorted = [...this.signTimes].sort((a, b) => a - b);
    if (sorted.length) s.hsm.signMs = Number(sorted[Math.floor(sorted.length / 2)]!.toFixed(2));
    // Only the seconds this run has seen: a dashboard started later must not draw a flat past.
    const ran = Math.min(RECENT_SECONDS, s.recentEnd - Math.floor(Date.parse(s.startedAt) / 1000) + 1);
    s.recent = this.recentCounts.slice(RECENT_SECONDS - ran);
    return JSON.stringify(s);
  }

  private publish(): void {
    if (this.writing) return;
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`);
    const json = this.render();
    // The dashboard's view is best effort: a full disk fails the line's own writes, not this one.
    this.writing = writeFile(tmp, json)
      .then(() => rename(tmp, this.path))
      .catch(() => undefined)
      .finally(() => (this.writing = undefined));
  }

  /** The run ended (on every path): the last state is published and kept for a dashboard started later. */
  async close(error?: unknown): Promise<void> {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    // A write under way must not land after the last state.
    await this.writing;
    const s = this.state;
    s.running = false;
    s.endedAt = new Date().toISOString();
    if (error !== undefined) s.endError = error instanceof Error ? error.message : String(error);
    for (const slot of s.slots) Object.assign(slot, { activity: "waiting-for-unit", serial: undefined });
    this.slotSince.fill(Date.parse(s.endedAt));
    try {
      writeCopy(this.path, this.render());
    } catch {
      // As in publish: the line's own outcome is what the run reports.
    }
  }
}
