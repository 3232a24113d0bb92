import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { createPublicKey } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createServer } from "node:net";
import { checkCsr, x509 } from "../../pki/index.js";
import { TcpFixture, type UnitLink } from "../../link/index.js";
import { readSoftUnitKey, readUnitRecord } from "../../device/index.js";
import { UnitSimulator } from "../../sim/index.js";
import { BIN, REPO, idmint, idmintInProcess, oneLineError, openssl, run, scratch, type Run } from "../helpers.js";
import { makePki, type TestPki } from "../fixtures/pki-fixture.js";

const s = scratch("units-cli");
const home = join(s.dir, "home");
let pki: TestPki;

beforeAll(async () => {
  pki = await makePki();
  mkdirSync(join(home, "pki"), { recursive: true });
  writeFileSync(join(home, "pki", "root.pem"), pki.rootPem);
});
afterAll(() => s.cleanup());

/** Starts `idmint unit sim` as a real process and resolves with its first stdout line. */
function startSim(args: string[], simHome = home): Promise<{ child: ChildProcess; first: string; exit: Promise<{ code: number | null; stderr: string; stdout: string }> }> {
  const child = spawn(process.execPath, [BIN, "--home", simHome, "unit", "sim", ...args], { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  let stderr = "";
  let stdout = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exit = new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) => child.on("close", (code) => resolve({ code, stderr, stdout })));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (first) => resolve({ child, first, exit }));
    lines.on("line", (l) => (stdout += l + "\n"));
    const timer = setTimeout(() => reject(new Error(`no output from unit sim: ${stderr}`)), 20_000);
    child.on("close", () => {
      clearTimeout(timer);
      reject(new Error(`unit sim exited early: ${stderr}`));
    });
    lines.once("line", () => clearTimeout(timer));
  });
}

async function next(fixture: TcpFixture): Promise<UnitLink> {
  const link = await fixture.next();
  if (!link) throw new Error("no more units");
  return link;
}

