import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { checkCsr, x509 } from "../../pki/index.js";
import { TcpFixture, type UnitLink } from "../../link/index.js";
import { UnitSimulator, parseFaultSpec } from "../../sim/index.js";
import { scratch } from "../helpers.js";
import { makePki } from "../fixtures/pki-fixture.js";

const unhandled: unknown[] = [];
process.on("unhandledRejection", (e) => unhandled.push(e));

const s = scratch("units-faults");
let sim: UnitSimulator;
let fixture: TcpFixture;
const links: UnitLink[] = [];

beforeAll(async () => {
  const pki = await makePki();
  sim = await UnitSimulator.start({
    unitsDir: join(s.dir, "units"),
    root: pki.rootPem,
    count: 8,
    prefix: "F",
    start: 1,
    width: 3,
    slowMs: 400,
    faults: ["F002=duplicate-key", "F003=bad-csr-signature", "F004=wrong-serial", "F005=disconnect", "F006=garbage", "F007=slow", "F008=slow"].map(parseFaultSpec),
  });
  fixture = new TcpFixture(sim.host, sim.port, { timeoutMs: 2000 });
});

afterAll(async () => {
  await Promise.all(links.map((l) => l.close()));
  await sim?.close();
  s.cleanup();
  expect(unhandled).toEqual([]);
});

async function next(fx = fixture): Promise<UnitLink> {
  const link = await fx.next();
  if (!link) throw new Error("no more units");
  links.push(link);
  return link;
}

const spki = (csr: string) => Buffer.from(new x509.Pkcs10CertificateRequest(csr).publicKey.rawData).toString("hex");

describe("each fault gives the station the outcome it must handle", () => {
  let previousSpki = "";

  it("F001 is a healthy unit", async () => {
    const link = await next();
    const { csr } = await link.genkey("EC-P256");
    previousSpki = Buffer.from((await checkCsr(csr, "F001")).publicKeySpki).toString("hex");
  });

  it("duplicate-key: the CSR is valid but carries the previous unit's public key", async () => {
    const link = await next();
    const { csr } = await link.genkey("EC-P256");
    const checked = await checkCsr(csr, "F002");
    expect(Buffer.from(checked.publicKeySpki).toString("hex")).toBe(previousSpki);
  });

  it("bad-csr-signature: checkCsr rejects with CSR_SIGNATURE", async () => {
    const { csr } = await (await next()).genkey("EC-P256");
    await expect(checkCsr(csr, "F003")).rejects.toMatchObject({ code: "CSR_SIGNATURE" });
  });

  it("wrong-serial: checkCsr rejects with CSR_SERIAL_MISMATCH", async () => {
    const { csr } = await (await next()).genkey("EC-P256");
    await expect(checkCsr(csr, "F004")).rejects.toMatchObject({ code: "CSR_SERIAL_MISMATCH", message: expect.stringContaining("serialNumber F005, not F004") });
    expect(spki(csr)).not.toBe(previousSpki);
  });

  it("disconnect: genkey rejects with UNIT_DISCONNECTED, and so does everything after", async () => {
    const link = await next();
    await expect(link.genkey("EC-P256")).rejects.toMatchObject({ code: "UNIT_DISCONNECTED", serial: "F005", message: expect.stringMatching(/unit F005 .*closed by the unit/) });
    await expect(link.status()).rejects.toMatchObject({ code: "UNIT_DISCONNECTED" });
  });

  it("garbage: genkey rejects with UNIT_PROTOCOL and the link is dropped", async () => {
    const link = await next();
    const outstanding = link.status();
    await expect(link.genkey("EC-P256")).rejects.toMatchObject({ code: "UNIT_PROTOCOL", message: expect.stringMatching(/unit F006 .*broke the link protocol \(a frame of \d+ bytes, over the 65536-byte limit\)/) });
    // The status asked before the garbage was answered; one asked after is refused at once.
    expect(await outstanding).toMatchObject({ serial: "F006" });
    await expect(link.status()).rejects.toMatchObject({ code: "UNIT_PROTOCOL" });
  });

  it("slow + a short timeout: UNIT_TIMEOUT, already on hello; the fixture still yields the unit's link", async () => {
    const impatient = new TcpFixture(sim.host, sim.port, { timeoutMs: 100 });
    const link = await next(impatient);
    await expect(link.hello()).rejects.toMatchObject({ code: "UNIT_TIMEOUT", message: expect.stringMatching(/did not answer hello within 100 ms/) });
    await expect(link.genkey("EC-P256")).rejects.toMatchObject({ code: "UNIT_TIMEOUT" });
    await link.close();
  });

  it("slow + a long enough timeout is merely slow", async () => {
    const started = Date.now();
    const link = await next();
    expect(await link.status()).toEqual({ serial: "F008", state: "new" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2 * 400 - 20);
  });
});

describe("faults are parsed strictly", () => {
  it("refuses specs that are not SERIAL=KIND with a known KIND", () => {
    expect(parseFaultSpec("SN000002=duplicate-key")).toEqual({ serial: "SN000002", fault: "duplicate-key" });
    expect(() => parseFaultSpec("SN000002")).toThrow(/is not SERIAL=KIND/);
    expect(() => parseFaultSpec("=slow")).toThrow(/is not SERIAL=KIND/);
    expect(() => parseFaultSpec("SN1=explode")).toThrow(/fault kind "explode" .* is unknown: use one of bad-csr-signature, wrong-serial/);
  });
});
