import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthEnvelopedData, MAX_CMS_BYTES, MAX_CONFIGURATION_BYTES, MAX_ENCRYPTED_INPUT_BYTES, parseEnvelope } from "../../cms/index.js";
import * as pkijs from "pkijs";
import { AsnConvert } from "@peculiar/asn1-schema";
import { ContentInfo } from "@peculiar/asn1-cms";
import { readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { idmintInProcess, openssl, refusedWithoutOutput, scratch, type Run } from "../helpers.js";
import { makeHome, must } from "../directory/fixture.js";

/**
 * Issue 16, items 8 and 6, through the command line with real units (soft P-256, soft
 * RSA-2048, P-256 in the unit-se token) and real `openssl cms`: configurations with integrity
 * (`operator encrypt --aead`, AuthEnvelopedData with AES-256-GCM; `unit decrypt
 * --require-authenticated`), and one size limit for a configuration on both sides.
 */
const s = scratch("operator-aead");
const file = (name: string) => join(s.dir, name);
let vendor: ReturnType<typeof makeHome>;
const cli = (...args: string[]): Promise<Run> => idmintInProcess(["--home", vendor.home, ...args]);

const EC = "SN000001";
const RSA = "SN000002";
const TOKEN = "SN000003";
const config = "hostname edge-7\nsnmp-server community s3cret RO\n";

beforeAll(() => {
  vendor = makeHome(s.dir, "vendor");
  const list = file("po1.json");
  must(vendor.cli("serials", "allocate", "--order", "PO-1", "--station", "station-1", "--model", "RT-1", "--count", "3", "--prefix", "SN", "--start", "1", "--out", list), "allocate");
  must(vendor.cli("serials", "import", list), "import");
  for (const extra of [[], ["--alg", "RSA-2048"], ["--keystore", "pkcs11"]]) must(vendor.cli("station", "run", "--sim", "1", ...extra), `station run ${extra.join(" ")}`);
  writeFileSync(file("router.cfg"), config);
});

afterAll(() => s.cleanup());

const certFile = (serial: string) => join(vendor.home, "certs", `${serial}.pem`);
let n = 0;
const fresh = (name: string) => file(`${++n}-${name}`);

async function encrypt(serial: string, input: string, ...extra: string[]): Promise<string> {
  const out = fresh(`${serial}.cms`);
  must(await cli("operator", "encrypt", "--cert", certFile(serial), "--in", input, "--out", out, ...extra), "operator encrypt");
  return out;
}

async function unitKey(serial: string): Promise<string> {
  const out = fresh(`${serial}.key`);
  must(await cli("unit", "export", "--serial", serial, "--key", "--out", out), "unit export --key");
  return out;
}

describe("operator encrypt --aead / unit decrypt --require-authenticated", () => {
  it("openssl cms -decrypt reads --aead output (P-256 DER, RSA-2048 PEM), and each unit opens it with --require-authenticated, in the token too", async () => {
    const ec = file("aead-ec.cms");
    const r = await cli("operator", "encrypt", "--cert", certFile(EC), "--in", file("router.cfg"), "--out", ec, "--aead", "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: "der", contentType: "AuthEnvelopedData", keyEncryption: "dhSinglePass-stdDH-sha256kdf-scheme", keyWrap: "id-aes256-wrap", contentEncryption: "aes-256-gcm" });
    const ecOpenssl = openssl(["cms", "-decrypt", "-inform", "DER", "-in", ec, "-inkey", await unitKey(EC)]);
    expect(ecOpenssl.code, ecOpenssl.stderr).toBe(0);
    expect(ecOpenssl.stdout).toBe(config);
    const rsa = await encrypt(RSA, file("router.cfg"), "--aead", "--pem");
    const rsaOpenssl = openssl(["cms", "-decrypt", "-inform", "PEM", "-in", rsa, "-inkey", await unitKey(RSA)]);
    expect(rsaOpenssl.code, rsaOpenssl.stderr).toBe(0);
    expect(rsaOpenssl.stdout).toBe(config);

    for (const [serial, cms] of [[EC, ec], [RSA, rsa], [TOKEN, await encrypt(TOKEN, file("router.cfg"), "--aead")]] as const) {
      const out = fresh(`${serial}.cfg`);
      const d = await cli("unit", "decrypt", "--serial", serial, "--in", cms, "--out", out, "--require-authenticated", "--json");
      expect(d.code, d.stderr).toBe(0);
      expect(JSON.parse(d.stdout)).toMatchObject({ serial, encrypted: true, authenticated: true, contentEncryption: "aes-256-gcm", keystore: serial === TOKEN ? "pkcs11" : "soft" });
      expect(readFileSync(out, "utf8")).toBe(config);
    }
  });

  it("opens openssl cms -encrypt -aes-256-gcm output (AuthEnvelopedData) with --require-authenticated: P-256 and RSA-2048 soft keys, P-256 in the token", async () => {
    for (const serial of [EC, RSA, TOKEN]) {
      const cms = fresh(`${serial}-openssl.cms`);
      const e = openssl(["cms", "-encrypt", "-binary", "-aes-256-gcm", "-in", file("router.cfg"), "-recip", certFile(serial), "-outform", "DER", "-out", cms]);
      expect(e.code, e.stderr).toBe(0);
      const out = fresh(`${serial}.cfg`);
      const d = await cli("unit", "decrypt", "--serial", serial, "--in", cms, "--out", out, "--require-authenticated");
      expect(d.code, d.stderr).toBe(0);
      expect(d.stdout).toMatch(new RegExp(`^${serial}: decrypted ${config.length} bytes with .*, aes-256-gcm, tag verified\\)\\nwritten to `));
      expect(readFileSync(out, "utf8")).toBe(config);
    }
  });

  it("a bit flipped in the ciphertext, the tag or the wrapped key is refused: exit 6, one line, no output (openssl refuses them too)", async () => {
    const cms = await encrypt(EC, file("router.cfg"), "--aead");
    const der = readFileSync(cms);
    const envelope = parseEnvelope({ framing: "der", der });
    const ri = pkijs.RecipientInfo.fromBER(AsnConvert.parse(AsnConvert.parse(der, ContentInfo).content, AuthEnvelopedData).recipientInfos[0]!);
    const wrapped = Buffer.from((ri.value as pkijs.KeyAgreeRecipientInfo).recipientEncryptedKeys.encryptedKeys[0]!.encryptedKey.valueBlock.valueHexView);
    const key = await unitKey(EC);
    const tagMismatch = `idmint: the input's AES-GCM authentication tag does not match under unit ${EC}'s key (soft key): it was changed after encryption, or encrypted to another key; ask the operator for a fresh copy`;
    for (const [what, at, line] of [
      ["ciphertext", der.indexOf(Buffer.from(envelope.ciphertext)) + 3, tagMismatch],
      ["tag", der.length - 5, tagMismatch],
      ["wrapped key", der.indexOf(wrapped) + 7, `idmint: unit ${EC}'s key (soft key) does not open the input: it was changed after encryption, or encrypted to another key; ask the operator for a fresh copy`],
    ] as const) {
      const bad = Buffer.from(der);
      bad[at]! ^= 0x01;
      const flipped = fresh(`flipped-${what.replace(" ", "-")}.cms`);
      writeFileSync(flipped, bad);
      const out = fresh("x.cfg");
      expect(refusedWithoutOutput(await cli("unit", "decrypt", "--serial", EC, "--in", flipped, "--out", out, "--require-authenticated"), 6, out), what).toBe(line);
      const o = openssl(["cms", "-decrypt", "-inform", "DER", "-in", flipped, "-inkey", key]);
      expect(o.code, `openssl, flip in the ${what}`).not.toBe(0);
    }
  });

  it("--require-authenticated refuses plain EnvelopedData and plaintext with exit 6; without it, EnvelopedData still opens, unauthenticated", async () => {
    const plain = await encrypt(EC, file("router.cfg"));
    let out = fresh("x.cfg");
    // The binary once, for its contract: the exit code and one "idmint: ..." line.
    expect(refusedWithoutOutput(vendor.cli("unit", "decrypt", "--serial", EC, "--in", plain, "--out", out, "--require-authenticated"), 6, out)).toBe(
      "idmint: the input is CMS EnvelopedData (aes-256-cbc), which has no integrity protection, and --require-authenticated accepts only AuthEnvelopedData (AES-GCM): have the operator encrypt it with `idmint operator encrypt --aead`",
    );
    out = fresh("x.cfg");
    expect(refusedWithoutOutput(await cli("unit", "decrypt", "--serial", EC, "--in", file("router.cfg"), "--out", out, "--require-authenticated"), 6, out)).toMatch(/^idmint: the input is not encrypted, and --require-authenticated accepts only AuthEnvelopedData/);
    out = fresh("x.cfg");
    const d = await cli("unit", "decrypt", "--serial", EC, "--in", plain, "--out", out, "--json");
    expect(d.code, d.stderr).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({ encrypted: true, authenticated: false, contentEncryption: "aes-256-cbc" });
  });

  it("--help shows an example with each flag", async () => {
    for (const [cmd, flag] of [
      [["operator", "encrypt"], "--aead"],
      [["unit", "decrypt"], "--require-authenticated"],
    ] as const) {
      const r = await cli(...cmd, "--help");
      expect(r.code, r.stderr).toBe(0);
      const examples = r.stdout.slice(r.stdout.indexOf("Examples:"));
      expect(examples).toContain(`idmint ${cmd.join(" ")} --`);
      expect(examples).toContain(` ${flag}`);
    }
  });
});

describe("one limit for a configuration, the same on both sides", () => {
  it("exactly 8 MiB goes both ways (DER, and PEM with --aead); one byte more is refused by operator encrypt, exit 3, one line, no output", async () => {
    const atLimit = file("at-limit.cfg");
    writeFileSync(atLimit, Buffer.alloc(MAX_CONFIGURATION_BYTES, "interface ge-0/0/1\n"));
    for (const extra of [[], ["--pem", "--aead"]]) {
      const cms = await encrypt(EC, atLimit, ...extra);
      const out = fresh("at-limit.out");
      must(await cli("unit", "decrypt", "--serial", EC, "--in", cms, "--out", out, "--require-encrypted"), `unit decrypt ${extra.join(" ")}`);
      expect(readFileSync(out).equals(readFileSync(atLimit)), extra.join(" ")).toBe(true);
    }
    const over = file("over-limit.cfg");
    writeFileSync(over, Buffer.alloc(MAX_CONFIGURATION_BYTES + 1, "x"));
    const out = fresh("over.cms");
    expect(refusedWithoutOutput(await cli("operator", "encrypt", "--cert", certFile(EC), "--in", over, "--out", out), 3, out)).toBe(
      `idmint: the configuration ${over} is 8388609 bytes, more than the 8388608 a configuration may have (idmint limits configurations to 8 MiB, on the operator's side and the unit's): trim it, or deliver bulk data (firmware, images) another way`,
    );
  });

  it("refuses files over the limits from their size, before reading them, and encrypted input over the CMS limit before parsing it", async () => {
    // Sparse files of 5 GiB: reading one would fail otherwise (Node reads at most 2 GiB into a buffer).
    const huge = file("huge.cfg");
    writeFileSync(huge, "");
    truncateSync(huge, 5 * 2 ** 30);
    let out = fresh("x.cms");
    expect(refusedWithoutOutput(await cli("operator", "encrypt", "--cert", certFile(EC), "--in", huge, "--out", out), 3, out)).toMatch(/^idmint: the configuration .*huge\.cfg is 5368709120 bytes, more than the 8388608/);
    out = fresh("x.cfg");
    expect(refusedWithoutOutput(await cli("unit", "decrypt", "--serial", EC, "--in", huge, "--out", out), 3, out)).toMatch(/^idmint: the encrypted configuration .*huge\.cfg is 5368709120 bytes, more than the 11628544 an encrypted configuration may have/);

    const overFile = file("over-file.cms");
    writeFileSync(overFile, "");
    truncateSync(overFile, MAX_ENCRYPTED_INPUT_BYTES + 1);
    out = fresh("x.cfg");
    expect(refusedWithoutOutput(await cli("unit", "decrypt", "--serial", EC, "--in", overFile, "--out", out), 3, out)).toMatch(/is 11628545 bytes, more than the 11628544/);
    // Binary, so DER: refused for its size, where it would otherwise be refused as not DER.
    const overDer = file("over-der.cms");
    writeFileSync(overDer, Buffer.alloc(MAX_CMS_BYTES + 1, 0xff));
    out = fresh("x.cfg");
    expect(refusedWithoutOutput(await cli("unit", "decrypt", "--serial", EC, "--in", overDer, "--out", out), 3, out)).toMatch(/^idmint: the CMS in the input is 8454145 bytes, more than the 8454144 the CMS of a configuration may have/);
  });
});
