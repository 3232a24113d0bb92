import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { createPrivateKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { certificationRequest, certificationRequestInfo, isPrintableString, p256Encodings, toPem } from "../../device/csr.js";
import { checkCsr } from "../../pki/index.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

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
    const data = Buffer.from("signed with the key read back");
    expect(verify("sha256", data, publicKey, sign("sha256", data, createPrivateKey(pem)))).toBe(true);
  });

  it("encodes thousands of new keys in a row without hanging (Node 20 can deadlock on a JWK export of a key just made)", () => {
    // In a child with a time limit: a deadlocked thread would never reach a timeout of its own.
    const csr = pathToFileURL(join(root, "dist", "device", "csr.js")).href;
    const script = `import { generateKeyPairSync } from "node:crypto";
      import { p256Encodings } from ${JSON.stringify(csr)};
      for (let i = 0; i < 5000; i++) { const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" }); p256Encodings(privateKey, publicKey); }
      console.log("done");`;
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    expect(child.error, "the key loop hung").toBeUndefined();
    expect(child.stdout.trim(), child.stderr).toBe("done");
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
