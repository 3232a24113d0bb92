import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { openDb, systemClock } from "../../core/index.js";
import { Ledger, stationOrigin, verifyLedger } from "../../ledger/index.js";
import { REPO, scratch } from "../helpers.js";

const s = scratch("crash");
afterAll(() => s.cleanup());

/** Starts the appender, SIGKILLs it once `killAfter` appends were acknowledged, returns the last acknowledged index. */
function appendUntilKilled(db: string, killAfter: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(REPO, "test/fixtures/ledger-appender.ts"), db], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    let buffered = "";
    let acked = -1;
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.stdout.on("data", (d: Buffer) => {
      buffered += d.toString("utf8");
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const l of lines) acked = Number(l);
      if (acked + 1 >= killAfter) child.kill("SIGKILL");
    });
    child.on("exit", (code, signal) => {
      if (signal === "SIGKILL") resolve(acked);
      else reject(new Error(`appender exited with ${code}: ${stderr}`));
    });
  });
}

describe("ledger crash safety", () => {
  it("keeps every acknowledged append through repeated SIGKILLs, and still verifies", async () => {
    const db = join(s.dir, "crash.db");
    let lastAcked = -1;
    for (const killAfter of [37, 211, 404]) {
      lastAcked = await appendUntilKilled(db, lastAcked + 1 + killAfter);
      const conn = openDb(db);
      try {
        const ledger = new Ledger(conn, systemClock);
        expect(ledger.size()).toBeGreaterThan(lastAcked);
        // No checkpoint exists, so no key is consulted; the tree and every entry are.
        const report = verifyLedger(conn, { origin: stationOrigin("crash"), spki: new Uint8Array(0) });
        expect(report.entries).toBe(ledger.size());
        expect(ledger.entry(lastAcked).index).toBe(lastAcked);
      } finally {
        conn.close();
      }
    }
    expect(lastAcked).toBeGreaterThanOrEqual(650);
  });
});
