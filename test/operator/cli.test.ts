import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as pkijs from "pkijs";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { sha256Hex } from "../../core/index.js";
import { x509 } from "../../pki/index.js";
import { readSoftUnitKey, readUnitRecord } from "../../device/index.js";
import { REPO, idmintInProcess, oneLineError, openssl, scratch, type Run } from "../helpers.js";
import { directoryCommandLine, makeHome, must } from "../directory/fixture.js";

/**
 * RFC 8886 end to end, through the real binaries: a vendor line provisions units (soft EC,
 * soft RSA, EC in the unit-se token), uploads them to a real directory on 127.0.0.1; the
 * operator fetches and checks a certificate and encrypts to it; each unit decrypts with its
 * own key, and openssl cms interoperates both ways.
 */
const s = scratch("operator-cli");
const file = (name: string) => join(s.dir, name);
let vendor: ReturnType<typeof makeHome>;
let directory: ChildProcess | undefined;
let url = "";
/** The vendor home's commands in this process; vendor.cli runs the real binary. */
const cli = (...args: string[]): Promise<Run> => idmintInProcess(["--home", vendor.home, ...args]);

const EC = "SN000001";
const EC_OTHER = "SN000002";
const RSA = "SN000003";
const TOKEN = "SN000004";
const config = "hostname edge-7\nsnmp-server community s3cret RO\ninterface ge-0/0/1\n  description uplink\n";

