import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthAttributes, AuthEnvelopedData, CmsError, GcmParameters, MAX_CMS_BYTES, MAX_CONFIGURATION_BYTES, MAX_ENCRYPTED_INPUT_BYTES, cmsPem, decryptWithKey, eccCmsSharedInfo, encryptToCertificate, parseEnvelope, recipientIdentity, softRecipientKey, unframe, type RecipientKey } from "../../cms/index.js";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { Attribute, ContentInfo } from "@peculiar/asn1-cms";
import { generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { IdmintError, systemClock, systemRandom } from "../../core/index.js";
import { OperatorError, checkDeviceCertificate } from "../../operator/index.js";
import { issueEndEntity, x509 } from "../../pki/index.js";
import { openssl, scratch } from "../helpers.js";
import { makePki, softSigner, type TestPki } from "../fixtures/pki-fixture.js";

const s = scratch("operator-cms");
const file = (name: string) => join(s.dir, name);
afterAll(() => s.cleanup());

interface Device {
  serial: string;
  cert: x509.X509Certificate;
  certFile: string;
  keyFile: string;
  key: RecipientKey;
}

let pki: TestPki;
const devices: Record<"ec" | "rsa" | "other", Device> = {} as never;
const config = Buffer.from("hostname edge-1\ninterface ge-0/0/0\n  description uplink\n" + "x".repeat(300) + "\n");

async function device(serial: string, pair: { privateKey: KeyObject; publicKey: KeyObject }): Promise<Device> {
  const cert = await pki.issue(new Uint8Array(pair.publicKey.export({ type: "spki", format: "der" })), serial);
  const certFile = file(`${serial}.pem`);
  const keyFile = file(`${serial}.key`);
  writeFileSync(certFile, cert.toString("pem"));
  writeFileSync(keyFile, pair.privateKey.export({ type: "pkcs8", format: "pem" }));
  return { serial, cert, certFile, keyFile, key: softRecipientKey(pair.privateKey) };
}

beforeAll(async () => {
  pki = await makePki();
  devices.ec = await device("EC0001", generateKeyPairSync("ec", { namedCurve: "P-256" }));
  devices.rsa = await device("RSA0001", generateKeyPairSync("rsa", { modulusLength: 2048 }));
  devices.other = await device("EC0002", generateKeyPairSync("ec", { namedCurve: "P-256" }));
  writeFileSync(file("config.txt"), config);
});

const identities = new Map<Device, ReturnType<typeof recipientIdentity>>();
const open = (input: Uint8Array, d: Device, requireEncrypted = false) => {
  if (!identities.has(d)) identities.set(d, recipientIdentity(d.cert));
  return decryptWithKey(input, d.key, { identity: identities.get(d), requireEncrypted, unitName: `unit ${d.serial}` });
};

/** `openssl cms -encrypt` to a device, DER unless other options say otherwise. */
function opensslEncrypt(d: Device, ...extra: string[]): Buffer {
  const out = file(`openssl-${d.serial}-${randomBytes(4).toString("hex")}.cms`);
  const r = openssl(["cms", "-encrypt", "-binary", "-in", file("config.txt"), "-out", out, "-recip", d.certFile, ...(extra.includes("-outform") ? [] : ["-outform", "DER"]), ...(extra.some((e) => /^-(aes128|aes192|aes256|aes-(128|256)-gcm|des3)$/.test(e)) ? [] : ["-aes256"]), ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return readFileSync(out);
}

function opensslDecrypt(d: Device, cms: Uint8Array, inform: "DER" | "PEM"): string {
  const input = file(`ours-${randomBytes(4).toString("hex")}.cms`);
  writeFileSync(input, cms);
  const r = openssl(["cms", "-decrypt", "-inform", inform, "-in", input, "-recip", d.certFile, "-inkey", d.keyFile]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

describe("operator encrypt -> openssl cms -decrypt, and back", () => {
  for (const kind of ["ec", "rsa"] as const) {
    it(`${kind === "ec" ? "P-256" : "RSA-2048"}: our DER and PEM decrypt with openssl and with the unit's key; the structure is DER with the documented algorithms`, () => {
      const d = devices[kind];
      const r = encryptToCertificate(d.cert, config);
      expect(opensslDecrypt(d, r.der, "DER")).toBe(config.toString());
      expect(opensslDecrypt(d, Buffer.from(cmsPem(r.der)), "PEM")).toBe(config.toString());
      expect(cmsPem(r.der)).toMatch(/^-----BEGIN CMS-----\n([A-Za-z0-9+/=]{64}\n)+[A-Za-z0-9+/=]{1,64}\n-----END CMS-----\n$/);
      expect(Buffer.from(open(r.der, d).plaintext)).toEqual(config);

      const parsed = file(`ours-${kind}.der`);
      writeFileSync(parsed, r.der);
      const printed = openssl(["cms", "-cmsout", "-print", "-inform", "DER", "-in", parsed]).stdout;
      if (kind === "ec") {
        expect(printed).toMatch(/d\.kari:/);
        expect(printed).toMatch(/dhSinglePass-stdDH-sha256kdf-scheme \(1\.3\.132\.1\.11\.1\)/);
        expect(printed).toMatch(/:id-aes256-wrap/);
        expect(printed).toMatch(/ukm: <ABSENT>/);
        expect(r).toMatchObject({ keyEncryption: "dhSinglePass-stdDH-sha256kdf-scheme", keyWrap: "id-aes256-wrap" });
      } else {
        expect(printed).toMatch(/d\.ktri:/);
        expect(printed).toMatch(/rsaesOaep \(1\.2\.840\.113549\.1\.1\.7\)/);
        expect(printed.match(/:sha256/g)).toHaveLength(2); // OAEP hash and MGF1 hash
      }
      expect(printed).toMatch(/aes-256-cbc \(2\.16\.840\.1\.101\.3\.4\.1\.42\)/);
      // DER: definite lengths only, so the content is one primitive OCTET STRING.
      expect(openssl(["asn1parse", "-inform", "DER", "-in", parsed]).stdout).not.toMatch(/l=inf/);
    });
  }

  it("opens what openssl cms -encrypt makes: its defaults (SHA-1 KDF, no ukm; PKCS #1 v1.5), other KDFs, OAEP, AES-128, PEM and S/MIME", () => {
    const cases: Array<[Device, string[], string]> = [
      [devices.ec, [], "dhSinglePass-stdDH-sha1kdf-scheme"],
      [devices.ec, ["-keyopt", "ecdh_kdf_md:sha256"], "dhSinglePass-stdDH-sha256kdf-scheme"],
      [devices.ec, ["-keyopt", "ecdh_kdf_md:sha512", "-aes128-wrap"], "dhSinglePass-stdDH-sha512kdf-scheme"],
      [devices.ec, ["-keyopt", "ecdh_cofactor_mode:1"], "dhSinglePass-cofactorDH-sha1kdf-scheme"],
      [devices.rsa, [], "rsaEncryption (PKCS #1 v1.5)"],
      [devices.rsa, ["-keyopt", "rsa_padding_mode:oaep"], "id-RSAES-OAEP (sha1)"],
      [devices.rsa, ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256"], "id-RSAES-OAEP (sha256)"],
    ];
    for (const [d, extra, keyEncryption] of cases) {
      const r = open(opensslEncrypt(d, ...extra), d);
      expect(r, extra.join(" ")).toMatchObject({ encrypted: true, keyEncryption, contentEncryption: "aes-256-cbc", framing: "der" });
      expect(Buffer.from(r.plaintext)).toEqual(config);
    }
    expect(open(opensslEncrypt(devices.ec, "-aes128"), devices.ec)).toMatchObject({ contentEncryption: "aes-128-cbc", keyWrap: "id-aes128-wrap" });
    expect(open(opensslEncrypt(devices.ec, "-outform", "PEM", "-aes256"), devices.ec)).toMatchObject({ framing: "pem" });
    // -stream writes BER with indefinite lengths: still CMS, still read.
    expect(Buffer.from(open(opensslEncrypt(devices.rsa, "-stream"), devices.rsa).plaintext)).toEqual(config);
    // openssl's default output form is S/MIME: a unit must not take that for a plaintext configuration.
    const smime = open(opensslEncrypt(devices.rsa, "-outform", "SMIME", "-aes256"), devices.rsa);
    expect(smime).toMatchObject({ encrypted: true, framing: "smime" });
    expect(Buffer.from(smime.plaintext)).toEqual(config);
  });

  it("refuses what it does not accept, each with one clear line: 3DES, another content type", () => {
    expect(() => open(opensslEncrypt(devices.ec, "-des3"), devices.ec)).toThrowError(/des-ede3-cbc is not accepted in EnvelopedData: encrypt with AES-256-CBC/);
    const signed = file("signed.cms");
    const r = openssl(["cms", "-sign", "-in", file("config.txt"), "-signer", devices.ec.certFile, "-inkey", devices.ec.keyFile, "-outform", "DER", "-out", signed, "-nodetach"]);
    expect(r.code, r.stderr).toBe(0);
    expect(() => open(readFileSync(signed), devices.ec)).toThrowError(/content type is SignedData, not EnvelopedData/);
  });

  it("the PKI.js #335 work-around: without a ukm the SharedInfo has no entityUInfo, as OpenSSL derives it", () => {
    const wrap = "2.16.840.1.101.3.4.1.45";
    const ours = eccCmsSharedInfo(wrap, undefined, 256);
    // SEQUENCE { SEQUENCE { OID id-aes256-wrap } [2] { OCTET STRING 00000100 } }
    expect(Buffer.from(ours).toString("hex")).toBe("301530 0b06096086480165030401 2d a2 06 0404 00000100".replace(/ /g, ""));
    const pkijsInfo = new pkijs.ECCCMSSharedInfo({
      keyInfo: new pkijs.AlgorithmIdentifier({ algorithmId: wrap }),
      entityUInfo: undefined,
      suppPubInfo: new asn1js.OctetString({ valueHex: new Uint8Array([0, 0, 1, 0]) }),
    });
    // What PKI.js encodes (and so derives) for an absent ukm: an empty [0] that OpenSSL never writes.
    expect(Buffer.from(pkijsInfo.toSchema().toBER(false)).toString("hex")).toContain("a0020400");
    const withUkm = eccCmsSharedInfo(wrap, new Uint8Array([1, 2, 3]), 256);
    expect(Buffer.from(withUkm).toString("hex")).toContain("a0050403010203");
  });
});

describe("unit-side refusals", () => {
  it("another unit's key: NOT_FOR_THIS_UNIT with the certificate; DECRYPT_FAILED when it just tries its key", () => {
    const forEc = encryptToCertificate(devices.ec.cert, config).der;
    expect(() => open(forEc, devices.other)).toThrowError(expect.objectContaining({ code: "NOT_FOR_THIS_UNIT", message: expect.stringMatching(/^the input is encrypted to certificate [0-9a-f]+ of .*Test Vendor Factory CA.*, not to unit EC0002's EC key/) }));
    expect(() => decryptWithKey(forEc, devices.other.key)).toThrowError(expect.objectContaining({ code: "DECRYPT_FAILED", kind: "verify" }));
    expect(() => open(forEc, devices.rsa)).toThrowError(expect.objectContaining({ code: "NOT_FOR_THIS_UNIT" }));
  });

  for (const kind of ["ec", "rsa"] as const) {
    it(`${kind}: every single-bit flip is refused, except in the IV and ciphertext, where CBC has no integrity and the output changes`, () => {
      const d = devices[kind];
      const der = Buffer.from(encryptToCertificate(d.cert, Buffer.from("short config\n")).der);
      const envelope = parseEnvelope({ framing: "der", der });
      const ivAt = der.indexOf(Buffer.from(envelope.iv));
      const ctAt = der.indexOf(Buffer.from(envelope.ciphertext));
      const malleable = (i: number) => (i >= ivAt && i < ivAt + 16) || (i >= ctAt && i < ctAt + envelope.ciphertext.byteLength);
      const outcomes = { refused: 0, garbled: 0 };
      for (let i = 0; i < der.length; i++) {
        const bad = Buffer.from(der);
        bad[i]! ^= 0x01;
        let plaintext: Uint8Array | undefined;
        try {
          plaintext = open(bad, d).plaintext;
        } catch (e) {
          expect(e, `byte ${i}`).toBeInstanceOf(CmsError);
          outcomes.refused++;
          continue;
        }
        expect(malleable(i), `flip at byte ${i} of ${der.length} was accepted`).toBe(true);
        expect(Buffer.from(plaintext).toString()).not.toBe("short config\n");
        outcomes.garbled++;
      }
      expect(outcomes.refused).toBeGreaterThan(der.length - 40);
    });
  }

  it("refuses DER that asn1js throws on (a GeneralizedTime that does not parse) as CMS_INVALID, as a bit flip in a real envelope can make it", () => {
    // SEQUENCE { GeneralizedTime "A" }: asn1js throws rather than reporting the damage.
    const der = Buffer.from([0x30, 0x03, 0x18, 0x01, 0x41]);
    expect(() => open(der, devices.ec)).toThrowError(expect.objectContaining({ code: "CMS_INVALID", message: expect.stringMatching(/^the input is not a valid CMS EnvelopedData \(not DER\)/) }));
  });

  it("tells plaintext from ciphertext (RFC 8886 §4.3): text passes unless encryption is required; anything binary or armoured must be CMS", () => {
    const d = devices.ec;
    expect(open(config, d)).toEqual({ encrypted: false, plaintext: config });
    expect(() => open(config, d, true)).toThrowError(expect.objectContaining({ code: "NOT_ENCRYPTED" }));
    expect(unframe(new Uint8Array(0))).toBeUndefined();
    expect(() => open(randomBytes(200), d)).toThrowError(expect.objectContaining({ code: "CMS_INVALID" }));
    expect(() => open(Buffer.from(d.cert.toString("pem")), d)).toThrowError(/a PEM block labelled CERTIFICATE, not CMS/);
    const pem = cmsPem(encryptToCertificate(d.cert, config).der);
    expect(() => open(Buffer.from(pem.replace("\n", "\n!")), d)).toThrowError(/not valid base64/);
    const der = Buffer.from(encryptToCertificate(d.cert, config).der);
    expect(() => open(Buffer.concat([der, Buffer.from([0])]), d)).toThrowError(/1 bytes follow the ContentInfo/);
    expect(() => open(der.subarray(0, der.length - 1), d)).toThrowError(expect.objectContaining({ code: "CMS_INVALID" }));
  });
});

describe("operator-side refusals", () => {
  async function selfIssued(pair: { publicKey: KeyObject }, usages: number): Promise<x509.X509Certificate> {
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"])) as CryptoKeyPair;
    return x509.X509CertificateGenerator.create({
      serialNumber: "01",
      subject: "CN=device",
      issuer: "CN=issuer",
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3_600_000),
      publicKey: new x509.PublicKey(new Uint8Array(pair.publicKey.export({ type: "spki", format: "der" }))),
      signingKey: keys.privateKey,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
      extensions: [new x509.KeyUsagesExtension(usages, true)],
    });
  }

  it("a keyUsage that forbids the scheme is refused with one line: EC without keyAgreement, RSA without keyEncipherment", async () => {
    const ec = await selfIssued(generateKeyPairSync("ec", { namedCurve: "P-256" }), x509.KeyUsageFlags.digitalSignature);
    expect(() => encryptToCertificate(ec, config)).toThrowError(
      expect.objectContaining({ code: "KEY_USAGE", message: "the certificate of CN=device does not allow keyAgreement (its keyUsage is digitalSignature), which ECDH key agreement needs: encrypt to the device's IDevID" }),
    );
    const rsa = await selfIssued(generateKeyPairSync("rsa", { modulusLength: 2048 }), x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement);
    expect(() => encryptToCertificate(rsa, config)).toThrowError(/does not allow keyEncipherment \(its keyUsage is digitalSignature, keyAgreement\), which RSA key transport needs/);
    const small = await selfIssued(generateKeyPairSync("rsa", { modulusLength: 1024 }), x509.KeyUsageFlags.keyEncipherment);
    expect(() => encryptToCertificate(small, config)).toThrowError(expect.objectContaining({ code: "KEY_UNSUPPORTED" }));
  });

  it("checkDeviceCertificate: the IDevID passes; the wrong serial, a non-IDevID, a missing factory CA and another root are refused", async () => {
    const d = devices.ec;
    const ok = await checkDeviceCertificate(d.cert, "EC0001", pki.root, [pki.factoryCa]);
    expect(ok).toMatchObject({ serial: "EC0001", key: "EC P-256", keyUsage: ["digitalSignature", "keyAgreement"], hwType: "1.3.6.1.4.1.32473.1.1" });
    expect(ok.path).toHaveLength(3);
    await expect(checkDeviceCertificate(d.cert, "EC0002", pki.root, [pki.factoryCa])).rejects.toThrowError(/is not an IDevID for EC0002: its subject serialNumber is EC0001/);
    await expect(checkDeviceCertificate(d.cert, "EC0001", pki.root, [])).rejects.toThrowError(/pass the vendor's factory CA with --chain FILE/);
    const other = await makePki();
    await expect(checkDeviceCertificate(d.cert, "EC0001", other.root, [pki.factoryCa])).rejects.toThrowError(expect.objectContaining({ code: "CHAIN_INVALID", kind: "verify" }));
    // A certificate from some other issuer with the same name is refused too.
    const station = await issueEndEntity({ purpose: "station", issuer: { signer: softSigner(), certificate: pki.root }, publicKeySpki: softSigner().publicKeySpki, subject: { organization: "Test Vendor", commonName: "s" }, clock: systemClock, random: systemRandom });
    await expect(checkDeviceCertificate(station, "EC0001", pki.root, [pki.factoryCa])).rejects.toThrowError(OperatorError);
  });
});

describe("AuthEnvelopedData (RFC 5083) with AES-GCM (RFC 5084): operator encrypt --aead, and openssl -aes-256-gcm", () => {
  const aead = (d: Device, content: Uint8Array = config) => encryptToCertificate(d.cert, content, systemRandom, { aead: true });

  for (const kind of ["ec", "rsa"] as const) {
    it(`${kind === "ec" ? "P-256" : "RSA-2048"}: openssl decrypts our DER and PEM, and so does the unit's key; version 0, AES-256-GCM, a 12-byte nonce and a 16-byte tag`, () => {
      const d = devices[kind];
      const r = aead(d);
      expect(r).toMatchObject({ contentType: "AuthEnvelopedData", contentEncryption: "aes-256-gcm" });
      expect(opensslDecrypt(d, r.der, "DER")).toBe(config.toString());
      expect(opensslDecrypt(d, Buffer.from(cmsPem(r.der)), "PEM")).toBe(config.toString());
      const opened = open(r.der, d);
      expect(opened).toMatchObject({ encrypted: true, authenticated: true, contentEncryption: "aes-256-gcm", recipient: kind === "ec" ? "key agreement" : "key transport" });
      expect(Buffer.from(opened.plaintext)).toEqual(config);

      const parsed = file(`ours-aead-${kind}.der`);
      writeFileSync(parsed, r.der);
      const printed = openssl(["cms", "-cmsout", "-print", "-inform", "DER", "-in", parsed]).stdout;
      expect(printed).toMatch(/contentType: id-smime-ct-authEnvelopedData \(1\.2\.840\.113549\.1\.9\.16\.1\.23\)/);
      expect(printed).toMatch(kind === "ec" ? /d\.kari:[\s\S]*dhSinglePass-stdDH-sha256kdf-scheme[\s\S]*:id-aes256-wrap/ : /d\.ktri:[\s\S]*rsaesOaep/);
      expect(printed).toMatch(/algorithm: aes-256-gcm \(2\.16\.840\.1\.101\.3\.4\.1\.46\)/);
      expect(openssl(["asn1parse", "-inform", "DER", "-in", parsed]).stdout).not.toMatch(/l=inf/);
      const data = AsnConvert.parse(AsnConvert.parse(r.der, ContentInfo).content, AuthEnvelopedData);
      const params = AsnConvert.parse(data.authEncryptedContentInfo.contentEncryptionAlgorithm.parameters!, GcmParameters);
      expect({ version: data.version, nonce: params.nonce.byteLength, icvLen: params.icvLen, mac: data.mac.byteLength, authAttrs: data.authAttrs }).toEqual({ version: 0, nonce: 12, icvLen: 16, mac: 16, authAttrs: undefined });
    });
  }

  it("opens what openssl cms -encrypt -aes-256-gcm makes: P-256 (its SHA-1 KDF), RSA (PKCS #1 v1.5 and OAEP), AES-128-GCM, PEM, S/MIME and -stream BER", () => {
    const cases: Array<[Device, string[], Record<string, string>]> = [
      [devices.ec, ["-aes-256-gcm"], { keyEncryption: "dhSinglePass-stdDH-sha1kdf-scheme", keyWrap: "id-aes256-wrap", contentEncryption: "aes-256-gcm" }],
      [devices.ec, ["-aes-128-gcm"], { keyWrap: "id-aes128-wrap", contentEncryption: "aes-128-gcm" }],
      [devices.rsa, ["-aes-256-gcm"], { keyEncryption: "rsaEncryption (PKCS #1 v1.5)" }],
      [devices.rsa, ["-aes-256-gcm", "-keyopt", "rsa_padding_mode:oaep"], { keyEncryption: "id-RSAES-OAEP (sha1)" }],
      [devices.ec, ["-aes-256-gcm", "-outform", "PEM"], { framing: "pem" }],
      [devices.rsa, ["-aes-256-gcm", "-outform", "SMIME"], { framing: "smime" }],
      [devices.rsa, ["-aes-256-gcm", "-stream"], { framing: "der" }],
    ];
    for (const [d, extra, expected] of cases) {
      const r = open(opensslEncrypt(d, ...extra), d);
      expect(r, extra.join(" ")).toMatchObject({ encrypted: true, authenticated: true, ...expected });
      expect(Buffer.from(r.plaintext)).toEqual(config);
    }
  });

  for (const kind of ["ec", "rsa"] as const) {
    it(`${kind}: every single-bit flip is refused, in the nonce, the ciphertext and the tag too (there: the tag does not match, a verify error)`, () => {
      const d = devices[kind];
      const der = Buffer.from(aead(d, Buffer.from("short config\n")).der);
      const envelope = parseEnvelope({ framing: "der", der });
      const nonceAt = der.indexOf(Buffer.from(envelope.iv));
      const ctAt = der.indexOf(Buffer.from(envelope.ciphertext));
      // The mac is the last field: no unauthAttrs follow it.
      const tagged = (i: number) => (i >= nonceAt && i < nonceAt + 12) || (i >= ctAt && i < ctAt + envelope.ciphertext.byteLength) || i >= der.length - 16;
      for (let i = 0; i < der.length; i++) {
        const bad = Buffer.from(der);
        bad[i]! ^= 0x01;
        let error: unknown;
        try {
          open(bad, d);
        } catch (e) {
          error = e;
        }
        expect(error, `flip at byte ${i} of ${der.length} was accepted`).toBeInstanceOf(IdmintError);
        if (tagged(i)) expect(error, `byte ${i}`).toMatchObject({ code: "DECRYPT_FAILED", kind: "verify", message: expect.stringMatching(/^the input's AES-GCM authentication tag does not match under unit/) });
      }
    });
  }

  it("refuses authenticated attributes it does not read, and a nonce of another length, in one line", () => {
    const d = devices.ec;
    const ci = AsnConvert.parse(aead(d).der, ContentInfo);
    const data = AsnConvert.parse(ci.content, AuthEnvelopedData);
    const reencode = () => new Uint8Array(AsnConvert.serialize(new ContentInfo({ contentType: ci.contentType, content: AsnConvert.serialize(data) })));
    // RFC 5652 §11.1 content-type attribute, id-data.
    data.authAttrs = new AuthAttributes([new Attribute({ attrType: "1.2.840.113549.1.9.3", attrValues: [new asn1js.ObjectIdentifier({ value: "1.2.840.113549.1.7.1" }).toBER()] })]);
    expect(() => open(reencode(), d)).toThrowError(expect.objectContaining({ code: "CMS_UNSUPPORTED", message: expect.stringMatching(/has authenticated attributes, which idmint does not read/) }));
    data.authAttrs = undefined;
    data.authEncryptedContentInfo.contentEncryptionAlgorithm.parameters = AsnConvert.serialize(new GcmParameters({ nonce: new OctetString(new Uint8Array(16)), icvLen: 16 }));
    expect(() => open(reencode(), d)).toThrowError(expect.objectContaining({ code: "CMS_UNSUPPORTED", message: expect.stringMatching(/the AES-GCM nonce is 16 bytes/) }));
  });
});

describe("one size limit for a configuration, on both sides (cms/limits.ts)", () => {
  it("encrypt refuses one byte over the limit; decrypt refuses a CMS holding more, and input over its limits before parsing it", () => {
    const d = devices.ec;
    expect(() => encryptToCertificate(d.cert, Buffer.alloc(MAX_CONFIGURATION_BYTES + 1))).toThrowError(
      expect.objectContaining({ code: "TOO_LARGE", kind: "input", message: expect.stringMatching(/^the configuration is 8388609 bytes, more than the 8388608 a configuration may have/) }),
    );
    // openssl has no limit: the unit refuses what it encrypted over the limit, as operator encrypt would have.
    const over = file("over-limit.txt");
    writeFileSync(over, Buffer.alloc(MAX_CONFIGURATION_BYTES + 1, 0x61));
    const cms = file("over-limit.cms");
    const r = openssl(["cms", "-encrypt", "-binary", "-aes-256-gcm", "-in", over, "-recip", d.certFile, "-outform", "DER", "-out", cms]);
    expect(r.code, r.stderr).toBe(0);
    expect(() => open(readFileSync(cms), d)).toThrowError(/^the decrypted configuration is 8388609 bytes, more than the 8388608 a configuration may have/);
    // Garbage that would be CMS_INVALID if it were parsed is TOO_LARGE: refused before.
    expect(() => open(randomBytes(MAX_CMS_BYTES + 1), d)).toThrowError(expect.objectContaining({ code: "TOO_LARGE", message: expect.stringMatching(/^the CMS in the input is 8454145 bytes/) }));
    expect(() => open(Buffer.alloc(MAX_ENCRYPTED_INPUT_BYTES + 1, 0x61), d)).toThrowError(expect.objectContaining({ code: "TOO_LARGE", message: expect.stringMatching(/^the input is 11628545 bytes/) }));
    expect(() => open(Buffer.alloc(MAX_CONFIGURATION_BYTES + 1, 0x61), d)).toThrowError(/^the plaintext configuration is 8388609 bytes/);
  });
});
