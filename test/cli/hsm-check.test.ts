import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { IdmintConfig } from "../../core/index.js";
import type { CheckReport } from "../../hsm/index.js";
import { idmint, lineHome, oneLineError, scratch } from "../helpers.js";

// `idmint hsm check` against real SoftHSM tokens and the real binary: every role is tried,
// each failure is its own row, and the exit code is the first failure's.

const s = scratch("hsm-check");
afterAll(() => s.cleanup());

let healthy: string;
let config: IdmintConfig;

/** A home of its own holding only an edited idmint.json: its key URIs still name the healthy home's tokens and PIN files. */
let homes = 0;
function homeWith(edit: (c: IdmintConfig) => void): string {
  const home = join(s.dir, `edited-${++homes}`);
  mkdirSync(home);
  const c = structuredClone(config);
  edit(c);
  writeFileSync(join(home, "idmint.json"), JSON.stringify(c, null, 2));
  return home;
}

const check = (home: string, ...args: string[]) => idmint(["--home", home, "hsm", "check", ...args]);
const report = (stdout: string) => JSON.parse(stdout) as CheckReport;

beforeAll(() => {
  healthy = lineHome(s.dir, "line", 1).home;
  config = JSON.parse(readFileSync(join(healthy, "idmint.json"), "utf8")) as IdmintConfig;
});

describe("idmint hsm check", () => {
  it("a healthy home: exit 0, every role ok with the sign's round trip", () => {
    const r = check(healthy);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe(`module ${config.hsm.module}`);
    expect(lines[1]).toMatch(/^role\s+result\s+token\s+key\s+algorithm\s+mechanism\s+round trip$/);
    expect(lines.slice(2).map((l) => l.split(/\s+/)[0])).toEqual(["root", "factory-ca", "allocation-signer", "station", "unit-token"]);
    expect(lines[2]).toMatch(/^root\s+ok\s+vendor-root\s+vendor-root-key\s+EC-P384\s+CKM_ECDSA \(SHA-384 on the host\)\s+\d+(\.\d+)? ms$/);
    expect(lines[3]).toMatch(/^factory-ca\s+ok\s+factory-ca\s+factory-ca-key\s+EC-P256\s+CKM_ECDSA \(SHA-256 on the host\)\s+\d+(\.\d+)? ms$/);
    expect(lines[6]).toMatch(/^unit-token\s+ok\s+unit-se\s+\(no fixed key\).*\d+(\.\d+)? ms \(login\)$/);
  });

  it("--json: one document, per role ok, token, key URI without the PIN, mechanism and round trip; --role picks roles", () => {
    const r = check(healthy, "--json", "--role", "station", "--role", "factory-ca");
    expect(r.code, r.stderr).toBe(0);
    const doc = report(r.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.module).toBe(config.hsm.module);
    // The config's order, whatever order the options came in.
    expect(doc.roles.map((c) => c.role)).toEqual(["factory-ca", "station"]);
    for (const c of doc.roles) {
      expect(c).toMatchObject({ ok: true, operation: "sign", algorithm: "EC-P256", mechanism: "CKM_ECDSA (SHA-256 on the host)" });
      expect(c.roundTripMs).toBeGreaterThan(0);
      expect(c.openMs).toBeGreaterThan(0);
      expect(c.error).toBeUndefined();
      expect(c.uri).not.toMatch(/pin/);
    }
    expect(doc.roles[0]).toMatchObject({ token: "factory-ca", key: "factory-ca-key", uri: "pkcs11:token=factory-ca;object=factory-ca-key;type=private" });
  });

  it("a wrong PIN on one role and a missing token on another: both reported, the others ok, exit 4, one line on stderr", () => {
    const wrongPin = join(s.dir, "wrong.pin");
    writeFileSync(wrongPin, "0000\n", { mode: 0o600 });
    const home = homeWith((c) => {
      c.keys.factoryCa = c.keys.factoryCa.replace(/pin-source=[^&]*/, `pin-source=file:${wrongPin}`);
      c.keys.station = c.keys.station.replace("token=station;", "token=station-unplugged;");
    });
    const r = check(home);
    expect(r.code, r.stderr).toBe(4);
    expect(oneLineError(r)).toMatch(/^idmint: 2 of 5 keys failed the check: factory-ca: wrong PIN for token factory-ca: .*; also station \(see the table\)$/);
    const rows = r.stdout.trimEnd().split("\n").slice(2);
    expect(rows).toHaveLength(5);
    expect(rows[1]).toMatch(/^factory-ca\s+FAILED\s+factory-ca\s+PIN_INCORRECT: wrong PIN for token factory-ca/);
    expect(rows[3]).toMatch(/^station\s+FAILED\s+station-unplugged\s+TOKEN_NOT_FOUND: no token station-unplugged in PKCS#11 module/);
    for (const i of [0, 2, 4]) expect(rows[i]).toMatch(/^\S+\s+ok\s/);

    const j = check(home, "--json");
    expect(j.code).toBe(4);
    const doc = report(j.stdout);
    expect(doc.ok).toBe(false);
    expect(doc.roles.map((c) => [c.role, c.ok, c.error?.code])).toEqual([
      ["root", true, undefined],
      ["factory-ca", false, "PIN_INCORRECT"],
      ["allocation-signer", true, undefined],
      ["station", false, "TOKEN_NOT_FOUND"],
      ["unit-token", true, undefined],
    ]);
    expect(doc.roles[1]!.roundTripMs).toBeUndefined();
  });

  it("a missing module: every role fails with it, exit 4, one line", () => {
    const home = homeWith((c) => (c.hsm.module = "/nonexistent/libpkcs11.so"));
    const r = check(home, "--json");
    expect(r.code, r.stderr).toBe(4);
    expect(oneLineError(r)).toMatch(/^idmint: 5 of 5 keys failed the check: root: PKCS#11 module \/nonexistent\/libpkcs11\.so does not exist/);
    const doc = report(r.stdout);
    expect(doc.roles.every((c) => !c.ok && c.error?.code === "MODULE_NOT_FOUND")).toBe(true);
  });

  it("--role unit-token on a home without a units' token is a usage error", () => {
    const home = homeWith((c) => delete c.simulator);
    const r = check(home, "--role", "unit-token");
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toMatch(/this home has no units' token/);
  });
});
