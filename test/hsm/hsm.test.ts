import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPublicKey, verify as nodeVerify, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { Home } from "../../core/index.js";
import { Hsm, HsmError, formatPkcs11Uri, initEmbeddedHsm, type KeyAlgorithm } from "../../hsm/index.js";
import { PKCS11_SPY, run, scratch } from "../helpers.js";

const s = scratch("hsm");
let home: Home;
let hsm: Hsm;
let stationUri: string;
let pinFile: string;

beforeAll(() => {
  home = new Home(`${s.dir}/home`);
  initEmbeddedHsm(home);
  const config = home.readConfig();
  stationUri = config.keys.station;
  pinFile = `${home.pinDir}/station.pin`;
  hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
});

afterAll(() => {
  hsm?.close();
  s.cleanup();
});

const keyUri = (object: string) => formatPkcs11Uri({ token: "station", object, pinSource: `file:${pinFile}` });

function verifies(spki: Uint8Array, alg: KeyAlgorithm, data: Uint8Array, sig: Uint8Array): boolean {
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  if (alg.startsWith("EC-")) {
    return nodeVerify(alg === "EC-P384" ? "sha384" : "sha256", data, { key, dsaEncoding: "ieee-p1363" }, sig);
  }
  return nodeVerify("sha256", data, key, sig);
}

describe("Hsm on SoftHSM2", () => {
  for (const alg of ["EC-P256", "EC-P384", "RSA-2048", "RSA-3072"] as const) {
    it(`creates a sensitive, non-extractable ${alg} token key whose signatures Node verifies`, async () => {
      const uri = keyUri(`test-${alg}`);
      const signer = hsm.createKey(uri, alg);
      expect(signer.algorithm).toBe(alg);
      const data = randomBytes(200);
      expect(verifies(signer.publicKeySpki, alg, data, await signer.sign(data))).toBe(true);

      const again = hsm.signer(uri);
      expect(Buffer.from(again.publicKeySpki)).toEqual(Buffer.from(signer.publicKeySpki));
      const info = hsm.listKeys(uri).find((k) => k.label === `test-${alg}`)!;
      expect(info).toMatchObject({ algorithm: alg, sensitive: true, extractable: false });
    });
  }

  it("signs concurrently from many callers and signers without CKR_OPERATION_ACTIVE", async () => {
    const a = hsm.signer(keyUri("test-EC-P256"));
    const b = hsm.signer(keyUri("test-EC-P256"));
    const messages = Array.from({ length: 400 }, (_, i) => Buffer.from(`message ${i}`));
    const sigs = await Promise.all(messages.map((m, i) => (i % 2 ? a : b).sign(m)));
    sigs.forEach((sig, i) => expect(verifies(a.publicKeySpki, "EC-P256", messages[i]!, sig)).toBe(true));
  });

  it("refuses to replace an existing key", () => {
    expect(() => hsm.createKey(keyUri("test-EC-P256"), "EC-P256")).toThrowError(expect.objectContaining({ code: "KEY_EXISTS" }));
  });

  it("reports a missing key and never creates one", () => {
    const uri = keyUri("no-such-key");
    expect(() => hsm.signer(uri)).toThrowError(expect.objectContaining({ code: "KEY_NOT_FOUND" }));
    expect(hsm.listKeys(uri).some((k) => k.label === "no-such-key")).toBe(false);
  });

  it("reports a missing token by label", () => {
    const uri = formatPkcs11Uri({ token: "no-such-token", object: "k", pinSource: `file:${pinFile}` });
    expect(() => hsm.signer(uri)).toThrowError(expect.objectContaining({ code: "TOKEN_NOT_FOUND" }));
  });

  it("keeps pkcs11-tool's view in line: the keys are sensitive and never extractable", () => {
    const config = home.readConfig();
    const pin = (() => {
      const r = run("cat", [pinFile]);
      return r.stdout.trim();
    })();
    const r = run("pkcs11-tool", ["--module", config.hsm.module, "--token-label", "station", "--login", "--pin", "env:IDMINT_TEST_PIN", "-O", "--type", "privkey"], {
      env: { ...process.env, SOFTHSM2_CONF: config.hsm.softhsmConf, IDMINT_TEST_PIN: pin },
    });
    expect(r.code, r.stderr).toBe(0);
    const blocks = r.stdout.split("Private Key Object").slice(1);
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    for (const block of blocks) {
      expect(block).toMatch(/Access:.*sensitive, always sensitive, never extractable/);
      expect(block).toMatch(/Usage:\s+sign\s*$/m);
    }
  });

  it("close is idempotent", () => {
    const config = home.readConfig();
    const other = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
    other.close();
    other.close();
    expect(() => other.signer(stationUri)).toThrowError(HsmError);
  });

  it("a wrong PIN fails once with PIN_INCORRECT", () => {
    const config = home.readConfig();
    const wrongPin = `${s.dir}/wrong.pin`;
    writeFileSync(wrongPin, "not-the-pin\n");
    const other = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
    try {
      // The factory-ca token is not logged in yet in this process.
      const uri = formatPkcs11Uri({ token: "factory-ca", object: "factory-ca-key", pinSource: `file:${wrongPin}` });
      expect(() => other.signer(uri)).toThrowError(expect.objectContaining({ code: "PIN_INCORRECT" }));
    } finally {
      other.close();
    }
  });

  // pkcs11-spy reads PKCS11SPY from the process environment when it is loaded.
  it.runIf(PKCS11_SPY !== undefined)("a token that refused its PIN is never logged in to again by the same Hsm", () => {
    const config = home.readConfig();
    const wrongPin = `${s.dir}/wrong-again.pin`;
    const log = `${s.dir}/spy-login.log`;
    writeFileSync(wrongPin, "not-the-pin\n");
    process.env.PKCS11SPY = config.hsm.module;
    process.env.PKCS11SPY_OUTPUT = log;
    const spied = Hsm.open({ module: PKCS11_SPY!, softhsmConf: config.hsm.softhsmConf });
    try {
      // The allocation-signer token is not logged in yet in this process.
      const uri = formatPkcs11Uri({ token: "allocation-signer", object: "allocation-signer-key", pinSource: `file:${wrongPin}` });
      for (let i = 0; i < 3; i++) expect(() => spied.signer(uri)).toThrowError(expect.objectContaining({ code: "PIN_INCORRECT", kind: "hsm" }));
    } finally {
      spied.close();
      delete process.env.PKCS11SPY;
      delete process.env.PKCS11SPY_OUTPUT;
    }
    expect(readFileSync(log, "utf8").match(/^\d+: C_Login$/gm) ?? []).toHaveLength(1);
  });

  it("hsm init where the home cannot be made fails with a typed error, not an internal one", () => {
    const file = `${s.dir}/a-file`;
    writeFileSync(file, "");
    expect(() => initEmbeddedHsm(new Home(`${file}/home`))).toThrowError(expect.objectContaining({ code: "HOME_UNWRITABLE", kind: "state", message: expect.stringMatching(/^cannot create .*a-file\/home/) }));
  });
});
