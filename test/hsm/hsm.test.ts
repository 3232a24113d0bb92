import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPublicKey, verify as nodeVerify, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { Home } from "../../core/index.js";
import { Hsm, HsmError, formatPkcs11Uri, initEmbeddedHsm, type KeyAlgorithm } from "../../hsm/index.js";
import { PKCS11_SPY, run, scratch } from "../helpers.js";
import { P11KIT_MISSING, startP11KitServer, type P11KitServer } from "../fixtures/p11kit.js";

const s = scratch("hsm");

afterAll(() => s.cleanup());

/**
 * How the suite reaches a home's SoftHSM tokens: loading SoftHSM itself, or through p11-kit's
 * client module and a `p11-kit server` on a Unix socket, as a network HSM is reached.
 */
interface Reach {
  name: string;
  missing?: string;
  /** The module and environment of this home's tokens; what `stop` ends after the suite. */
  connect(home: Home): Promise<{ module: string; softhsmConf?: string; env: NodeJS.ProcessEnv; stop?: () => Promise<void> }>;
}

const REACHES: Reach[] = [
  {
    name: "SoftHSM2 directly",
    connect: async (home) => {
      const config = home.readConfig();
      return { module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, env: { SOFTHSM2_CONF: config.hsm.softhsmConf } };
    },
  },
  {
    name: "SoftHSM2 through p11-kit's remote module",
    missing: P11KIT_MISSING,
    connect: async (home) => {
      const server: P11KitServer = await startP11KitServer(s.dir, home.softhsmConfPath);
      // The client module reads its server's address from the real environment at C_Initialize.
      process.env.P11_KIT_SERVER_ADDRESS = server.env.P11_KIT_SERVER_ADDRESS;
      const stop = async () => {
        delete process.env.P11_KIT_SERVER_ADDRESS;
        await server.stop();
      };
      return { module: server.module, env: server.env, stop };
    },
  },
];

for (const reach of REACHES) {
  describe.skipIf(reach.missing !== undefined)(`Hsm on ${reach.name}${reach.missing ? ` (skipped: ${reach.missing})` : ""}`, () => suite(reach));
}

function verifies(spki: Uint8Array, alg: KeyAlgorithm, data: Uint8Array, sig: Uint8Array): boolean {
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  if (alg.startsWith("EC-")) {
    return nodeVerify(alg === "EC-P384" ? "sha384" : "sha256", data, { key, dsaEncoding: "ieee-p1363" }, sig);
  }
  return nodeVerify("sha256", data, key, sig);
}

function suite(reach: Reach): void {
  let home: Home;
  let hsm: Hsm;
  let stationUri: string;
  let pinFile: string;
  let reached: Awaited<ReturnType<Reach["connect"]>>;
  const open = () => Hsm.open({ module: reached.module, softhsmConf: reached.softhsmConf });

  beforeAll(async () => {
    // Each reach its own home: the suite creates keys, and SoftHSM is loaded with one configuration at a time.
    home = new Home(`${s.dir}/home-${REACHES.indexOf(reach)}`);
    initEmbeddedHsm(home);
    const config = home.readConfig();
    stationUri = config.keys.station;
    pinFile = `${home.pinDir}/station.pin`;
    reached = await reach.connect(home);
    hsm = open();
  });

  afterAll(async () => {
    hsm?.close();
    await reached?.stop?.();
  });

  const keyUri = (object: string) => formatPkcs11Uri({ token: "station", object, pinSource: `file:${pinFile}` });

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
    const pin = readFileSync(pinFile, "utf8").trim();
    const r = run("pkcs11-tool", ["--module", reached.module, "--token-label", "station", "--login", "--pin", "env:IDMINT_TEST_PIN", "-O", "--type", "privkey"], {
      env: { ...process.env, ...reached.env, IDMINT_TEST_PIN: pin },
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
    const other = open();
    other.close();
    other.close();
    expect(() => other.signer(stationUri)).toThrowError(HsmError);
  });

  it("a wrong PIN fails once with PIN_INCORRECT", () => {
    const wrongPin = `${s.dir}/wrong.pin`;
    writeFileSync(wrongPin, "not-the-pin\n");
    const other = open();
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
    const wrongPin = `${s.dir}/wrong-again.pin`;
    const log = `${s.dir}/spy-login-${REACHES.indexOf(reach)}.log`;
    writeFileSync(wrongPin, "not-the-pin\n");
    process.env.PKCS11SPY = reached.module;
    process.env.PKCS11SPY_OUTPUT = log;
    const spied = Hsm.open({ module: PKCS11_SPY!, softhsmConf: reached.softhsmConf });
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
}

it("hsm init where the home cannot be made fails with a typed error, not an internal one", () => {
  const file = `${s.dir}/a-file`;
  writeFileSync(file, "");
  expect(() => initEmbeddedHsm(new Home(`${file}/home`))).toThrowError(expect.objectContaining({ code: "HOME_UNWRITABLE", kind: "state", message: expect.stringMatching(/^cannot create .*a-file\/home/) }));
});
