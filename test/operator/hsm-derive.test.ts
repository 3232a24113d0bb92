import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decryptWithKey, encryptToCertificate, tokenRecipientKey } from "../../cms/index.js";
import { constants, createPublicKey, diffieHellman, generateKeyPairSync, publicEncrypt, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Home } from "../../core/index.js";
import { Hsm, formatPkcs11Uri, initEmbeddedHsm } from "../../hsm/index.js";
import { run, scratch } from "../helpers.js";
import { makePki } from "../fixtures/pki-fixture.js";

/** Hsm.deriveEcdh and createKey's `derive` option, on the embedded SoftHSM's unit-se token. */
const s = scratch("operator-hsm");
let home: Home;
let hsm: Hsm;
let pinFile: string;

beforeAll(() => {
  home = new Home(`${s.dir}/home`);
  initEmbeddedHsm(home);
  const config = home.readConfig();
  pinFile = `${home.pinDir}/unit-se.pin`;
  hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
});

afterAll(() => {
  hsm?.close();
  s.cleanup();
});

const keyUri = (object: string) => formatPkcs11Uri({ token: "unit-se", object, type: "private", pinSource: `file:${pinFile}` });

/** An EC key's uncompressed point: the end of its SPKI (not its JWK: see device/csr.ts, p256Encodings). */
function point(publicKey: ReturnType<typeof createPublicKey>): Buffer {
  const bytes = { prime256v1: 32, secp384r1: 48 }[publicKey.asymmetricKeyDetails?.namedCurve ?? ""] ?? 0;
  return publicKey.export({ type: "spki", format: "der" }).subarray(-(1 + 2 * bytes));
}

function tokenUsage(label: string): string {
  const config = home.readConfig();
  const r = run("pkcs11-tool", ["--module", config.hsm.module, "--token-label", "unit-se", "--login", "--pin", "env:IDMINT_TEST_PIN", "-O", "--type", "privkey"], {
    env: { ...process.env, SOFTHSM2_CONF: config.hsm.softhsmConf, IDMINT_TEST_PIN: readFileSync(pinFile, "utf8").trim() },
  });
  expect(r.code, r.stderr).toBe(0);
  const block = r.stdout.split("Private Key Object").find((b) => b.includes(`label:      ${label}\n`));
  return /Usage:\s+(.*)/.exec(block ?? "")?.[1]?.trim() ?? "(not found)";
}

