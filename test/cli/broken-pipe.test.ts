import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { makeHome, must } from "../directory/fixture.js";
import { BIN, REPO, scratch } from "../helpers.js";

// Issue 16, item 7: `idmint ledger verify | head -1` must not end with a stack trace.

const s = scratch("broken-pipe");
afterAll(() => s.cleanup());
let home = "";

beforeAll(() => {
  const made = makeHome(s.dir, "home");
  home = made.home;
  const list = join(s.dir, "allocation.json");
  must(made.cli("serials", "allocate", "--order", "PO-1", "--station", "station-1", "--model", "RT-1", "--count", "5", "--prefix", "SN", "--start", "1", "--out", list), "allocate");
  must(made.cli("serials", "import", list), "import");
});

/**
 * Runs the binary with its stdout on a pipe whose reader is gone before the first byte: the
 * read end is closed as soon as the child starts, long before idmint has loaded, so every
 * write meets EPIPE, every time.
 */
function withClosedStdout(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [BIN, "--home", home, ...args], { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.destroy();
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

describe("a reader that closes stdout early", () => {
  const cases: Array<{ args: string[]; code: number; stderr: RegExp }> = [
    { args: ["ledger", "verify"], code: 0, stderr: /^$/ },
    { args: ["ledger", "verify", "--json"], code: 0, stderr: /^$/ },
    { args: ["serials", "status"], code: 0, stderr: /^$/ },
    { args: ["ledger", "--help"], code: 0, stderr: /^$/ },
    // A refusal whose --json document meets the broken pipe: still its own exit code and line.
    { args: ["ledger", "prove", "--serial", "NOPE", "--json"], code: 3, stderr: /^idmint: the ledger has no certificate for serial NOPE[^\n]*\n$/ },
  ];
  for (const c of cases) {
    it(`idmint ${c.args.join(" ")}: exit ${c.code}, no stack trace, three times in a row`, async () => {
      for (let i = 0; i < 3; i++) {
        const r = await withClosedStdout(c.args);
        expect(r.stderr).toMatch(c.stderr);
        expect(r.code).toBe(c.code);
      }
    });
  }
});