beforeAll(async () => {
  vendor = makeHome(s.dir, "vendor");
  const list = file("po1.json");
  must(await cli("serials", "allocate", "--order", "PO-1", "--station", "station-1", "--model", "RT-1", "--count", "10", "--prefix", "SN", "--start", "1", "--out", list), "allocate");
  must(await cli("serials", "import", list), "import");
  must(await cli("directory", "allocations", "add", list), "directory allocations add");
  // The line stays on the binary: in this process it took as long (its simulator child and store-writer thread start under tsx).
  must(vendor.cli("station", "run", "--sim", "2"), "station run EC");
  must(vendor.cli("station", "run", "--sim", "1", "--alg", "RSA-2048"), "station run RSA");
  must(vendor.cli("station", "run", "--sim", "1", "--keystore", "pkcs11"), "station run pkcs11");
  writeFileSync(file("router.cfg"), config);

  directory = spawn(process.execPath, directoryCommandLine(vendor.home, "serve", "--port", "0", "--log-level", "warn"), { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  url = await new Promise<string>((resolve, reject) => {
    let stderr = "";
    directory!.stderr!.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => reject(new Error(`directory serve did not start: ${stderr}`)), 20_000);
    createInterface({ input: directory!.stdout! }).once("line", (line) => {
      clearTimeout(timer);
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (m) resolve(m[1]!);
      else reject(new Error(`unexpected first line from directory serve: ${line}`));
    });
  });
  must(await cli("station", "upload", "--directory", url), "station upload");
});

afterAll(async () => {
  if (directory && directory.exitCode === null) {
    const exited = new Promise((resolve) => directory!.once("close", resolve));
    directory.kill("SIGTERM");
    await exited;
  }
  s.cleanup();
});

const certFile = (serial: string) => join(vendor.home, "certs", `${serial}.pem`);
let n = 0;
const fresh = (name: string) => file(`${++n}-${name}`);
/** The unit's soft key as a file for openssl: the simulated units keep theirs in units.db. */
async function unitKey(serial: string): Promise<string> {
  const out = fresh(`${serial}.key`);
  must(await cli("unit", "export", "--serial", serial, "--key", "--out", out), "unit export --key");
  return out;
}

/** A refused command: the expected exit code, one line on stderr, and nothing at --out. */
function refused(r: Run, code: number, out: string): string {
  expect(r.code, r.stderr).toBe(code);
  expect(existsSync(out)).toBe(false);
  return oneLineError(r);
}

describe("idmint operator fetch", () => {
  it("fetches a unit's IDevID from the directory, checks it against the pinned root and prints its SHA-256 fingerprint", async () => {
    const out = fresh("SN000001.pem");
    const r = await cli("operator", "fetch", "--directory", url, "--serial", EC, "--root", vendor.h.pkiFile("root"), "--chain", vendor.h.pkiFile("factory-ca"), "--out", out, "--json");
    expect(r.code, r.stderr).toBe(0);
    const der = new Uint8Array(new x509.X509Certificate(readFileSync(out, "utf8")).rawData);
    expect(readFileSync(out, "utf8").replace(/\s+/g, "")).toBe(readFileSync(certFile(EC), "utf8").replace(/\s+/g, ""));
    expect(JSON.parse(r.stdout)).toMatchObject({ serial: EC, fingerprint: sha256Hex(der), out, key: "EC P-256", keyUsage: ["digitalSignature", "keyAgreement"], path: [expect.stringContaining(`CN=${EC}`), expect.stringContaining("Factory CA"), expect.stringContaining("Root CA")] });

    const human = await cli("operator", "fetch", "--directory", url, "--serial", RSA, "--root", vendor.h.pkiFile("root"), "--chain", vendor.h.pkiFile("factory-ca"), "--out", fresh("SN000003.pem"));
    expect(human.code, human.stderr).toBe(0);
    const fp = openssl(["x509", "-noout", "-fingerprint", "-sha256", "-in", certFile(RSA)]).stdout.trim().split("=")[1];
    expect(human.stdout).toContain(`SHA-256 fingerprint ${fp}`);
    expect(human.stdout).toMatch(/SN000003: IDevID checked .*RSA-2048, keyUsage digitalSignature, keyEncipherment/);
  });

  it("refuses a wrong root, an unpublished serial and a dead directory, each in one line, writing nothing; needs no --chain", async () => {
    // Another vendor's root with the very same name: only the signature tells them apart.
    const subject = openssl(["x509", "-noout", "-subject", "-nameopt", "compat", "-in", vendor.h.pkiFile("root")]).stdout.trim().replace(/^subject=/, "");
    const made = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes", "-keyout", file("fake-root.key"), "-out", file("fake-root.pem"), "-subj", subject, "-days", "1", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    expect(made.code, made.stderr).toBe(0);
    const base = ["operator", "fetch", "--directory", url, "--serial", EC, "--chain", vendor.h.pkiFile("factory-ca")];

    let out = fresh("x.pem");
    expect(refused(await cli(...base, "--root", file("fake-root.pem"), "--out", out), 6, out)).toMatch(/^idmint: the certificate of SN000001 does not chain to the pinned vendor root .* \(no signature by the pinned root or a given CA on .*Factory CA\): check that --root is this vendor's root/);

    out = fresh("x.pem");
    // The directory serves the factory CA after the device certificate, so --chain is optional.
    const noChain = await cli("operator", "fetch", "--directory", url, "--serial", EC, "--root", vendor.h.pkiFile("root"), "--out", out, "--json");
    expect(noChain.code, noChain.stderr).toBe(0);
    rmSync(out);

    out = fresh("x.pem");
    expect(refused(await cli(...base.slice(0, 5), "SN000009", "--chain", vendor.h.pkiFile("factory-ca"), "--root", vendor.h.pkiFile("root"), "--out", out), 3, out)).toBe(
      `idmint: the directory ${url} has no certificate for SN000009: check the serial, or ask the vendor whether that unit was provisioned and published`,
    );

    const closed = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, "127.0.0.1", () => {
        const port = (srv.address() as { port: number }).port;
        srv.close(() => resolve(port));
      });
    });
    out = fresh("x.pem");
    expect(refused(await cli("operator", "fetch", "--directory", `http://127.0.0.1:${closed}`, "--serial", EC, "--root", vendor.h.pkiFile("root"), "--out", out), 7, out)).toMatch(/cannot reach the directory .*ECONNREFUSED/);
  });
});

