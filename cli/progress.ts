import type { Io } from "./io.js";

export interface Progress {
  /** One unit ended; `line` is what a log shows for it. */
  tick(ok: boolean, line: string): void;
  /** Several items ended at once (e.g. a batch); `line` is what a log shows for them. */
  add(ok: number, failed: number, line: string): void;
  /** Not an item (e.g. a wait): above the bar on a terminal, a plain line when piped. */
  note(line: string): void;
  /** More items to come than the total said (e.g. some put back in a queue). */
  grow(n: number): void;
  done(): void;
}

/**
 * Long work shows a bar on a terminal (stderr, redrawn at most ten times a second) and one
 * plain line per item (or batch) when piped (stdout, unless --json keeps stdout for the result).
 */
export function progress(io: Io, p: { total?: number; json: boolean; label: string; words?: { ok: string; failed: string } }): Progress {
  const words = p.words ?? { ok: "ok", failed: "failed" };
  let total = p.total;
  let ok = 0;
  let failed = 0;
  const started = Date.now();
  let drawn = 0;
  const draw = (force: boolean) => {
    const now = Date.now();
    if (!force && now - drawn < 100) return;
    drawn = now;
    const n = ok + failed;
    const rate = n / Math.max((now - started) / 1000, 0.001);
    const width = 30;
    const filled = total ? Math.round((width * Math.min(n, total)) / total) : 0;
    const bar = total ? `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${n}/${total}` : `${n}`;
    io.err(`\r${bar} ${p.label}: ${ok} ${words.ok}, ${failed} ${words.failed}, ${rate.toFixed(1)}/s `);
  };
  const add = (n: number, m: number, line: string) => {
    ok += n;
    failed += m;
    if (io.isTty) draw(false);
    else if (!p.json) io.out(line + "\n");
  };
  return {
    tick: (success, line) => add(success ? 1 : 0, success ? 0 : 1, line),
    add,
    note(line) {
      if (io.isTty) {
        io.err(`\r\x1b[K${line}\n`);
        draw(true);
      } else if (!p.json) io.out(line + "\n");
    },
    grow(n) {
      if (total !== undefined) total += n;
    },
    done() {
      if (io.isTty) {
        draw(true);
        io.err("\n");
      }
    },
  };
}
