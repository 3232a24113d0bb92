import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as pkijs from "pkijs";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readSoftUnitKey, readUnitRecord } from "../../device/index.js";
import { oneLineError, openssl, scratch, type Run } from "../helpers.js";
import { makeHome, must } from "../directory/fixture.js";

/**
 * RSA unit keys inside the unit-se token (SoftHSM): `openssl cms -encrypt` output (PKCS #1
 * v1.5 key transport, OpenSSL's default for RSA) opens with `idmint unit decrypt`, the RSA
 * decryption running in the token, as it does for P-256 with ECDH in the token.
 */
const s = scratch("operator-token-rsa");
const file = (name: string) => join(s.dir, name);
let vendor: ReturnType<typeof makeHome>;

const RSA_A = "SN000001";
const RSA_B = "SN000002";
const EC = "SN000003";
// Binary on purpose (NUL, high bytes, CR LF): the comparison is of bytes.
const config = Buffer.concat([Buffer.from("hostname edge-9\r\nsecret \u0000\u00ff\n"), randomBytes(3000)]);

beforeAll(() => {
  vendor = makeHome(s.dir, "vendor");
  const list = file("po.json");
  must(vendor.cli("serials", "allocate", "--order", "PO-1", "--station", "station-1", "--model", "RT-1", "--count", "4", "--prefix", "SN", "--start", "1", "--out", list), "allocate");
  must(vendor.cli("serials", "import", list), "import");
  must(vendor.cli("station", "run", "--sim", "2", "--keystore", "pkcs11", "--alg", "RSA-2048"), "station run pkcs11 RSA");
  must(vendor.cli("station", "run", "--sim", "1", "--keystore", "pkcs11"), "station run pkcs11 EC");
  writeFileSync(file("router.cfg"), config);
});

afterAll(() => s.cleanup());

const cli = (...args: string[]): Run => vendor.cli(...args);
const certFile = (serial: string) => join(vendor.home, "certs", `${serial}.pem`);
let n = 0;
const fresh = (name: string) => file(`${++n}-${name}`);

