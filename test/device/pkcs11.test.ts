import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Home, sha256Hex, type IdmintConfig } from "../../core/index.js";
import { Hsm, formatPkcs11Uri, initEmbeddedHsm } from "../../hsm/index.js";
import { checkCsr } from "../../pki/index.js";
import { TcpFixture, type UnitLink } from "../../link/index.js";
import { readSoftUnitKey, readUnitRecord, unitsDbPath } from "../../device/index.js";
import { UnitSimulator } from "../../sim/index.js";
import { run, scratch } from "../helpers.js";
import { makePki, type TestPki } from "../fixtures/pki-fixture.js";

const unhandled: unknown[] = [];
process.on("unhandledRejection", (e) => unhandled.push(e));

const s = scratch("units-pkcs11");
const unitsDir = join(s.dir, "units");
let config: IdmintConfig;
let pin: string;
let tokenUri: string;
let pki: TestPki;
let sim: UnitSimulator;
let hsm: Hsm;
let fixture: TcpFixture;

beforeAll(async () => {
  const home = new Home(join(s.dir, "home"));
  initEmbeddedHsm(home);
  config = home.readConfig();
  // The units' secure element: a token of this test's own next to the embedded default's
  // (whose labels, unit-se included, it must not repeat: tokens are found by label).
  pin = randomBytes(8).toString("hex");
  const pinFile = join(home.pinDir, "units-test-se.pin");
  writeFileSync(pinFile, pin + "\n", { mode: 0o600 });
  const init = run("softhsm2-util", ["--init-token", "--free", "--label", "units-test-se", "--so-pin", randomBytes(8).toString("hex"), "--pin", pin], {
    env: { ...process.env, SOFTHSM2_CONF: config.hsm.softhsmConf },
  });
  if (init.code !== 0) throw new Error(init.stderr);
  tokenUri = formatPkcs11Uri({ token: "units-test-se", pinSource: `file:${pinFile}` });

  pki = await makePki();
  sim = await UnitSimulator.start({
    unitsDir,
    root: pki.rootPem,
    count: 3,
    prefix: "HSM",
    start: 1,
    keystore: { kind: "pkcs11", module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, tokenUri },
    faults: [{ serial: "HSM000002", fault: "duplicate-key" }],
  });
  hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
  fixture = new TcpFixture(sim.host, sim.port, { timeoutMs: 10_000 });
});

afterAll(async () => {
  await sim?.close();
  hsm?.close();
  s.cleanup();
  expect(unhandled).toEqual([]);
});

async function next(): Promise<UnitLink> {
  const link = await fixture.next();
  if (!link) throw new Error("no more units");
  return link;
}

const state = (serial: string) => readUnitRecord(unitsDir, serial)!;
const tokenKeys = () => hsm.listKeys(tokenUri);

/** pkcs11-tool, another process, sees only token objects: the proof the key is in the token, not a session. */
function pkcs11ToolPrivateKeys(): string {
  const r = run("pkcs11-tool", ["--module", config.hsm.module, "--token-label", "units-test-se", "--login", "--pin", "env:IDMINT_TEST_PIN", "-O", "--type", "privkey"], {
    env: { ...process.env, SOFTHSM2_CONF: config.hsm.softhsmConf, IDMINT_TEST_PIN: pin },
  });
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout;
}

describe("the pkcs11 keystore: unit keys in a SoftHSM token playing the secure element", () => {
  let firstSpki = "";

  it("generates a sensitive, non-extractable token key, signs the CSR in the token, and installs the IDevID", async () => {
    const link = await next();
    const { csr } = await link.genkey("EC-P256");
    const checked = await checkCsr(csr, "HSM000001");
    firstSpki = Buffer.from(checked.publicKeySpki).toString("hex");

    const st = state("HSM000001");
    expect(st.key).toMatchObject({ keystore: "pkcs11", object: expect.stringMatching(/^unit-HSM000001-[0-9a-f]{8}$/) });
    const object = (st.key as { object: string }).object;
    // Nothing of the private key is in the unit's flash.
    const db = new Database(unitsDbPath(unitsDir), { readonly: true });
    expect(db.prepare("SELECT pkcs8 FROM units WHERE serial = 'HSM000001'").pluck().get()).toBeNull();
    db.close();
    expect(() => readSoftUnitKey(unitsDir, "HSM000001")).toThrow(/in a PKCS#11 token/);

    expect(tokenKeys().find((k) => k.label === object)).toMatchObject({ algorithm: "EC-P256", sensitive: true, extractable: false });
    const listing = pkcs11ToolPrivateKeys().split("Private Key Object").find((b) => b.includes(`label:      ${object}`));
    expect(listing).toMatch(/Access:\s+sensitive, always sensitive, never extractable, local/);

    const cert = await pki.issue(checked.publicKeySpki, "HSM000001");
    expect(await link.install(cert.toString("pem"), pki.chainPems)).toEqual({ fingerprint: sha256Hex(new Uint8Array(cert.rawData)) });
    await link.close();
  });

  it("duplicate-key reuses the previous unit's token key: same SPKI, no new object", async () => {
    const before = tokenKeys().length;
    const link = await next();
    const checked = await checkCsr((await link.genkey("EC-P256")).csr, "HSM000002");
    expect(Buffer.from(checked.publicKeySpki).toString("hex")).toBe(firstSpki);
    expect(tokenKeys()).toHaveLength(before);
    expect(state("HSM000002")).toMatchObject({ key: state("HSM000001").key, keyOwned: false });
    await link.close();
  });

  it("a new genkey replaces the unit's own key object; RSA-2048 CSRs verify too", async () => {
    const link = await next();
    await link.genkey("EC-P256");
    const ecObject = (state("HSM000003").key as { object: string }).object;
    const checked = await checkCsr((await link.genkey("RSA-2048")).csr, "HSM000003");
    expect(checked.keyType).toBe("RSA-2048");
    const labels = tokenKeys().map((k) => k.label);
    expect(labels).not.toContain(ecObject);
    expect(tokenKeys().find((k) => k.label === (state("HSM000003").key as { object: string }).object)).toMatchObject({ algorithm: "RSA-2048", sensitive: true, extractable: false });
    await link.close();
  });
});
