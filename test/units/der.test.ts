import { describe, expect, it } from "vitest";
import { createPrivateKey, generateKeyPairSync, sign } from "node:crypto";
import { certificationRequest, certificationRequestInfo, isPrintableString, p256Encodings, toPem } from "../../units/csr.js";
import { checkCsr } from "../../pki/index.js";

describe("the unit's hand-encoded DER", () => {
  it("P-256 SPKI and PKCS#8 equal what OpenSSL encodes, key after key", () => {
    for (let i = 0; i < 300; i++) {
      const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const mine = p256Encodings(privateKey, publicKey);
      expect(mine.spki).toEqual(publicKey.export({ type: "spki", format: "der" }));
      expect(mine.pkcs8).toEqual(privateKey.export({ type: "pkcs8", format: "der" }));
    }
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const pem = toPem("PRIVATE KEY", p256Encodings(privateKey, publicKey).pkcs8);
    expect(createPrivateKey(pem).export({ format: "jwk" })).toEqual(privateKey.export({ format: "jwk" }));
  });

  it("CSRs carry the serial as a PrintableString and pass pki's checks; non-printable serials are refused", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const info = certificationRequestInfo("SN-1.a", publicKey.export({ type: "spki", format: "der" }));
    const csr = toPem("CERTIFICATE REQUEST", certificationRequest(info, "EC-P256", sign("sha256", info, privateKey)));
    expect((await checkCsr(csr, "SN-1.a")).keyType).toBe("EC-P256");
    expect(info.includes(Buffer.from("1306534e2d312e61", "hex"))).toBe(true); // PrintableString "SN-1.a"
    expect(isPrintableString("SN_1")).toBe(false);
    expect(() => certificationRequestInfo("SN_1", Buffer.alloc(0))).toThrow(/not a PrintableString/);
  });
});
