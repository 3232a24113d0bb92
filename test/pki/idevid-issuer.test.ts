import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fixedClock, systemRandom } from "../../core/index.js";
import type { Hsm, Signer } from "../../hsm/index.js";
import { IdevidIssuer, issueIdevid, newCertificateSerial, readHardwareModuleName, type CeremonyResult, type IdevidProfile } from "../../pki/index.js";
import { openssl, scratch } from "../helpers.js";
import { hsmCa } from "./hsm-ca.js";

const s = scratch("idevid-issuer");
let hsm: Hsm;
let certs: CeremonyResult;
let caSigner: Signer;
let profile: IdevidProfile;
const issuedAt = new Date("2026-11-23T10:00:00.000Z");

/**
 * The factory CA's HSM signer, answering a TBSCertificate it has signed before with the same
 * signature: ECDSA signatures are randomized, and whole certificates from both paths can only
 * be compared if both got the same one. `calls` counts what reached the HSM.
 */
function sameSignatureTwice(signer: Signer): Signer & { calls: number } {
  const seen = new Map<string, Uint8Array<ArrayBuffer>>();
  const wrapped = {
    algorithm: signer.algorithm,
    hash: signer.hash,
    publicKeySpki: signer.publicKeySpki,
    calls: 0,
    async sign(data: Uint8Array) {
      const key = createHash("sha256").update(data).digest("hex");
      let signature = seen.get(key);
      if (!signature) {
        wrapped.calls++;
        signature = await signer.sign(data);
        seen.set(key, signature);
      }
      return signature;
    },
  };
  return wrapped;
}

const UNIT_KEYS = {
  "P-256": () => generateKeyPairSync("ec", { namedCurve: "P-256" }),
  "P-384": () => generateKeyPairSync("ec", { namedCurve: "P-384" }),
  "RSA-2048": () => generateKeyPairSync("rsa", { modulusLength: 2048 }),
};

function unitSpki(kind: keyof typeof UNIT_KEYS): Uint8Array<ArrayBuffer> {
  return new Uint8Array(UNIT_KEYS[kind]().publicKey.export({ type: "spki", format: "der" }));
}

/** A serial of `length` characters, distinct per `i`. */
function serialOf(length: number, i: number): string {
  return (String(i % 10) + "ABCDEFGHIJKLMNOPQRSTUVWXYZ".repeat(3)).slice(0, length);
}

beforeAll(async () => {
  const ca = await hsmCa(s.dir, issuedAt);
  ({ hsm, certs } = ca);
  caSigner = hsm.signer(ca.config.keys.factoryCa);
  profile = { organization: ca.config.profile.organization, hwTypeOid: ca.config.profile.hwTypeOid };
});

afterAll(() => {
  hsm?.close();
  s.cleanup();
});