describe("ECDH in the token", () => {
  it("a key made with derive agrees the same Z as Node does from the other side, and stays sensitive and non-extractable", () => {
    for (const alg of ["EC-P256", "EC-P384"] as const) {
      const uri = keyUri(`derive-${alg}`);
      const signer = hsm.createKey(uri, alg, { derive: true });
      const peer = generateKeyPairSync("ec", { namedCurve: alg === "EC-P256" ? "P-256" : "P-384" });
      const z = hsm.deriveEcdh(uri, point(peer.publicKey));
      const expected = diffieHellman({ privateKey: peer.privateKey, publicKey: createPublicKey({ key: Buffer.from(signer.publicKeySpki), format: "der", type: "spki" }) });
      expect(Buffer.from(z)).toEqual(expected);
      expect(z).toHaveLength(alg === "EC-P256" ? 32 : 48);
      expect(hsm.listKeys(uri).find((k) => k.label === `derive-${alg}`)).toMatchObject({ sensitive: true, extractable: false });
    }
    expect(tokenUsage("derive-EC-P256")).toBe("sign, derive");
  });

  it("keys made without the option (every CA key) may not derive: KEY_NOT_PERMITTED in one line; RSA keys cannot be made for it", () => {
    const uri = keyUri("sign-only");
    hsm.createKey(uri, "EC-P256");
    expect(tokenUsage("sign-only")).toBe("sign");
    const peer = generateKeyPairSync("ec", { namedCurve: "P-256" });
    expect(() => hsm.deriveEcdh(uri, point(peer.publicKey))).toThrowError(expect.objectContaining({ code: "KEY_NOT_PERMITTED", kind: "hsm", message: expect.stringMatching(/^sign-only in token unit-se may not derive/) }));
    // A unit whose token key predates `derive` says so when asked to decrypt.
    const signOnly = tokenRecipientKey(hsm, uri, hsm.signer(uri).publicKeySpki, "unit OLD0001");
    expect(() => signOnly.type === "ec" && signOnly.ecdh(point(peer.publicKey))).toThrowError(expect.objectContaining({ code: "KEY_NOT_PERMITTED", kind: "hsm", message: expect.stringMatching(/^unit OLD0001's key in the token may not derive/) }));
    expect(() => hsm.createKey(keyUri("rsa-derive"), "RSA-2048", { derive: true })).toThrowError(expect.objectContaining({ code: "UNSUPPORTED_ALGORITHM" }));
    expect(hsm.listKeys(keyUri("x")).some((k) => k.label === "rsa-derive")).toBe(false);
  });

  it("refuses a point that is not on the curve before the token sees it, and a missing key", () => {
    const uri = keyUri("derive-EC-P256");
    const p = point(generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey);
    p[64]! ^= 0x01;
    expect(() => hsm.deriveEcdh(uri, p)).toThrowError(/not an uncompressed point on P-256/);
    expect(() => hsm.deriveEcdh(uri, p.subarray(0, 33))).toThrowError(/not an uncompressed point on P-256/);
    expect(() => hsm.deriveEcdh(keyUri("no-such-key"), p)).toThrowError(expect.objectContaining({ code: "KEY_NOT_FOUND" }));
  });

  it("a configuration encrypted to the token key's IDevID opens with ECDH in the token", async () => {
    const uri = keyUri("unit-key");
    const signer = hsm.createKey(uri, "EC-P256", { derive: true });
    const cert = await (await makePki()).issue(signer.publicKeySpki, "TOK0001");
    const cms = encryptToCertificate(cert, Buffer.from("secret config\n")).der;
    const r = decryptWithKey(cms, tokenRecipientKey(hsm, uri, signer.publicKeySpki));
    expect(r).toMatchObject({ encrypted: true, keyEncryption: "dhSinglePass-stdDH-sha256kdf-scheme" });
    expect(Buffer.from(r.plaintext).toString()).toBe("secret config\n");
  });
});

describe("RSA decryption in the token", () => {
  it("a key made with decrypt opens PKCS #1 v1.5 and OAEP-SHA-1 blocks; another key's block gives undefined; CA-style keys may not decrypt", () => {
    const uri = keyUri("rsa-decrypt");
    const signer = hsm.createKey(uri, "RSA-2048", { decrypt: true });
    const pub = createPublicKey({ key: Buffer.from(signer.publicKeySpki), format: "der", type: "spki" });
    const cek = randomBytes(32);
    const v15 = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, cek);
    expect(Buffer.from(hsm.decryptRsa(uri, v15, "pkcs1")!)).toEqual(cek);
    const oaep = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, cek);
    expect(Buffer.from(hsm.decryptRsa(uri, oaep, "oaep-sha1")!)).toEqual(cek);
    expect(hsm.listKeys(uri).find((k) => k.label === "rsa-decrypt")).toMatchObject({ sensitive: true, extractable: false });
    expect(tokenUsage("rsa-decrypt")).toMatch(/decrypt/);

    const other = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
    expect(hsm.decryptRsa(uri, publicEncrypt({ key: other, padding: constants.RSA_PKCS1_PADDING }, cek), "pkcs1")).toBeUndefined();
    expect(hsm.decryptRsa(uri, v15.subarray(1), "pkcs1")).toBeUndefined();

    const signOnly = keyUri("rsa-sign-only");
    hsm.createKey(signOnly, "RSA-2048");
    expect(tokenUsage("rsa-sign-only")).toBe("sign");
    expect(() => hsm.decryptRsa(signOnly, v15, "pkcs1")).toThrowError(expect.objectContaining({ code: "KEY_NOT_PERMITTED", message: expect.stringMatching(/^rsa-sign-only in token unit-se may not decrypt/) }));
    expect(() => hsm.createKey(keyUri("ec-decrypt"), "EC-P256", { decrypt: true })).toThrowError(expect.objectContaining({ code: "UNSUPPORTED_ALGORITHM" }));
    expect(() => hsm.decryptRsa(keyUri("derive-EC-P256"), v15, "pkcs1")).toThrowError(expect.objectContaining({ code: "UNSUPPORTED_ALGORITHM" }));
  });
});
