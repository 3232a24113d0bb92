import { readLiveState, liveStatePath, StationReader, type LiveState, type StationSnapshot } from "../station/index.js";
import type { Home } from "../core/index.js";

/**
 * The store's counts scan its tables (about 10 ms at 20,000 units, far more at a million), so
 * they are read again only after this many times the last read's own time: the dashboard
 * spends at most a twentieth of a core on them, however large the store grows.
 */
const STORE_READ_SPACING = 20;
/** The rate the run-out estimate and the big number use: units per second over this many seconds. */
const RATE_WINDOW_S = 60;

/** What /api/status answers and /api/events sends: the line's live state and the store's counts, with what follows from them. */
export interface DashboardStatus {
  at: string;
  /** running: a line is publishing; stopped: its last run ended (or was killed); none: no line ever ran in this home. */
  line: "running" | "stopped" | "none";
  /** Why the last run stopped, when it failed or was killed. */
  lineError?: string;
  live?: LiveState;
  store?: StationSnapshot;
  storeError?: string;
  /** Units per second over the last minute of the run (0 when none ran then). */
  unitsPerSecond: number;
  /** Per allocation: serials left (available) and, at the current rate, when they run out. */
  runOut: Array<{ allocationId: string; left: number; seconds?: number; at?: string }>;
}

/** The station's state as the dashboard shows it; reads only (the live file, the store read-only). */
export class StatusSource {
  private readonly home: Home;
  private reader: StationReader | undefined;
  private store: { snapshot?: StationSnapshot; error?: string; nextAt: number } = { nextAt: 0 };

  constructor(home: Home) {
    this.home = home;
  }

  read(now = new Date()): DashboardStatus {
    const live = readLiveState(liveStatePath(this.home));
    const { snapshot: store, error: storeError } = this.readStore(now);
    const line = !live ? "none" : live.running ? "running" : "stopped";
    const lineError = live?.endError;
    const unitsPerSecond = line === "running" ? rate(live!, now) : 0;
    const runOut = (store?.allocations ?? []).map((a) => {
      const seconds = unitsPerSecond > 0 ? Math.round(a.available / unitsPerSecond) : undefined;
      return { allocationId: a.allocationId, left: a.available, seconds, at: seconds === undefined ? undefined : new Date(now.getTime() + seconds * 1000).toISOString() };
    });
    return { at: now.toISOString(), line, lineError, live, store, storeError, unitsPerSecond, runOut };
  }

  private readStore(now: Date): { snapshot?: StationSnapshot; error?: string } {
    if (now.getTime() < this.store.nextAt) return this.store;
    const started = performance.now();
    try {
      // The store appears with the first line run: opened once it exists, then kept.
      this.reader ??= StationReader.open(this.home);
      this.store = { snapshot: this.reader?.snapshot(), nextAt: 0 };
    } catch (e) {
      this.store = { error: (e as Error).message, nextAt: 0 };
    }
    this.store.nextAt = now.getTime() + STORE_READ_SPACING * (performance.now() - started);
    return this.store;
  }

  close(): void {
    this.reader?.close();
    this.reader = undefined;
  }
}

/** Units per second over the last RATE_WINDOW_S seconds the run has seen (fewer at its start). */
function rate(live: LiveState, now: Date): number {
  const lag = Math.max(0, Math.floor(now.getTime() / 1000) - live.recentEnd);
  const window = live.recent.slice(-RATE_WINDOW_S);
  const seconds = Math.min(RATE_WINDOW_S, window.length + lag);
  const units = window.slice(Math.max(0, lag)).reduce((a, b) => a + b, 0);
  return seconds > 0 ? Number((units / seconds).toFixed(1)) : 0;
}