describe("idmint unit sim", () => {
  it("serves --count units on the printed port until SIGTERM, then exits 0", async () => {
    const sim = await startSim(["--port", "0", "--count", "2", "--prefix", "CLI", "--start", "7", "--fault", "CLI000008=wrong-serial"]);
    const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(sim.first);
    expect(m, sim.first).not.toBeNull();
    const fixture = new TcpFixture("127.0.0.1", Number(m![1]), { timeoutMs: 5000 });

    const a = await next(fixture);
    expect((await a.hello()).serial).toBe("CLI000007");
    const checked = await checkCsr((await a.genkey("EC-P256")).csr, "CLI000007");
    const cert = await pki.issue(checked.publicKeySpki, "CLI000007");
    expect((await a.install(cert.toString("pem"), pki.chainPems)).fingerprint).toMatch(/^[0-9a-f]{64}$/);
    await a.close();

    const b = await next(fixture);
    await expect(checkCsr((await b.genkey("EC-P256")).csr, "CLI000008")).rejects.toMatchObject({ code: "CSR_SERIAL_MISMATCH" });
    await b.close();
    expect(await fixture.next()).toBeUndefined();

    sim.child.kill("SIGTERM");
    const r = await sim.exit;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/stopped after handing out 2 of 2 units\n$/);
  });

  it("--json prints one JSON line with host, port and count, and nothing else", async () => {
    const sim = await startSim(["--port", "0", "--count", "3", "--prefix", "J", "--start", "1", "--json"]);
    const ready = JSON.parse(sim.first) as { host: string; port: number; count: number };
    expect(ready).toEqual({ host: "127.0.0.1", port: expect.any(Number), count: 3 });
    sim.child.kill("SIGINT");
    const r = await sim.exit;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(sim.first + "\n");
  });

  it("refuses bad input with one line and a non-zero exit", async () => {
    const base = ["--home", home, "unit", "sim", "--port", "0", "--count", "2", "--prefix", "SN", "--start", "1"];
    // The real binary once, for its contract: the exit code and one "idmint: ..." line, no stack trace.
    const fault = idmint([...base, "--fault", "SN000001:garbage"]);
    expect(fault.code).toBe(2);
    expect(oneLineError(fault)).toMatch(/fault "SN000001:garbage" is not SERIAL=KIND/);

    const kind = await idmintInProcess([...base, "--fault", "SN000001=explode"]);
    expect(kind.code).toBe(2);
    expect(oneLineError(kind)).toMatch(/fault kind "explode" .* is unknown/);

    const count = await idmintInProcess(["--home", home, "unit", "sim", "--port", "0", "--count", "0", "--prefix", "SN", "--start", "1"]);
    expect(count.code).toBe(2);
    expect(oneLineError(count)).toMatch(/count 0 is out of range/);

    const root = await idmintInProcess([...base, "--root", join(s.dir, "absent.pem")]);
    expect(root.code).toBe(3);
    expect(oneLineError(root)).toMatch(/vendor root certificate .*absent\.pem does not exist/);

    const noHome = await idmintInProcess(["--home", join(s.dir, "empty"), "unit", "sim", "--port", "0", "--count", "1", "--prefix", "SN", "--start", "1"]);
    expect(noHome.code).toBe(5);
    expect(oneLineError(noHome)).toMatch(/no vendor root at .*root\.pem: run `idmint ca init/);

    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    try {
      const port = String((busy.address() as { port: number }).port);
      const inUse = await idmintInProcess(["--home", home, "unit", "sim", "--port", port, "--count", "1", "--prefix", "SN", "--start", "1", "--json"]);
      expect(inUse.code).toBe(3);
      expect(oneLineError(inUse)).toMatch(new RegExp(`port ${port} on 127.0.0.1 is in use`));
      expect(JSON.parse(inUse.stdout)).toMatchObject({ ok: false, error: { code: "SIM_LISTEN" } });
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }

    const token = await idmintInProcess([...base, "--keystore", "pkcs11"]);
    expect(token.code).toBe(2);
    expect(oneLineError(token)).toMatch(/--keystore pkcs11 needs --pkcs11-token/);

    const missing = await idmintInProcess(["--home", home, "unit", "sim", "--port", "0", "--count", "2"]);
    expect(missing.code).toBe(2);
    expect(oneLineError(missing)).toMatch(/Missing required arguments: prefix, start/);
  });

  it("--keystore pkcs11 keeps unit keys in a token of the home's PKCS#11 module", async () => {
    const hsmHome = join(s.dir, "hsm-home");
    const init = await idmintInProcess(["--home", hsmHome, "hsm", "init"]);
    expect(init.code, init.stderr).toBe(0);
    mkdirSync(join(hsmHome, "pki"), { recursive: true });
    writeFileSync(join(hsmHome, "pki", "root.pem"), pki.rootPem);
    const pinFile = join(hsmHome, "cli-se.pin");
    writeFileSync(pinFile, "87654321\n", { mode: 0o600 });
    const made = run("softhsm2-util", ["--init-token", "--free", "--label", "cli-se", "--so-pin", "12345678", "--pin", "87654321"], {
      env: { ...process.env, SOFTHSM2_CONF: join(hsmHome, "hsm", "softhsm2.conf") },
    });
    expect(made.code, made.stderr).toBe(0);

    const sim = await startSim(["--port", "0", "--count", "1", "--prefix", "P", "--start", "1", "--json", "--keystore", "pkcs11", "--pkcs11-token", `pkcs11:token=cli-se?pin-source=file:${pinFile}`], hsmHome);
    const first = sim.first;
    const link = await next(new TcpFixture("127.0.0.1", (JSON.parse(first) as { port: number }).port, { timeoutMs: 10_000 }));
    expect((await checkCsr((await link.genkey("EC-P256")).csr, "P000001")).keyType).toBe("EC-P256");
    await link.close();
    expect(readUnitRecord(join(hsmHome, "units"), "P000001")?.key).toMatchObject({ keystore: "pkcs11", object: expect.stringMatching(/^unit-P000001-/) });
    expect(() => readSoftUnitKey(join(hsmHome, "units"), "P000001")).toThrow(/in a PKCS#11 token/);
    // unit export cannot take the key out of the token, and says what to do instead.
    const out = join(s.dir, "P000001.key");
    const refused = await idmintInProcess(["--home", hsmHome, "unit", "export", "--serial", "P000001", "--key", "--out", out]);
    expect(refused.code).toBe(3);
    expect(oneLineError(refused)).toMatch(/^idmint: unit P000001's key is object unit-P000001-[0-9a-f]+ in a PKCS#11 token and never leaves it: decrypt with `idmint unit decrypt --serial P000001`/);
    expect(existsSync(out)).toBe(false);
    sim.child.kill("SIGTERM");
    const r = await sim.exit;
    expect(r.code, r.stderr).toBe(0);
  });

  it("has --help with an example", async () => {
    const r = await idmintInProcess(["unit", "sim", "--help"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Examples:/);
    expect(r.stdout).toMatch(/--fault/);
  });
});

describe("idmint unit export", () => {
  const exportHome = join(s.dir, "export-home");
  const unitsDir = join(exportHome, "units");
  const cli = (...args: string[]): Promise<Run> => idmintInProcess(["--home", exportHome, "unit", "export", ...args]);
  let n = 0;
  const fresh = () => join(s.dir, `export-${++n}.pem`);
  let installed: x509.X509Certificate;

  beforeAll(async () => {
    // EX-1 provisioned, EX-2 keyed only.
    const sim = await UnitSimulator.start({ unitsDir, root: pki.rootPem, serials: ["EX-1", "EX-2"] });
    try {
      const fixture = new TcpFixture(sim.host, sim.port);
      const a = await next(fixture);
      const checked = await checkCsr((await a.genkey("EC-P256")).csr, "EX-1");
      installed = await pki.issue(checked.publicKeySpki, "EX-1");
      await a.install(installed.toString("pem"), pki.chainPems);
      const b = await next(fixture);
      await b.genkey("EC-P256");
      await Promise.all([a.close(), b.close()]);
      await fixture.close();
    } finally {
      await sim.close();
    }
  });

  it("writes the unit's key (0600, the certificate's key, sound to openssl), its certificate and its chain", async () => {
    const key = fresh();
    const r = await cli("--serial", "EX-1", "--key", "--out", key, "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ serial: "EX-1", part: "key", out: key });
    expect(statSync(key).mode & 0o777).toBe(0o600);
    expect(openssl(["pkey", "-in", key, "-noout", "-check"]).code).toBe(0);
    expect(Buffer.from(createPublicKey(readFileSync(key, "utf8")).export({ type: "spki", format: "der" })).equals(Buffer.from(installed.publicKey.rawData))).toBe(true);

    const cert = fresh();
    const c = await cli("--serial", "EX-1", "--cert", "--out", cert);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toBe(`EX-1: certificate written to ${cert}\n`);
    expect(new x509.X509Certificate(readFileSync(cert, "utf8")).equal(installed)).toBe(true);

    const chain = fresh();
    expect((await cli("--serial", "EX-1", "--chain", "--out", chain)).code).toBe(0);
    expect(new x509.X509Certificate(readFileSync(chain, "utf8")).toString("pem")).toBe(pki.chainPems[0]);
    // A keyed unit's key can be exported before it holds a certificate.
    expect((await cli("--serial", "EX-2", "--key", "--out", fresh())).code).toBe(0);
  });

  it("refuses an unknown serial, a unit with no certificate yet, an existing --out and a missing or doubled part: one line, nothing written", async () => {
    const refused = (r: Run, code: number, out: string): string => {
      expect(r.code, r.stderr).toBe(code);
      expect(existsSync(out)).toBe(false);
      return oneLineError(r);
    };
    let out = fresh();
    expect(refused(await cli("--serial", "EX-9", "--cert", "--out", out), 5, out)).toMatch(/^idmint: there is no unit EX-9 in .*units: check the serial and --home/);
    expect(refused(await cli("--serial", "EX-2", "--cert", "--out", out), 5, out)).toBe("idmint: unit EX-2 has no certificate yet: provision it first (idmint station run)");
    expect(refused(await cli("--serial", "EX-2", "--chain", "--out", out), 5, out)).toMatch(/EX-2 has no certificate yet/);
    expect(refused(await cli("--serial", "../EX-1", "--key", "--out", out), 3, out)).toMatch(/serial "..\/EX-1" is not valid/);
    expect(refused(await cli("--serial", "EX-1", "--out", out), 2, out)).toBe("idmint: give exactly one of --key, --cert or --chain");
    expect(refused(await cli("--serial", "EX-1", "--key", "--cert", "--out", out), 2, out)).toMatch(/exactly one of/);
    const noUnits = await idmintInProcess(["--home", join(s.dir, "no-units"), "unit", "export", "--serial", "EX-1", "--key", "--out", out]);
    expect(refused(noUnits, 5, out)).toMatch(/there is no unit EX-1 in /);
    expect(existsSync(join(s.dir, "no-units", "units"))).toBe(false);

    out = fresh();
    writeFileSync(out, "keep");
    const exists = await cli("--serial", "EX-1", "--key", "--out", out);
    expect(exists.code).toBe(3);
    expect(oneLineError(exists)).toMatch(/--out .* already exists/);
    expect(readFileSync(out, "utf8")).toBe("keep");
  });

  it("has --help with an example", async () => {
    const r = await idmintInProcess(["unit", "export", "--help"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Examples:\n\s+idmint unit export --serial SN000042 --key --out/);
  });
});
