import type { Io } from "./io.js";

export interface Progress {
  /** One unit ended; `line` is what a log shows for it. */
  tick(ok: boolean, line: string): void;
  done(): void;
}

/**
 * Long work shows a bar on a terminal (stderr, redrawn at most ten times a second) and one
 * plain line per item when piped (stdout, unless --json keeps stdout for the result).
 */
export function progress(io: Io, p: { total?: number; json: boolean; label: string }): Progress {
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
    const filled = p.total ? Math.round((width * Math.min(n, p.total)) / p.total) : 0;
    const bar = p.total ? `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${n}/${p.total}` : `${n}`;
    io.err(`\r${bar} ${p.label}: ${ok} ok, ${failed} failed, ${rate.toFixed(1)}/s `);
  };
  return {
    tick(success, line) {
      if (success) ok++;
      else failed++;
      if (io.isTty) draw(false);
      else if (!p.json) io.out(line + "\n");
    },
    done() {
      if (io.isTty) {
        draw(true);
        io.err("\n");
      }
    },
  };
}
