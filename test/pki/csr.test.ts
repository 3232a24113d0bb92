import { afterAll, describe, expect, it } from "vitest";
import { generateKeyPairSync, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { AlgorithmIdentifier, SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { id_ecdsaWithSHA256 } from "@peculiar/asn1-ecc";
import { id_RSASSA_PSS } from "@peculiar/asn1-rsa";
import { sha256Hex } from "../../core/index.js";
import { checkCsr, x509 } from "../../pki/index.js";
import { openssl, scratch } from "../helpers.js";

const s = scratch("csr");
afterAll(() => s.cleanup());

const P256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

/** A CSR from `openssl req`, as PEM text; `args` make its key (`-newkey ...`) or name it (`-key F`). */
function csr(name: string, args: string[], subject = "/serialNumber=SN000001/CN=unit"): string {
  const out = join(s.dir, `${name}.csr`);
  const keyArgs = args[0] === "-key" ? [] : ["-nodes", "-keyout", join(s.dir, `${name}.key`)];
  const r = openssl(["req", "-new", ...args, ...keyArgs, "-subj", subject, "-out", out]);
  if (r.code !== 0) throw new Error(r.stderr);
  return readFileSync(out, "utf8");
}

/** A P-256 key whose SPKI carries the point compressed (X9.62 §4.3.6), which units rarely send. */
function compressedP256Key(): string[] {
  const plain = join(s.dir, "compressed-plain.key");
  const key = join(s.dir, "compressed.key");
  for (const args of [["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", plain], ["ec", "-in", plain, "-conv_form", "compressed", "-out", key]]) {
    const r = openssl(args);
    if (r.code !== 0) throw new Error(r.stderr);
  }
  return ["-key", key];
}

function der(pem: string): Buffer {
  return Buffer.from(x509.PemConverter.decodeFirst(pem));
}

/** The CSR with `edit` applied to its parsed form, encoded again (the CertificationRequestInfo is unchanged). */
function edited(pem: string, edit: (c: CertificationRequest) => void): Uint8Array {
  const c = AsnConvert.parse(der(pem), CertificationRequest);
  edit(c);
  return new Uint8Array(AsnConvert.serialize(c));
}

function replaceOnce(bytes: Buffer, from: string, to: string): Buffer {
  const at = bytes.indexOf(Buffer.from(from, "hex"));
  if (at === -1 || bytes.indexOf(Buffer.from(from, "hex"), at + 1) !== -1) throw new Error(`${from} is not in the CSR exactly once`);
  const out = Buffer.from(bytes);
  Buffer.from(to, "hex").copy(out, at);
  return out;
}

describe("checkCsr accepts", () => {
  for (const [label, args, keyType] of [
    ["P-256", P256, "EC-P256"],
    ["P-384", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], "EC-P384"],
    ["P-521", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"], "EC-P521"],
    ["RSA-2048", ["-newkey", "rsa:2048"], "RSA-2048"],
    ["P-256, compressed point", compressedP256Key, "EC-P256"],
  ] as const) {
    it(`an openssl ${label} CSR as PEM text, PEM bytes and DER, returning the SPKI @peculiar/x509 reads from it`, async () => {
      const pem = csr(label.replace(/\W/g, ""), typeof args === "function" ? args() : [...args]);
      const spki = Buffer.from(new x509.Pkcs10CertificateRequest(pem).publicKey.rawData);
      for (const input of [pem, new Uint8Array(Buffer.from(pem)), new Uint8Array(der(pem))]) {
        const checked = await checkCsr(input, "SN000001");
        expect(checked).toMatchObject({ keyType, subjectSerial: "SN000001" });
        expect(Buffer.from(checked.publicKeySpki).toString("hex")).toBe(spki.toString("hex"));
      }
    });
  }

  it("one key has one fingerprint, its point compressed or not", async () => {
    const args = compressedP256Key();
    const compressed = await checkCsr(csr("fingerprint-compressed", args), "SN000001");
    const plain = await checkCsr(csr("fingerprint-plain", ["-key", join(s.dir, "compressed-plain.key")]), "SN000001");
    expect(Buffer.from(compressed.publicKeySpki).equals(Buffer.from(plain.publicKeySpki))).toBe(false);
    expect(compressed.keyFingerprint).toBe(plain.keyFingerprint);
    expect(plain.keyFingerprint).toBe(sha256Hex(plain.publicKeySpki));
  });

  it("self-signatures with SHA-1, SHA-512 and RSA-PSS, as WebCrypto verified them before", async () => {
    expect((await checkCsr(csr("ec-sha1", [...P256, "-sha1"]), "SN000001")).keyType).toBe("EC-P256");
    expect((await checkCsr(csr("ec-sha512", [...P256, "-sha512"]), "SN000001")).keyType).toBe("EC-P256");
    expect((await checkCsr(csr("rsa-sha1", ["-newkey", "rsa:2048", "-sha1"]), "SN000001")).keyType).toBe("RSA-2048");
    const pss = csr("rsa-pss", ["-newkey", "rsa:2048", "-sha384", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:20"]);
    expect((await checkCsr(pss, "SN000001")).keyType).toBe("RSA-2048");
  });
});

describe("checkCsr refuses", () => {
  const good = csr("good", P256);
  const rsa = csr("rsa", ["-newkey", "rsa:2048"]);
  const refused = (input: string | Uint8Array, code: string, kind: string, message: RegExp, serial = "SN000001") =>
    expect(checkCsr(input, serial)).rejects.toMatchObject({ code, kind, message: expect.stringMatching(message) });
  const noPossession = /^the CSR's self-signature does not verify \(no proof of possession\): have the unit generate a new CSR$/;

  it("input that is not a PKCS#10 request", async () => {
    const notCsr = /^the CSR is not a PKCS#10 request in PEM or DER/;
    await refused("hello", "CSR_INVALID", "input", notCsr);
    await refused(new Uint8Array(0), "CSR_INVALID", "input", notCsr);
    await refused(new Uint8Array(der(good).subarray(0, 100)), "CSR_INVALID", "input", notCsr);
    await refused(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]), "CSR_INVALID", "input", notCsr);
    await refused("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "CSR_INVALID", "input", notCsr);
    await refused(new Uint8Array(Buffer.concat([der(good), Buffer.from([0])])), "CSR_INVALID", "input", notCsr);
  });

  it("a serial outside the allowed syntax, before reading the CSR", async () => {
    await refused(good, "SERIAL_SYNTAX", "input", /^serial "SN 1\/..\/x" is not valid/, "SN 1/../x");
  });

  it("keys of a refused type or size, and keys that cannot be read", async () => {
    await refused(csr("rsa1024", ["-newkey", "rsa:1024"]), "CSR_KEY_REFUSED", "input", /^the CSR's key is RSA-1024, which is refused/);
    await refused(csr("p192", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-192"]), "CSR_KEY_REFUSED", "input", /^the CSR's key is on curve prime192v1, which is refused/);
    await refused(csr("ed25519", ["-newkey", "ed25519"]), "CSR_KEY_REFUSED", "input", /^the CSR's key type ed25519 is refused/);
    // The point moved off the curve: the last byte of Y, which the key's SPKI ends with.
    const bytes = der(good);
    const spki = Buffer.from(new x509.Pkcs10CertificateRequest(good).publicKey.rawData);
    const offCurve = Buffer.from(bytes);
    const last = bytes.indexOf(spki) + spki.length - 1;
    offCurve[last] = offCurve[last]! ^ 0x01;
    await refused(new Uint8Array(offCurve), "CSR_KEY_REFUSED", "input", /^the CSR's public key cannot be read/);
  });

  it("a signature that does not verify, or by an algorithm that does not fit the key", async () => {
    const bytes = der(good);
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 3] = flipped[flipped.length - 3]! ^ 0x01;
    await refused(new Uint8Array(flipped), "CSR_SIGNATURE", "verify", noPossession);
    // ecdsa-with-SHA256 claimed as ecdsa-with-SHA384; sha256WithRSAEncryption as md5WithRSAEncryption.
    await refused(new Uint8Array(replaceOnce(bytes, "06082a8648ce3d040302", "06082a8648ce3d040303")), "CSR_SIGNATURE", "verify", noPossession);
    await refused(new Uint8Array(replaceOnce(der(rsa), "06092a864886f70d01010b", "06092a864886f70d010104")), "CSR_SIGNATURE", "verify", noPossession);
    // An RSA key's request claiming ECDSA, and RSA-PSS without its parameters.
    await refused(edited(rsa, (c) => (c.signatureAlgorithm = new AlgorithmIdentifier({ algorithm: id_ecdsaWithSHA256 }))), "CSR_SIGNATURE", "verify", noPossession);
    await refused(edited(rsa, (c) => (c.signatureAlgorithm = new AlgorithmIdentifier({ algorithm: id_RSASSA_PSS }))), "CSR_SIGNATURE", "verify", noPossession);
    // Another key's valid signature.
    const other = edited(good, (c) => (c.signature = AsnConvert.parse(der(csr("other", P256)), CertificationRequest).signature));
    await refused(other, "CSR_SIGNATURE", "verify", noPossession);
  });

  it("a subject without exactly the expected serialNumber", async () => {
    await refused(good, "CSR_SERIAL_MISMATCH", "input", /^the CSR's subject has serialNumber SN000001, not SN000002: /, "SN000002");
    await refused(csr("two", P256, "/serialNumber=SN000001/serialNumber=SN000002"), "CSR_SERIAL_MISMATCH", "input", /has serialNumber SN000001, SN000002, not SN000001/);
    await refused(csr("none", P256, "/CN=SN000001"), "CSR_SERIAL_MISMATCH", "input", /has no serialNumber, not SN000001/);
    // A properly signed request whose serialNumber is an INTEGER, which openssl will not write.
    const tlv = (tag: number, ...body: Buffer[]) => {
      const b = Buffer.concat(body);
      return Buffer.concat([Buffer.from(b.length < 0x80 ? [tag, b.length] : [tag, 0x81, b.length]), b]);
    };
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const subject = tlv(0x30, tlv(0x31, tlv(0x30, Buffer.from("0603550405", "hex"), tlv(0x02, Buffer.from([5])))));
    const info = tlv(0x30, Buffer.from("020100", "hex"), subject, publicKey.export({ type: "spki", format: "der" }), Buffer.from("a000", "hex"));
    const signature = sign("sha256", info, privateKey);
    const request = tlv(0x30, info, Buffer.from("300a06082a8648ce3d040302", "hex"), tlv(0x03, Buffer.from([0]), signature));
    await refused(new Uint8Array(request), "CSR_INVALID", "input", /^the CSR's subject serialNumber is not a string: have the unit make a CSR with serialNumber=its serial$/);
  });

  it("the key is checked before the signature, and the signature before the serial", async () => {
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const swapped = edited(good, (c) => {
      c.certificationRequestInfo.subjectPKInfo = AsnConvert.parse(publicKey.export({ type: "spki", format: "der" }), SubjectPublicKeyInfo);
    });
    await refused(swapped, "CSR_SIGNATURE", "verify", noPossession, "SN000002");
    await refused(csr("rsa1024-wrong", ["-newkey", "rsa:1024"], "/serialNumber=SN9"), "CSR_KEY_REFUSED", "input", /RSA-1024/);
  });
});
