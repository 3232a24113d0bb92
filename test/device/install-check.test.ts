import { describe, expect, it, vi } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { sha256Hex } from "../../core/index.js";
import { x509 } from "../../pki/index.js";
import { InstallChecker, Refusal, type Installer } from "../../device/install-check.js";
import { makePki } from "../fixtures/pki-fixture.js";

function unitKey(): Buffer {
  return generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "der" });
}

/** The slow path's entry, watched: it must run only for a new CA or a failed short path. */
function watched(root: x509.X509Certificate) {
  const checker = new InstallChecker(root);
  const long = vi.spyOn(checker as unknown as { long: () => unknown }, "long");
  return { checker, long };
}

describe("the unit's install check", () => {
  it("checks a new factory CA the long way once, then later leaves the short way (asn1.js and node:crypto), storing the same plain PEM", async () => {
    const pki = await makePki();
    const { checker, long } = watched(pki.root);
    for (const [i, serial] of ["SN1", "SN2", "SN3"].entries()) {
      const unit: Installer = { serial, spki: unitKey() };
      const cert = await pki.issue(unit.spki, serial);
      const pem = cert.toString("pem");
      const offered = checker.offered(i === 2 ? pem.replace(/\n/g, "\r\n") : pem);
      expect(offered.fingerprint).toBe(sha256Hex(new Uint8Array(cert.rawData)));
      const accepted = await checker.check(offered, pki.chainPems, unit, new Date());
      expect(accepted.certificate).toBe(pem.trimEnd() + "\n");
      expect(new x509.X509Certificate(accepted.chain).equal(pki.factoryCa)).toBe(true);
      expect(long).toHaveBeenCalledTimes(1);
    }
  });

  it("takes every failure of the short path the long way, so refusals keep their codes and reasons", async () => {
    const pki = await makePki();
    const { checker, long } = watched(pki.root);
    const unit: Installer = { serial: "SN1", spki: unitKey() };
    await checker.check(checker.offered((await pki.issue(unit.spki, "SN1")).toString("pem")), pki.chainPems, unit, new Date());

    const refusal = async (cert: x509.X509Certificate, at = new Date()) => {
      const e = await checker.check(checker.offered(cert.toString("pem")), pki.chainPems, unit, at).catch((r: unknown) => r);
      expect(e).toBeInstanceOf(Refusal);
      return e as Refusal;
    };
    const twin = await makePki(); // the same names, other keys
    expect(await refusal(await twin.issue(unit.spki, "SN1"))).toMatchObject({ code: "CHAIN_INVALID", message: expect.stringMatching(/no signature by the pinned root or a given CA/) });
    expect(await refusal(await pki.issue(unitKey(), "SN1"))).toMatchObject({ code: "KEY_MISMATCH" });
    expect(await refusal(await pki.issue(unit.spki, "SN2"))).toMatchObject({ code: "SERIAL_MISMATCH", message: "the certificate's subject serialNumber is SN2, not SN1" });
    expect(await refusal(await pki.issue(unit.spki, "SN1"), new Date("2000-01-01T00:00:00Z"))).toMatchObject({ code: "CHAIN_INVALID", message: expect.stringMatching(/is not valid at 2000-01-01/) });
    expect(long).toHaveBeenCalledTimes(5);

    expect(() => checker.offered("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")).toThrow(Refusal);
    const garbage = checker.check(checker.offered((await pki.issue(unit.spki, "SN1")).toString("pem")), ["not a certificate"], unit, new Date());
    await expect(garbage).rejects.toMatchObject({ code: "CERT_INVALID", message: "chain[0] is not an X.509 certificate in PEM" });
  });
});
