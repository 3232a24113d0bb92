import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { Home, fixedClock, systemRandom, type KeyRole } from "../../core/index.js";
import type { Hsm } from "../../hsm/index.js";
import { issueIdevid, readHardwareModuleName, runCeremony, x509, type CeremonyResult } from "../../pki/index.js";
import { scratch } from "../helpers.js";
import { hsmCa } from "./hsm-ca.js";

const s = scratch("idevid");
let hsm: Hsm;
let certs: CeremonyResult;
let home: Home;
const issuedAt = new Date("2026-11-23T10:00:00.000Z");

beforeAll(async () => {
  ({ home, hsm, certs } = await hsmCa(s.dir, issuedAt));
});

afterAll(() => {
  hsm?.close();
  s.cleanup();
});

describe("IDevID profile", () => {
  it("1,000 IDevIDs have distinct, positive serials of at least 64 bits and at most 20 octets", async () => {
    const config = home.readConfig();
    const issuer = { signer: hsm.signer(config.keys.factoryCa), certificate: certs.factoryCa };
    const spki = new Uint8Array(generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "der" }));
    const serials = new Set<string>();
    const caKey = await certs.factoryCa.publicKey.export();
    for (let i = 0; i < 1000; i++) {
      const cert = await issueIdevid({ issuer, publicKeySpki: spki, serial: `SN${String(i).padStart(6, "0")}`, organization: "Acme Routers", hwTypeOid: config.profile.hwTypeOid, clock: fixedClock(issuedAt), random: systemRandom });
      const der = Buffer.from(cert.serialNumber, "hex");
      expect(der.length).toBeLessThanOrEqual(20);
      expect(der[0]! & 0x80).toBe(0);
      expect(BigInt("0x" + cert.serialNumber) >= 2n ** 64n).toBe(true);
      serials.add(cert.serialNumber);
      if (i % 100 === 0) expect(await cert.verify({ publicKey: caKey, signatureOnly: true })).toBe(true);
    }
    expect(serials.size).toBe(1000);
  });

  it("puts the clock's time in notBefore, no expiry in notAfter, and the serial in subject and SAN", async () => {
    const config = home.readConfig();
    const spki = new Uint8Array(generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ type: "spki", format: "der" }));
    const cert = await issueIdevid({
      issuer: { signer: hsm.signer(config.keys.factoryCa), certificate: certs.factoryCa },
      publicKeySpki: spki,
      serial: "RT-000123",
      organization: "Acme Routers",
      commonName: "Acme RT-1 RT-000123",
      hwTypeOid: "1.3.6.1.4.1.32473.9",
      clock: fixedClock(issuedAt),
      random: systemRandom,
    });
    expect(cert.notBefore.toISOString()).toBe("2026-11-23T10:00:00.000Z");
    expect(cert.notAfter.toISOString()).toBe("9999-12-31T23:59:59.000Z");
    expect(cert.subjectName.getField("2.5.4.5")).toEqual(["RT-000123"]);
    expect(cert.subjectName.getField("CN")).toEqual(["Acme RT-1 RT-000123"]);
    expect(readHardwareModuleName(cert)).toEqual({ hwType: "1.3.6.1.4.1.32473.9", hwSerialNum: "RT-000123" });
    const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension)!;
    expect(aki.keyId).toBe(certs.factoryCa.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
    expect(cert.getExtension(x509.BasicConstraintsExtension)!.ca).toBe(false);
  });

  it("a ceremony that fails half-way leaves no keys behind", async () => {
    const config = home.readConfig();
    const created: KeyRole[] = [];
    const destroyed: KeyRole[] = [];
    const alt = { ...config.keys, factoryCa: config.keys.factoryCa.replace("object=factory-ca-key", "object=second-ca") };
    const rootAlt = config.keys.root.replace("object=vendor-root-key", "object=second-root");
    await expect(
      runCeremony({
        keys: {
          create: (role, alg) => {
            if (role === "allocationSigner") throw new Error("token full");
            created.push(role);
            return hsm.createKey(role === "root" ? rootAlt : alt[role], alg);
          },
          destroy: (role) => {
            destroyed.push(role);
            hsm.destroyKey(role === "root" ? rootAlt : alt[role]);
          },
        },
        organization: "Acme Routers",
        stationId: "line-7",
        clock: fixedClock(issuedAt),
        random: systemRandom,
      }),
    ).rejects.toThrow("token full");
    expect(destroyed).toEqual([...created].reverse());
    expect(hsm.listKeys(rootAlt).map((k) => k.label)).not.toContain("second-root");
    expect(hsm.listKeys(alt.factoryCa).map((k) => k.label)).not.toContain("second-ca");
  });
});
