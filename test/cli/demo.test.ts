import { afterAll, describe, expect, it } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { idmint, oneLineError, openssl, scratch } from "../helpers.js";

const s = scratch("demo");
afterAll(() => s.cleanup());

describe("idmint demo", () => {
  it("runs the story end to end, twice in the same home, and everything it issued verifies with openssl", () => {
    const home = join(s.dir, "demo");
    for (let run = 0; run < 2; run++) {
      const r = idmint(["demo", "--home", home, "--units", "3", "--json"]);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { units: Array<{ path: string; chainVerified: boolean }>; ledger: { entries: number; checkpoints: number; uncovered: number } };
      expect(out.units).toHaveLength(3);
      expect(out.ledger).toMatchObject({ entries: 6, checkpoints: 1, uncovered: 0 });
      const v = openssl(["verify", "-CAfile", join(home, "pki", "root.pem"), "-untrusted", join(home, "pki", "factory-ca.pem"), ...out.units.map((u) => u.path)]);
      expect(v.code, v.stderr).toBe(0);
    }
  });

  it("refuses to touch a directory it did not make", () => {
    const mine = join(s.dir, "precious");
    mkdirSync(mine);
    writeFileSync(join(mine, "keep.txt"), "data");
    const r = idmint(["demo", "--home", mine]);
    expect(r.code).toBe(5);
    expect(oneLineError(r)).toMatch(/not a demo home/);
  });
});