describe("IdevidIssuer", () => {
  it("issues byte for byte what issueIdevid issues, for serials of 1, 2, 10 and 64 characters and P-256, P-384 and RSA-2048 unit keys", async () => {
    const signer = sameSignatureTwice(caSigner);
    const issuer = new IdevidIssuer({ issuer: { signer, certificate: certs.factoryCa }, profile, clock: fixedClock(issuedAt), random: systemRandom });
    let issued = 0;
    for (const kind of Object.keys(UNIT_KEYS) as Array<keyof typeof UNIT_KEYS>) {
      for (const length of [1, 2, 10, 64]) {
        // The first unit of a kind makes the template, the second uses it.
        for (const i of [0, 1]) {
          const publicKeySpki = unitSpki(kind);
          const serial = serialOf(length, i);
          const certificateSerial = newCertificateSerial(systemRandom);
          const fast = await issuer.issue({ publicKeySpki, serial, certificateSerial });
          issued++;
          const slow = await issueIdevid({ issuer: { signer, certificate: certs.factoryCa }, publicKeySpki, serial, ...profile, clock: fixedClock(issuedAt), random: systemRandom, certificateSerial });
          expect(Buffer.from(fast.der).toString("hex"), `${kind}, serial ${serial}`).toBe(Buffer.from(slow.rawData).toString("hex"));
          expect(fast.pem).toBe(slow.toString("pem"));
          expect(fast.fingerprint).toBe(createHash("sha256").update(fast.der).digest("hex"));
          expect(fast.certificateSerial).toBe(certificateSerial);
          expect(fast.certificate.serialNumber).toBe(certificateSerial);
        }
      }
    }
    // Templates are built with a placeholder signer: the CA key signed each unit once (invariant 2).
    expect(signer.calls).toBe(issued);
  });

  it("encodes notBefore after 2049 as GeneralizedTime, as issueIdevid does, and takes notBefore from the request or the clock", async () => {
    const signer = sameSignatureTwice(caSigner);
    const later = new Date("2051-06-30T23:59:58.999Z");
    const issuer = new IdevidIssuer({ issuer: { signer, certificate: certs.factoryCa }, profile, clock: fixedClock(later), random: systemRandom });
    const publicKeySpki = unitSpki("P-256");
    const certificateSerial = newCertificateSerial(systemRandom);
    const fromClock = await issuer.issue({ publicKeySpki, serial: "RT-000123", certificateSerial });
    const slow = await issueIdevid({ issuer: { signer, certificate: certs.factoryCa }, publicKeySpki, serial: "RT-000123", ...profile, clock: fixedClock(later), random: systemRandom, certificateSerial });
    expect(Buffer.from(fromClock.der).equals(Buffer.from(slow.rawData))).toBe(true);
    expect(fromClock.certificate.notBefore.toISOString()).toBe("2051-06-30T23:59:58.000Z");
    const given = await issuer.issue({ publicKeySpki, serial: "RT-000123", notBefore: issuedAt });
    expect(given.certificate.notBefore.toISOString()).toBe(issuedAt.toISOString());
    expect(given.certificateSerial).toMatch(/^[4-7][0-9a-f]{31}$/);
  });

  it("issues many units at once for a kind of key it has no template for yet", async () => {
    const signer = sameSignatureTwice(caSigner);
    const issuer = new IdevidIssuer({ issuer: { signer, certificate: certs.factoryCa }, profile, clock: fixedClock(issuedAt), random: systemRandom });
    const units = Array.from({ length: 8 }, (_, i) => ({ publicKeySpki: unitSpki("P-384"), serial: `CC-${i}`, certificateSerial: newCertificateSerial(systemRandom) }));
    const issued = await Promise.all(units.map((u) => issuer.issue(u)));
    for (const [i, u] of units.entries()) {
      const slow = await issueIdevid({ issuer: { signer, certificate: certs.factoryCa }, ...u, ...profile, clock: fixedClock(issuedAt), random: systemRandom });
      expect(Buffer.from(issued[i]!.der).equals(Buffer.from(slow.rawData))).toBe(true);
    }
  });

  it("issues an IDevID that openssl verifies against the root and factory CA, with the serial in the hardwareModuleName SAN", async () => {
    const issuer = new IdevidIssuer({ issuer: { signer: caSigner, certificate: certs.factoryCa }, profile, clock: fixedClock(issuedAt), random: systemRandom });
    const cert = await issuer.issue({ publicKeySpki: unitSpki("P-256"), serial: "SN-000042", certificateSerial: newCertificateSerial(systemRandom) });
    const files = { root: join(s.dir, "root.pem"), ca: join(s.dir, "factory-ca.pem"), cert: join(s.dir, "unit.pem") };
    writeFileSync(files.root, certs.root.toString("pem") + "\n");
    writeFileSync(files.ca, certs.factoryCa.toString("pem") + "\n");
    writeFileSync(files.cert, cert.pem + "\n");
    const v = openssl(["verify", "-attime", String(issuedAt.getTime() / 1000 + 60), "-CAfile", files.root, "-untrusted", files.ca, files.cert]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toBe(`${files.cert}: OK\n`);

    const dump = openssl(["asn1parse", "-in", files.cert]).stdout.split("\n");
    const sanAt = dump.findIndex((l) => l.includes("X509v3 Subject Alternative Name"));
    expect(sanAt).toBeGreaterThan(0);
    const sanValue = /^\s*(\d+):/.exec(dump[sanAt + 1]!)![1]!;
    const san = openssl(["asn1parse", "-in", files.cert, "-strparse", sanValue]).stdout;
    expect(san).toMatch(/OBJECT\s+:1\.3\.6\.1\.5\.5\.7\.8\.4/);
    expect(san).toContain(`OBJECT            :${profile.hwTypeOid}`);
    expect(san).toContain("OCTET STRING      :SN-000042");
    expect(readHardwareModuleName(cert.certificate)).toEqual({ hwType: profile.hwTypeOid, hwSerialNum: "SN-000042" });
  });

  it("keeps the profile's rules: serial syntax, certificate serial shape, a DER key; nothing reaches the HSM when refused", async () => {
    const signer = sameSignatureTwice(caSigner);
    const issuer = new IdevidIssuer({ issuer: { signer, certificate: certs.factoryCa }, profile, clock: fixedClock(issuedAt), random: systemRandom });
    const publicKeySpki = unitSpki("P-256");
    await expect(issuer.issue({ publicKeySpki, serial: "SN 1/../x" })).rejects.toMatchObject({ code: "SERIAL_SYNTAX" });
    await expect(issuer.issue({ publicKeySpki, serial: "SN1", certificateSerial: "00".repeat(16) })).rejects.toMatchObject({ code: "PROFILE_VIOLATION" });
    // The same key with a BER length (0x81 0x59 for 0x59): it cannot come out of a certificate as it went in.
    const ber = new Uint8Array([publicKeySpki[0]!, 0x81, ...publicKeySpki.subarray(1)]);
    await expect(issuer.issue({ publicKeySpki: ber, serial: "SN1" })).rejects.toMatchObject({ code: "CSR_KEY_REFUSED" });
    expect(signer.calls).toBe(0);
  });
});
