/** What more than one benchmark measures with: small statistics and this machine's meters. */
import { readFileSync, statSync } from "node:fs";

export const MB = 1024 * 1024;
// USER_HZ: the unit of /proc's CPU times on every Linux Node supports.
const CLOCK_TICKS_PER_S = 100;

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The nearest-rank percentile of an ascending array; NaN for an empty one. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export function perSecond(count: number, ms: number): number {
  return (count * 1000) / ms;
}

/** This process's RSS and JS heap in use. */
export function memory(): { rssMb: number; heapMb: number } {
  const m = process.memoryUsage();
  return { rssMb: m.rss / MB, heapMb: m.heapUsed / MB };
}

/**
 * RSS after a full GC when node runs with --expose-gc (`npm run bench` does); as is otherwise.
 * What a process keeps, not how far V8 let garbage pile up before it last collected.
 */
export function settledMemory(): { rssMb: number; heapMb: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  return memory();
}

/** A SQLite database file and its WAL, which together are what it keeps on disk. */
export function databaseMb(path: string): number {
  const size = (p: string) => {
    try {
      return statSync(p).size;
    } catch {
      return 0;
    }
  };
  return (size(path) + size(`${path}-wal`)) / MB;
}

/**
 * CPU time (user + system, every thread) a process has used so far, from /proc (Linux), in ms;
 * with `reapedChildren`, also that of its children that ended and were waited for.
 */
export function processCpuMs(pid: number, options: { reapedChildren?: boolean } = {}): number {
  // Fields 14 and 15 (16 and 17: the reaped children's) of /proc/PID/stat, counted after the parenthesised command name.
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "").split(" ");
  const children = options.reapedChildren ? Number(fields[13]) + Number(fields[14]) : 0;
  return ((Number(fields[11]) + Number(fields[12]) + children) * 1000) / CLOCK_TICKS_PER_S;
}

/** Busy CPU time of the whole machine in ms (user + nice + system of /proc/stat), NaN where there is none. */
export function machineBusyMs(): number {
  try {
    const fields = readFileSync("/proc/stat", "latin1").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    return (((fields[0] ?? 0) + (fields[1] ?? 0) + (fields[2] ?? 0)) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return Number.NaN;
  }
}