describe("idmint operator encrypt -> openssl cms -decrypt with the unit's key", () => {
  it("P-256 (DER) and RSA-2048 (PEM): openssl decrypts with the unit's exported key, and the output names the algorithms", async () => {
    const ecOut = fresh("ec.cms");
    const r = await cli("operator", "encrypt", "--cert", certFile(EC), "--in", file("router.cfg"), "--out", ecOut, "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: "der", bytes: config.length, recipient: { serialNumber: EC, key: "EC P-256" }, keyEncryption: "dhSinglePass-stdDH-sha256kdf-scheme", keyWrap: "id-aes256-wrap", contentEncryption: "aes-256-cbc" });
    const ec = openssl(["cms", "-decrypt", "-inform", "DER", "-in", ecOut, "-recip", certFile(EC), "-inkey", await unitKey(EC)]);
    expect(ec.code, ec.stderr).toBe(0);
    expect(ec.stdout).toBe(config);

    const rsaOut = fresh("rsa.pem");
    const h = await cli("operator", "encrypt", "--cert", certFile(RSA), "--in", file("router.cfg"), "--out", rsaOut, "--pem");
    expect(h.code, h.stderr).toBe(0);
    expect(h.stdout).toMatch(/^encrypted \d+ bytes to SN000003 \(RSA-2048; id-RSAES-OAEP \(sha256, MGF1-sha256\), aes-256-cbc\)\nwritten to .* \(PEM\)\n$/);
    expect(readFileSync(rsaOut, "utf8")).toMatch(/^-----BEGIN CMS-----\n/);
    const rsa = openssl(["cms", "-decrypt", "-inform", "PEM", "-in", rsaOut, "-recip", certFile(RSA), "-inkey", await unitKey(RSA)]);
    expect(rsa.code, rsa.stderr).toBe(0);
    expect(rsa.stdout).toBe(config);
  });

  it("refuses a certificate whose keyUsage forbids the scheme, in one line", async () => {
    const made = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", file("sig.key"), "-out", file("sig.pem"), "-subj", "/CN=signing only", "-days", "1", "-addext", "keyUsage=critical,digitalSignature"]);
    expect(made.code, made.stderr).toBe(0);
    const out = fresh("x.cms");
    expect(refused(await cli("operator", "encrypt", "--cert", file("sig.pem"), "--in", file("router.cfg"), "--out", out), 3, out)).toMatch(/^idmint: the certificate of CN=signing only does not allow keyAgreement \(its keyUsage is digitalSignature\), which ECDH key agreement needs/);
  });
});

describe("idmint unit decrypt", () => {
  function opensslEncrypt(serial: string, out: string, ...extra: string[]): void {
    // RFC 8886 Appendix A.2.2, with -binary so OpenSSL keeps LF line ends (it would write CRLF).
    const r = openssl(["cms", "-encrypt", "-binary", "-aes256", "-in", file("router.cfg"), "-recip", certFile(serial), "-outform", "DER", "-out", out, ...extra]);
    expect(r.code, r.stderr).toBe(0);
  }

  it("opens openssl cms -encrypt output with the unit's own key: P-256 and RSA-2048 soft keys, and P-256 inside the unit-se token", async () => {
    for (const [serial, keystore, keyEncryption] of [
      [EC, "soft", "dhSinglePass-stdDH-sha1kdf-scheme"],
      [RSA, "soft", "rsaEncryption (PKCS #1 v1.5)"],
      [TOKEN, "pkcs11", "dhSinglePass-stdDH-sha1kdf-scheme"],
    ] as const) {
      const cms = fresh(`${serial}.cms`);
      opensslEncrypt(serial, cms);
      const out = fresh(`${serial}.cfg`);
      const r = await cli("unit", "decrypt", "--serial", serial, "--in", cms, "--out", out, "--require-encrypted", "--json");
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ serial, encrypted: true, authenticated: false, bytes: config.length, out, keystore, framing: "der", keyEncryption, keyWrap: serial === RSA ? undefined : "id-aes256-wrap", contentEncryption: "aes-256-cbc" });
      expect(readFileSync(out, "utf8")).toBe(config);
      expect(statSync(out).mode & 0o777).toBe(0o600);
    }
    // Its key never left the token.
    expect(readUnitRecord(join(vendor.home, "units"), TOKEN)?.key).toMatchObject({ keystore: "pkcs11" });
    expect(() => readSoftUnitKey(join(vendor.home, "units"), TOKEN)).toThrow(/in a PKCS#11 token/);
  });

  it("opens idmint operator encrypt output (PEM) in the token, and says how", async () => {
    const cms = fresh("token.pem");
    must(await cli("operator", "encrypt", "--cert", certFile(TOKEN), "--in", file("router.cfg"), "--out", cms, "--pem"), "operator encrypt");
    const out = fresh("token.cfg");
    const r = await cli("unit", "decrypt", "--serial", TOKEN, "--in", cms, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${TOKEN}: decrypted ${config.length} bytes with its key in the token (ECDH inside the token) (dhSinglePass-stdDH-sha256kdf-scheme, id-aes256-wrap, aes-256-cbc)\nwritten to ${out}\n`);
    expect(readFileSync(out, "utf8")).toBe(config);
  });

  it("another unit's key, or one flipped byte: a clear one-line error and nothing at --out", async () => {
    const forEc = fresh("for-ec.cms");
    must(await cli("operator", "encrypt", "--cert", certFile(EC), "--in", file("router.cfg"), "--out", forEc), "operator encrypt");
    for (const other of [EC_OTHER, TOKEN]) {
      const out = fresh("x.cfg");
      expect(refused(await cli("unit", "decrypt", "--serial", other, "--in", forEc, "--out", out), 3, out)).toMatch(new RegExp(`^idmint: the input is encrypted to certificate [0-9a-f]+ of .*Factory CA, not to unit ${other}'s EC key: fetch this unit's certificate and encrypt to it$`));
    }

    // One flipped bit in the wrapped content key: AES key wrap's integrity check catches it.
    for (const [serial, cert] of [
      [EC, certFile(EC)],
      [TOKEN, certFile(TOKEN)],
    ] as const) {
      const cms = fresh(`${serial}-flip.cms`);
      must(await cli("operator", "encrypt", "--cert", cert, "--in", file("router.cfg"), "--out", cms), "operator encrypt");
      const der = readFileSync(cms);
      const env = new pkijs.EnvelopedData({ schema: pkijs.ContentInfo.fromBER(der).content });
      const kari = env.recipientInfos[0]!.value as pkijs.KeyAgreeRecipientInfo;
      const wrapped = Buffer.from(kari.recipientEncryptedKeys.encryptedKeys[0]!.encryptedKey.valueBlock.valueHexView);
      const at = der.indexOf(wrapped) + 7;
      der[at]! ^= 0x01;
      writeFileSync(cms, der);
      const out = fresh("x.cfg");
      expect(refused(await cli("unit", "decrypt", "--serial", serial, "--in", cms, "--out", out), 6, out)).toBe(
        `idmint: unit ${serial}'s key (${serial === TOKEN ? "token" : "soft key"}) does not open the input: it was changed after encryption, or encrypted to another key; ask the operator for a fresh copy`,
      );
    }
  });

  it("plaintext is passed through unless --require-encrypted (RFC 8886 §4.3); an unknown unit is refused", async () => {
    const out = fresh("plain.cfg");
    const r = await cli("unit", "decrypt", "--serial", EC, "--in", file("router.cfg"), "--out", out, "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ serial: EC, encrypted: false, bytes: config.length, out });
    expect(readFileSync(out, "utf8")).toBe(config);

    let refusedOut = fresh("x.cfg");
    expect(refused(await cli("unit", "decrypt", "--serial", EC, "--in", file("router.cfg"), "--out", refusedOut, "--require-encrypted"), 3, refusedOut)).toMatch(/^idmint: the input is not encrypted .* --require-encrypted refuses plaintext/);
    refusedOut = fresh("x.cfg");
    // The real binary once, for its contract: the exit code and one "idmint: ..." line, no stack trace.
    expect(refused(vendor.cli("unit", "decrypt", "--serial", "SN000099", "--in", file("router.cfg"), "--out", refusedOut), 5, refusedOut)).toMatch(/^idmint: there is no unit SN000099 in .*units/);
  });
});

describe("--help", () => {
  it("has an example on each new command", async () => {
    for (const cmd of [
      ["operator", "fetch"],
      ["operator", "encrypt"],
      ["unit", "decrypt"],
      ["unit", "export"],
    ]) {
      const r = await cli(...cmd, "--help");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout, cmd.join(" ")).toMatch(/Examples:\n\s+(idmint|openssl) /);
      expect(r.stdout).toContain(`idmint ${cmd.join(" ")} --`);
    }
  });
});
