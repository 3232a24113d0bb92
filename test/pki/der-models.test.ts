import { afterAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { generateKeyPairSync, sign, verify } from "node:crypto";
import { CertificateModel, attributes, decodeWhole, directoryString, oid, serialNumbers, x509 } from "../../pki/index.js";
import { ecdsaSignatureDer } from "../../pki/der-models.js";
import { openssl, scratch } from "../helpers.js";

const s = scratch("der-models");
afterAll(() => s.cleanup());

/** A self-signed certificate from `openssl req -x509`, as DER. */
function certificate(subject: string): Buffer {
  const out = join(s.dir, "cert.der");
  const r = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(s.dir, "key.pem"), "-subj", subject, "-days", "30", "-outform", "DER", "-out", out]);
  if (r.code !== 0) throw new Error(r.stderr);
  return readFileSync(out);
}

describe("pki's asn1.js models", () => {
  it("read a certificate as @peculiar/x509 does: the signed bytes, issuer, key, validity and subject", () => {
    const der = certificate("/serialNumber=SN000042/CN=unit");
    const { value, at } = decodeWhole(CertificateModel, der, ["tbsCertificate", "tbsCertificate/issuer", "tbsCertificate/subjectPublicKeyInfo"]);
    const [tbs, issuer, spki] = at.map((range) => der.subarray(...range));
    const peculiar = new x509.X509Certificate(new Uint8Array(der));
    expect(tbs!.equals(Buffer.from(AsnConvert.serialize(AsnConvert.parse(der, Certificate).tbsCertificate)))).toBe(true);
    expect(issuer!.equals(Buffer.from(AsnConvert.serialize(AsnConvert.parse(der, Certificate).tbsCertificate.issuer)))).toBe(true);
    expect(spki!.equals(Buffer.from(peculiar.publicKey.rawData))).toBe(true);
    expect(value.tbsCertificate.validity.notBefore.value).toBe(peculiar.notBefore.getTime());
    expect(value.tbsCertificate.validity.notAfter.value).toBe(peculiar.notAfter.getTime());
    expect(oid(value.signatureAlgorithm.algorithm)).toBe("1.2.840.10045.4.3.2");
    const subject = attributes(value.tbsCertificate.subject);
    expect(subject.map((a) => [a.type, directoryString(a.value)])).toEqual([
      ["2.5.4.5", "SN000042"],
      ["2.5.4.3", "unit"],
    ]);
    expect(serialNumbers(value.tbsCertificate.subject)).toEqual(["SN000042"]);
  });

  it("encode an r || s ECDSA signature as the DER OpenSSL makes, leading zeros and high bits included", () => {
    for (const namedCurve of ["P-256", "P-384"]) {
      const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve });
      for (let i = 0; i < 200; i++) {
        const data = Buffer.from(`message ${i}`);
        const raw = sign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" });
        const der = ecdsaSignatureDer(raw);
        expect(verify("sha256", data, publicKey, der)).toBe(true);
        expect(verify("sha256", data, { key: publicKey, dsaEncoding: "ieee-p1363" }, raw)).toBe(true);
      }
    }
    const half = (first: number) => Buffer.concat([Buffer.from([first]), Buffer.alloc(31, 0x11)]);
    expect(ecdsaSignatureDer(Buffer.concat([half(0x80), half(0x00)])).toString("hex")).toBe("3044022100" + half(0x80).toString("hex") + "021f" + "11".repeat(31));
  });

  it("refuse input that is not exactly one element, and values that are not directory strings", () => {
    const der = certificate("/CN=unit");
    expect(() => decodeWhole(CertificateModel, Buffer.concat([der, Buffer.from([0])]), [])).toThrow(/not exactly one element/);
    expect(() => decodeWhole(CertificateModel, der.subarray(0, der.length - 1), [])).toThrow();
    expect(() => decodeWhole(CertificateModel, der, ["tbsCertificate/nothing"])).toThrow(/no tbsCertificate\/nothing/);
    expect(() => directoryString(Buffer.from("020105", "hex"))).toThrow();
  });
});
