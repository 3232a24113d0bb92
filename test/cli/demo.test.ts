import { afterAll, describe, expect, it } from "vitest";
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { idmint, oneLineError, openssl, scratch } from "../helpers.js";

const s = scratch("demo");
afterAll(() => s.cleanup());

describe("idmint demo", () => {
  it("tells the whole story, twice in the same home, and everything it issued verifies with openssl", () => {
    const home = join(s.dir, "demo");
    for (let run = 0; run < 2; run++) {
      const r = idmint(["demo", "--home", home, "--units", "6", "--slots", "3", "--json"]);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.line).toMatchObject({ units: 6, provisioned: 6, failed: 0 });
      expect(out.ledger).toMatchObject({ ok: true, uncovered: 0 });
      expect(out.ledger.checkpoints).toBeGreaterThanOrEqual(1);
      expect(out.reconciled).toMatchObject({ ok: true, allocated: 6, provisioned: 6, anomalies: [] });
      expect(out.line.pendingUploads).toBe(0);
      expect(readFileSync(out.decryptedFile, "utf8")).toMatch(/^! initial configuration of a new router/);
      expect(statSync(out.keyFile).mode & 0o777).toBe(0o600);
      const viaOpenssl = openssl(["cms", "-decrypt", "-binary", "-inform", "DER", "-in", out.cmsFile, "-recip", join(home, "certs", "SN000001.pem"), "-inkey", out.keyFile]);
      expect(viaOpenssl.stdout, viaOpenssl.stderr).toBe(readFileSync(out.decryptedFile, "utf8"));
      const certs = readdirSync(join(home, "certs")).map((f) => join(home, "certs", f));
      expect(certs).toHaveLength(6);
      const v = openssl(["verify", "-CAfile", join(home, "pki", "root.pem"), "-untrusted", join(home, "pki", "factory-ca.pem"), ...certs]);
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