function opensslEncrypt(serial: string, ...extra: string[]): string {
  const out = fresh(`${serial}.cms`);
  const r = openssl(["cms", "-encrypt", "-binary", "-aes256", "-in", file("router.cfg"), "-recip", certFile(serial), "-outform", "DER", "-out", out, ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

/** A refused command: the expected exit code, one line on stderr, and nothing at --out. */
function refused(r: Run, code: number, out: string): string {
  expect(r.code, r.stderr).toBe(code);
  expect(existsSync(out)).toBe(false);
  return oneLineError(r);
}

describe("idmint unit decrypt with the key inside the unit-se token", () => {
  it("opens openssl cms -encrypt -aes256 output for RSA-2048 (PKCS #1 v1.5, in the token) and P-256 (ECDH, in the token), byte for byte", () => {
    for (const [serial, keyEncryption, keyWrap] of [
      [RSA_A, "rsaEncryption (PKCS #1 v1.5)", undefined],
      [RSA_B, "rsaEncryption (PKCS #1 v1.5)", undefined],
      [EC, "dhSinglePass-stdDH-sha1kdf-scheme", "id-aes256-wrap"],
    ] as const) {
      const cms = opensslEncrypt(serial);
      const out = fresh(`${serial}.cfg`);
      const r = cli("unit", "decrypt", "--serial", serial, "--in", cms, "--out", out, "--require-encrypted", "--json");
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ serial, encrypted: true, authenticated: false, bytes: config.length, out, keystore: "pkcs11", framing: "der", keyEncryption, keyWrap, contentEncryption: "aes-256-cbc" });
      expect(readFileSync(out).equals(config)).toBe(true);
      expect(statSync(out).mode & 0o777).toBe(0o600);
      // The key never left the token.
      expect(readUnitRecord(join(vendor.home, "units"), serial)?.key).toMatchObject({ keystore: "pkcs11" });
      expect(() => readSoftUnitKey(join(vendor.home, "units"), serial)).toThrow(/in a PKCS#11 token/);
    }
  });

  it("says how in human output", () => {
    const cms = opensslEncrypt(RSA_A);
    const out = fresh("human.cfg");
    const r = cli("unit", "decrypt", "--serial", RSA_A, "--in", cms, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${RSA_A}: decrypted ${config.length} bytes with its key in the token (RSA decryption inside the token) (rsaEncryption (PKCS #1 v1.5), aes-256-cbc)\nwritten to ${out}\n`);
  });

  it("opens RSAES-OAEP with SHA-1 (openssl -keyopt rsa_padding_mode:oaep) in the token", () => {
    const cms = opensslEncrypt(RSA_A, "-keyopt", "rsa_padding_mode:oaep");
    const out = fresh("oaep.cfg");
    const r = cli("unit", "decrypt", "--serial", RSA_A, "--in", cms, "--out", out, "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ keystore: "pkcs11", keyEncryption: "id-RSAES-OAEP (sha1)" });
    expect(readFileSync(out).equals(config)).toBe(true);
  });

  it("refuses RSAES-OAEP with SHA-256 (idmint operator encrypt's choice), which SoftHSM 2.6 cannot do, in one line", () => {
    const cms = fresh("op.cms");
    must(cli("operator", "encrypt", "--cert", certFile(RSA_A), "--in", file("router.cfg"), "--out", cms), "operator encrypt");
    const out = fresh("x.cfg");
    expect(refused(cli("unit", "decrypt", "--serial", RSA_A, "--in", cms, "--out", out), 3, out)).toMatch(/^idmint: the input uses RSAES-OAEP with sha256, which unit SN000001's token cannot decrypt/);
  });

  it("another unit: not its recipient, or its recipient with another key's block (bad padding in the token) fails like a flipped byte; nothing at --out", () => {
    const forA = opensslEncrypt(RSA_A);
    let out = fresh("x.cfg");
    expect(refused(cli("unit", "decrypt", "--serial", RSA_B, "--in", forA, "--out", out), 3, out)).toMatch(
      new RegExp(`^idmint: the input is encrypted to certificate [0-9a-f]+ of .*Factory CA, not to unit ${RSA_B}'s RSA key: fetch this unit's certificate and encrypt to it$`),
    );

    // An envelope naming B whose encrypted key is A's: the token's PKCS #1 v1.5 unpadding fails
    // (SoftHSM: CKR_GENERAL_ERROR), and that must look exactly like any other wrong key.
    const encryptedKey = (der: Buffer) => {
      const env = new pkijs.EnvelopedData({ schema: pkijs.ContentInfo.fromBER(new Uint8Array(der)).content });
      return Buffer.from((env.recipientInfos[0]!.value as pkijs.KeyTransRecipientInfo).encryptedKey.valueBlock.valueHexView);
    };
    const a = readFileSync(forA);
    const b = readFileSync(opensslEncrypt(RSA_B));
    const keyA = encryptedKey(a);
    const keyB = encryptedKey(b);
    expect(keyA).toHaveLength(256);
    b.set(keyA, b.indexOf(keyB));
    const swapped = fresh("swapped.cms");
    writeFileSync(swapped, b);
    const failed = `idmint: unit ${RSA_B}'s key (token) does not open the input: it was changed after encryption, or encrypted to another key; ask the operator for a fresh copy`;
    out = fresh("x.cfg");
    expect(refused(cli("unit", "decrypt", "--serial", RSA_B, "--in", swapped, "--out", out), 6, out)).toBe(failed);

    // One flipped bit in B's own encrypted key: the same error.
    const flipped = readFileSync(opensslEncrypt(RSA_B));
    flipped[flipped.indexOf(encryptedKey(flipped)) + 100]! ^= 0x01;
    const flippedFile = fresh("flipped.cms");
    writeFileSync(flippedFile, flipped);
    out = fresh("x.cfg");
    expect(refused(cli("unit", "decrypt", "--serial", RSA_B, "--in", flippedFile, "--out", out), 6, out)).toBe(failed);
  });
});
