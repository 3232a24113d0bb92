import { afterAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { StageTimes } from "../../station/stage-times.js";
import { lineHome, scratch } from "../helpers.js";

const s = scratch("long-line");
afterAll(() => s.cleanup());

describe("a long line keeps no per-unit state", () => {
  it("stage times are exact for ordinary runs and, past 100,000 units, within 1% in a histogram of fixed size", () => {
    const small = new StageTimes();
    for (let i = 1; i <= 1000; i++) small.add(i);
    expect([small.percentile(50), small.percentile(99)]).toEqual([500, 990]);
    const long = new StageTimes();
    for (let i = 0; i < 300_000; i++) long.add(1 + (i % 1000) / 10);
    expect(long.count).toBe(300_000);
    expect(long.percentile(50) / 50.9).toBeGreaterThan(0.99);
    expect(long.percentile(50) / 50.9).toBeLessThan(1.01);
    expect(long.percentile(99) / 99.9).toBeGreaterThan(0.99);
    expect(long.percentile(99) / 99.9).toBeLessThan(1.01);
  });

  it("copies certificates to HOME/certs by default, to --certs-dir when given, and to no file with --no-cert-files", () => {
    const line = lineHome(s.dir, "line", 12);
    const run = (...extra: string[]) => {
      const r = line.cli("station", "run", "--sim", "4", "--slots", "2", "--json", ...extra);
      if (r.code !== 0) throw new Error(r.stderr);
      return JSON.parse(r.stdout) as { provisioned: number };
    };
    expect(run().provisioned).toBe(4);
    expect(readdirSync(join(line.home, "certs")).sort()).toEqual(["SN000001.pem", "SN000002.pem", "SN000003.pem", "SN000004.pem"]);
    const elsewhere = join(s.dir, "certs-elsewhere");
    expect(run("--certs-dir", elsewhere).provisioned).toBe(4);
    expect(readdirSync(elsewhere)).toHaveLength(4);
    expect(run("--no-cert-files").provisioned).toBe(4);
    expect(readdirSync(join(line.home, "certs"))).toHaveLength(4);
    expect(readdirSync(elsewhere)).toHaveLength(4);
    expect(existsSync(join(line.home, "certs", "SN000009.pem"))).toBe(false);
    const status = JSON.parse(line.cli("serials", "status", "--json").stdout) as { allocations: Array<{ provisioned: number }> };
    expect(status.allocations[0]!.provisioned).toBe(12);
  });
});
