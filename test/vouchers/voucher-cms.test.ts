import { describe, expect, it } from "vitest";
import { CmsSigner, VOUCHER_CONTENT_TYPE, openVoucher, voucherJson } from "../../cms/index.js";
import { isIdmintError, systemClock, systemRandom } from "../../core/index.js";
import { issueEndEntity, issueRoot } from "../../pki/index.js";
import { softSigner } from "../fixtures/pki-fixture.js";

/** A voucher signed by a software MASA key under a software root: the CMS code alone, no HSM. */
async function softVoucher() {
  const rootKey = softSigner("EC-P384");
  const root = await issueRoot({ signer: rootKey, subject: { organization: "V", commonName: "V Root" }, clock: systemClock, random: systemRandom });
  const masaKey = softSigner();
  const masa = await issueEndEntity({ purpose: "masa", issuer: { signer: rootKey, certificate: root }, publicKeySpki: masaKey.publicKeySpki, subject: { organization: "V", commonName: "V MASA" }, clock: systemClock, random: systemRandom });
  const content = voucherJson({ createdOn: "2026-12-01T00:00:00Z", assertion: "verified", serialNumber: "SN000001", pinnedDomainCert: Buffer.from(masa.rawData).toString("base64") });
  const der = await new CmsSigner(masaKey, [new Uint8Array(masa.rawData)]).sign(VOUCHER_CONTENT_TYPE, content, new Date());
  return { root, der };
}

describe("a voucher's CMS", () => {
  it("a change to any byte (every third, to stay quick) is refused as input (exit 3) or as not verifying (exit 6), never a bug", async () => {
    const { root, der } = await softVoucher();
    await expect(openVoucher(der, { root, at: new Date(), serial: "SN000001", what: "v" })).resolves.toMatchObject({ voucher: { serialNumber: "SN000001" } });
    const kinds = new Set<string>();
    const passed: number[] = [];
    for (let i = 0; i < der.length; i += 3) {
      const bad = new Uint8Array(der);
      bad[i]! ^= 0x5a;
      const e = await openVoucher(bad, { root, at: new Date(), serial: "SN000001", what: "v" }).then(
        () => undefined,
        (err: unknown) => err,
      );
      if (e === undefined) {
        passed.push(i);
        continue;
      }
      expect(isIdmintError(e) && ["input", "verify"].includes(e.kind), `byte ${i}: ${String(e)}`).toBe(true);
      kinds.add((e as { kind: string }).kind);
    }
    expect(passed).toEqual([]);
    expect([...kinds].sort()).toEqual(["input", "verify"]);
  });
});
