import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPublicKey } from "node:crypto";
import { statSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { sha256Hex } from "../../core/index.js";
import { checkCsr, x509 } from "../../pki/index.js";
import { MAX_FRAME_BYTES, TcpFixture, type UnitLink } from "../../link/index.js";
import { readSoftUnitKey, readUnitRecord, unitsDbPath } from "../../device/index.js";
import { UnitSimulator } from "../../sim/index.js";
import { openssl, scratch } from "../helpers.js";
import { makePki, softSigner, type TestPki } from "../fixtures/pki-fixture.js";

const unhandled: unknown[] = [];
process.on("unhandledRejection", (e) => unhandled.push(e));

const s = scratch("units-sim");
const unitsDir = join(s.dir, "units");
let pki: TestPki;
let sim: UnitSimulator;
let fixture: TcpFixture;

beforeAll(async () => {
  pki = await makePki();
  sim = await UnitSimulator.start({ unitsDir, root: pki.rootPem, count: 4, prefix: "SN", start: 41, model: "Router X1", firmware: "1.2.3" });
  fixture = new TcpFixture(sim.host, sim.port, { timeoutMs: 5000 });
});

afterAll(async () => {
  await sim?.close();
  s.cleanup();
  expect(unhandled).toEqual([]);
});

const spkiOf = (csrPem: string) => new Uint8Array(new x509.Pkcs10CertificateRequest(csrPem).publicKey.rawData);

async function nextUnit(): Promise<UnitLink> {
  const link = await fixture.next();
  if (!link) throw new Error("the fixture ran out of units");
  return link;
}

describe("UnitSimulator + TcpFixture", () => {
  it("provisions three units end to end: hello, genkey, checkCsr, install, status, the unit's flash", async () => {
    const fingerprints: string[] = [];
    for (const [i, alg] of (["EC-P256", "RSA-2048", "EC-P256"] as const).entries()) {
      const link = await nextUnit();
      const serial = `SN0000${41 + i}`;
      expect(await link.hello()).toEqual({ serial, model: "Router X1", hwType: "1.3.6.1.4.1.32473.1.1", firmware: "1.2.3", protocol: 1, ops: ["hello", "genkey", "install", "status", "next"] });
      expect(await link.status()).toEqual({ serial, state: "new" });

      const { csr } = await link.genkey(alg);
      const checked = await checkCsr(csr, serial);
      expect(checked.keyType).toBe(alg);
      expect(await link.status()).toEqual({ serial, state: "keyed" });

      const cert = await pki.issue(checked.publicKeySpki, serial);
      const { fingerprint } = await link.install(cert.toString("pem"), pki.chainPems);
      expect(fingerprint).toBe(sha256Hex(new Uint8Array(cert.rawData)));
      expect(await link.status()).toEqual({ serial, state: "provisioned", fingerprint });
      fingerprints.push(fingerprint);

      // The unit's flash (units.db, 0600): the key is the CSR's key; the certificate and chain are what was installed.
      expect(statSync(unitsDbPath(unitsDir)).mode & 0o777).toBe(0o600);
      const key = readSoftUnitKey(unitsDir, serial);
      expect(Buffer.from(createPublicKey(key).export({ type: "spki", format: "der" }))).toEqual(Buffer.from(checked.publicKeySpki));
      const record = readUnitRecord(unitsDir, serial)!;
      expect(record).toMatchObject({ serial, state: "provisioned", fingerprint, alg, key: { keystore: "soft" }, keyOwned: true, spki: Buffer.from(checked.publicKeySpki) });
      expect(new x509.X509Certificate(record.certificate!).equal(cert)).toBe(true);
      expect(new x509.X509Certificate(record.chain!).equal(pki.factoryCa)).toBe(true);

      // The real openssl agrees with the hand-made DER: the CSR verifies, the stored key is a sound key.
      writeFileSync(join(s.dir, `${serial}.csr`), csr);
      const req = openssl(["req", "-in", join(s.dir, `${serial}.csr`), "-noout", "-verify", "-subject"]);
      expect(req.code, req.stderr).toBe(0);
      expect(req.stdout + req.stderr).toMatch(/verify OK/i);
      expect(req.stdout).toContain(`serialNumber = ${serial}`);
      writeFileSync(join(s.dir, `${serial}.key`), key.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
      const pkey = openssl(["pkey", "-in", join(s.dir, `${serial}.key`), "-noout", "-check"]);
      expect(pkey.code, pkey.stderr).toBe(0);

      // A retried install of the same certificate answers the same; a new key is refused now.
      expect(await link.install(cert.toString("pem"), pki.chainPems)).toEqual({ fingerprint });
      await expect(link.genkey("EC-P256")).rejects.toMatchObject({ code: "UNIT_REFUSED", unitCode: "ALREADY_PROVISIONED" });
      await link.close();
    }
    expect(new Set(fingerprints).size).toBe(3);
  });

  it("refuses an install that chains to another root, certifies another key, or names another serial", async () => {
    const link = await nextUnit();
    const { serial } = await link.hello();
    expect(serial).toBe("SN000044");
    await expect(link.install(pki.chainPems[0]!, pki.chainPems)).rejects.toMatchObject({ code: "UNIT_REFUSED", unitCode: "NO_KEY" });
    const { csr } = await link.genkey("EC-P256");
    const spki = spkiOf(csr);

    const other = await makePki("Impostor");
    const foreign = await other.issue(spki, serial);
    const chain = link.install(foreign.toString("pem"), other.chainPems);
    await expect(chain).rejects.toMatchObject({ code: "UNIT_REFUSED", unitCode: "CHAIN_INVALID" });
    await expect(chain).rejects.toThrow(/unit SN000044 .*refused install: CHAIN_INVALID: .*vendor root/);

    // The same names as the vendor's, other keys: the remembered factory CA's key refuses it.
    const twin = await makePki();
    const forged = link.install((await twin.issue(spki, serial)).toString("pem"), pki.chainPems);
    await expect(forged).rejects.toMatchObject({ code: "UNIT_REFUSED", unitCode: "CHAIN_INVALID" });
    await expect(forged).rejects.toThrow(/no signature by the pinned root or a given CA/);

    const otherKey = await pki.issue(softSigner().publicKeySpki, serial);
    await expect(link.install(otherKey.toString("pem"), pki.chainPems)).rejects.toMatchObject({ code: "UNIT_REFUSED", unitCode: "KEY_MISMATCH" });

    const otherSerial = await pki.issue(spki, "SN000099");
    await expect(link.install(otherSerial.toString("pem"), pki.chainPems)).rejects.toMatchObject({ code: "UNIT_REFUSED", unitCode: "SERIAL_MISMATCH" });

    await expect(link.install("not a certificate", pki.chainPems)).rejects.toMatchObject({ unitCode: "CERT_INVALID" });
    // None of that changed the unit, and the right certificate still goes in.
    expect(await link.status()).toEqual({ serial, state: "keyed" });
    const record = readUnitRecord(unitsDir, serial)!;
    expect(record.state).toBe("keyed");
    expect(record.certificate).toBeUndefined();
    const good = await pki.issue(spki, serial);
    expect((await link.install(good.toString("pem"), pki.chainPems)).fingerprint).toBe(sha256Hex(new Uint8Array(good.rawData)));
    await link.close();
  });

  it("says NO_MORE_UNITS after the last unit: next() resolves undefined, then and afterwards", async () => {
    expect(sim.served).toBe(4);
    expect(await fixture.next()).toBeUndefined();
    expect(await fixture.next()).toBeUndefined();
    // A raw client sees the protocol's end-of-line answer, then the close.
    const answer = await rawExchange(sim.port, frame({ v: 1, id: 7, op: "status" }));
    expect(answer.frames).toEqual([{ v: 1, id: 7, ok: false, error: { code: "NO_MORE_UNITS", message: "the fixture has no more units" } }]);
    expect(answer.closed).toBe(true);
  });
});

describe("a line given as a list of serials, and units that survive a restart", () => {
  it("serves the listed serials in order; wrong-serial names the next one on the list", async () => {
    const dir = join(s.dir, "listed");
    const listed = await UnitSimulator.start({ unitsDir: dir, root: pki.rootPem, serials: ["RT-7", "RT-3"], faults: [{ serial: "RT-3", fault: "wrong-serial" }] });
    try {
      const fx = new TcpFixture(listed.host, listed.port);
      const a = (await fx.next())!;
      expect((await a.hello()).serial).toBe("RT-7");
      const checked = await checkCsr((await a.genkey("EC-P256")).csr, "RT-7");
      const b = (await fx.next())!;
      await expect(checkCsr((await b.genkey("EC-P256")).csr, "RT-3")).rejects.toThrow(/serialNumber RT-7, not RT-3/);
      // A second genkey replaces the key in the unit's flash.
      const second = spkiOf((await b.genkey("EC-P256")).csr);
      expect(Buffer.from(createPublicKey(readSoftUnitKey(dir, "RT-3")).export({ type: "spki", format: "der" }))).toEqual(Buffer.from(second));
      expect(readUnitRecord(dir, "RT-3")!.spki).toEqual(Buffer.from(second));
      expect(await fx.next()).toBeUndefined();
      await Promise.all([a.close(), b.close()]);

      // The same units after a power cycle: RT-7 is still keyed with the same key and takes its certificate.
      await listed.close();
      const again = await UnitSimulator.start({ unitsDir: dir, root: pki.rootPem, serials: ["RT-7"] });
      try {
        const link = (await new TcpFixture(again.host, again.port).next())!;
        expect(await link.status()).toEqual({ serial: "RT-7", state: "keyed" });
        const cert = await pki.issue(checked.publicKeySpki, "RT-7");
        expect((await link.install(cert.toString("pem"), pki.chainPems)).fingerprint).toBe(sha256Hex(new Uint8Array(cert.rawData)));
        await link.close();
      } finally {
        await again.close();
      }
      // And after another: RT-7 is provisioned, takes the same certificate again, and keeps its key.
      const fingerprint = readUnitRecord(dir, "RT-7")!.fingerprint!;
      const third = await UnitSimulator.start({ unitsDir: dir, root: pki.rootPem, serials: ["RT-7"] });
      try {
        const link = (await new TcpFixture(third.host, third.port).next())!;
        expect(await link.status()).toEqual({ serial: "RT-7", state: "provisioned", fingerprint });
        expect(await link.install(readUnitRecord(dir, "RT-7")!.certificate!, pki.chainPems)).toEqual({ fingerprint });
        await expect(link.genkey("EC-P256")).rejects.toMatchObject({ unitCode: "ALREADY_PROVISIONED" });
        await link.close();
      } finally {
        await third.close();
      }
      // A unit whose row is damaged answers INTERNAL, naming the store.
      const db = new Database(unitsDbPath(dir));
      db.prepare("UPDATE units SET spki = NULL WHERE serial = 'RT-7'").run();
      db.close();
      const broken = await UnitSimulator.start({ unitsDir: dir, root: pki.rootPem, serials: ["RT-7"] });
      try {
        const link = (await new TcpFixture(broken.host, broken.port).next())!;
        await expect(link.hello()).rejects.toMatchObject({ code: "UNIT_REFUSED", unitCode: "INTERNAL", message: expect.stringMatching(/RT-7's row in .*units\.db names no usable key/) });
        await link.close();
      } finally {
        await broken.close();
      }
    } finally {
      await listed.close();
    }
  });

  it("a unit whose connection closes before it was asked anything but hello goes back to the line, once; one asked more does not", async () => {
    const line = await UnitSimulator.start({ unitsDir: join(s.dir, "back"), root: pki.rootPem, serials: ["B-1", "B-2", "B-3", "B-4"] });
    const hungUp = async () => {
      for (let i = 0; i < 200 && line.connections > 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(line.connections).toBe(0);
    };
    const serials = (r: { frames: Array<Record<string, unknown>> }) => r.frames.map((f) => (f.result as { serial: string }).serial);
    try {
      // B-1 is passed over by `next`; B-2 was seated behind it when the station hung up (a `next` behind a timed-out install).
      expect(serials(await rawExchange(line.port, Buffer.concat([frame({ v: 1, id: 1, op: "hello" }), frame({ v: 1, id: 2, op: "next" })]), 2))).toEqual(["B-1", "B-2"]);
      await hungUp();
      // B-2 comes first again; hung up on a second time, it is not tried a third.
      expect(serials(await rawExchange(line.port, Buffer.concat([frame({ v: 1, id: 1, op: "hello" }), frame({ v: 1, id: 2, op: "hello" })]), 2))).toEqual(["B-2", "B-2"]);
      await hungUp();
      // B-3 is asked for a key, so it was seen: dropped with its connection, it stays dropped.
      const fx = new TcpFixture(line.host, line.port, { timeoutMs: 5000 });
      const b3 = (await fx.next())!;
      expect((await b3.hello()).serial).toBe("B-3");
      await b3.genkey("EC-P256");
      await b3.close();
      await fx.close();
      await hungUp();
      const again = new TcpFixture(line.host, line.port, { timeoutMs: 5000 });
      const b4 = (await again.next())!;
      expect((await b4.hello()).serial).toBe("B-4");
      await b4.close();
      expect(await again.next()).toBeUndefined();
    } finally {
      await line.close();
    }
  });

  it("duplicate-key copies the key of the unit provisioned last, one the station has seen, not a key still in flight", async () => {
    const dup = await UnitSimulator.start({ unitsDir: join(s.dir, "dup"), root: pki.rootPem, serials: ["D-1", "D-2", "D-3"], faults: [{ serial: "D-3", fault: "duplicate-key" }] });
    try {
      const fx = new TcpFixture(dup.host, dup.port);
      const [a, b, c] = [(await fx.next())!, (await fx.next())!, (await fx.next())!];
      const first = await checkCsr((await a.genkey("EC-P256")).csr, "D-1");
      await a.install((await pki.issue(first.publicKeySpki, "D-1")).toString("pem"), pki.chainPems);
      const inFlight = spkiOf((await b.genkey("EC-P256")).csr);
      const copied = spkiOf((await c.genkey("EC-P256")).csr);
      expect(Buffer.from(copied)).toEqual(Buffer.from(first.publicKeySpki));
      expect(Buffer.from(copied)).not.toEqual(Buffer.from(inFlight));
      expect(readUnitRecord(join(s.dir, "dup"), "D-3")).toMatchObject({ keyOwned: false });
      await Promise.all([a.close(), b.close(), c.close()]);
    } finally {
      await dup.close();
    }
  });

  it("after its factory CA is proven, a unit still checks validity at its clock, and refuses with checkChain's reason", async () => {
    let at: Date | undefined;
    const timed = await UnitSimulator.start({ unitsDir: join(s.dir, "timed"), root: pki.rootPem, serials: ["T-1", "T-2"], clock: { now: () => at ?? new Date() } });
    try {
      const fx = new TcpFixture(timed.host, timed.port);
      const install = async (serial: string) => {
        const link = (await fx.next())!;
        const { publicKeySpki } = await checkCsr((await link.genkey("EC-P256")).csr, serial);
        try {
          return await link.install((await pki.issue(publicKeySpki, serial)).toString("pem"), pki.chainPems);
        } finally {
          await link.close();
        }
      };
      expect((await install("T-1")).fingerprint).toMatch(/^[0-9a-f]{64}$/);
      at = new Date("2000-01-01T00:00:00Z");
      await expect(install("T-2")).rejects.toMatchObject({ unitCode: "CHAIN_INVALID", message: expect.stringMatching(/CN=T-2.* is not valid at 2000-01-01T00:00:00\.000Z/) });
      expect(readUnitRecord(join(s.dir, "timed"), "T-2")).toMatchObject({ state: "keyed" });
    } finally {
      await timed.close();
    }
  });

  it("refuses a list with duplicates, bad syntax or serials that are not PrintableStrings", async () => {
    const base = { unitsDir: join(s.dir, "bad-list"), root: pki.rootPem };
    await expect(UnitSimulator.start({ ...base, serials: ["A1", "A1"] })).rejects.toThrow(/A1 is on the line twice/);
    await expect(UnitSimulator.start({ ...base, serials: ["A_1"] })).rejects.toThrow(/serial "A_1" is not valid.*PrintableString/);
    await expect(UnitSimulator.start({ ...base, serials: ["../x"] })).rejects.toMatchObject({ code: "SIM_OPTIONS" });
    await expect(UnitSimulator.start({ ...base, serials: [] })).rejects.toThrow(/1 to 1000000 serials/);
  });
});

describe("the simulator treats every frame as hostile", () => {
  let guarded: UnitSimulator;
  beforeAll(async () => {
    guarded = await UnitSimulator.start({ unitsDir: join(s.dir, "guarded"), root: pki.rootPem, count: 10, prefix: "G", start: 1 });
  });
  afterAll(() => guarded?.close());

  it("drops a connection that announces a frame over 64 KiB, without answering", async () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME_BYTES + 1);
    const r = await rawExchange(guarded.port, header);
    expect(r).toEqual({ frames: [], closed: true });
  });

  it("drops non-JSON, non-object and id-less frames; refuses bad versions, ops and arguments with a code", async () => {
    for (const bad of [Buffer.from("\x00\x00\x00\x05hello"), frame([1, 2]), frame({ v: 1, op: "hello" }), frame({ v: 1, id: -1, op: "hello" })]) {
      expect(await rawExchange(guarded.port, bad)).toEqual({ frames: [], closed: true });
    }
    const r = await rawExchange(
      guarded.port,
      Buffer.concat([
        frame({ v: 2, id: 1, op: "hello" }),
        frame({ v: 1, id: 2, op: "reboot" }),
        frame({ v: 1, id: 3, op: "genkey", alg: "EC-P192" }),
        frame({ v: 1, id: 4, op: "install", certificate: 42, chain: [] }),
        frame({ v: 1, id: 5, op: "install", certificate: "x", chain: ["a", "b", "c", "d", "e"] }),
        frame({ v: 1, id: 6, op: "hello", extra: "ignored" }),
      ]),
      6,
    );
    expect(r.frames.map((f) => (f.ok ? "ok" : (f.error as { code: string }).code))).toEqual([
      "UNSUPPORTED_VERSION",
      "UNKNOWN_OP",
      "UNSUPPORTED_ALG",
      "BAD_REQUEST",
      "BAD_REQUEST",
      "ok",
    ]);
    expect(r.frames.map((f) => f.id)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("drops a peer that queues more than 16 requests at once", async () => {
    const many = Buffer.concat(Array.from({ length: 40 }, (_, i) => frame({ v: 1, id: i, op: "status" })));
    const r = await rawExchange(guarded.port, many);
    expect(r.closed).toBe(true);
    expect(r.frames.length).toBeLessThan(40);
  });

  it("refuses bad options with one-line errors", async () => {
    const base = { unitsDir: join(s.dir, "opts"), root: pki.rootPem, count: 2, prefix: "SN", start: 1 };
    await expect(UnitSimulator.start({ ...base, count: 0 })).rejects.toThrow(/count 0 is out of range/);
    await expect(UnitSimulator.start({ ...base, start: 999_999, width: 6 })).rejects.toThrow(/need more than 6 digits/);
    await expect(UnitSimulator.start({ ...base, prefix: "S_N" })).rejects.toThrow(/prefix "S_N" is not valid/);
    await expect(UnitSimulator.start({ ...base, faults: [{ serial: "SN000009", fault: "slow" }] })).rejects.toThrow(/does not serve \(SN000001 to SN000002\)/);
    await expect(UnitSimulator.start({ ...base, root: "not a certificate" })).rejects.toMatchObject({ code: "CERT_INVALID" });
    const leaf = await pki.issue(softSigner().publicKeySpki, "SN000001");
    await expect(UnitSimulator.start({ ...base, root: leaf.toString("pem") })).rejects.toThrow(/is not a CA certificate/);
    await expect(UnitSimulator.start({ ...base, port: guarded.port })).rejects.toMatchObject({ code: "SIM_LISTEN", message: expect.stringMatching(/in use/) });
  });
});

function frame(message: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(message));
  const header = Buffer.alloc(4);
  header.writeUInt32BE(json.length);
  return Buffer.concat([header, json]);
}

/** Sends raw bytes; collects answer frames until `want` arrived or the unit closed (2 s at most). */
function rawExchange(port: number, bytes: Buffer, want = 1): Promise<{ frames: Array<Record<string, unknown>>; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let buffered = Buffer.alloc(0);
    const frames: Array<Record<string, unknown>> = [];
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ frames, closed });
    };
    const timer = setTimeout(() => finish(false), 2000);
    socket.on("connect", () => socket.write(bytes));
    socket.on("data", (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) {
        const n = buffered.readUInt32BE(0);
        frames.push(JSON.parse(buffered.subarray(4, 4 + n).toString("utf8")));
        buffered = buffered.subarray(4 + n);
      }
      if (frames.length >= want && want > 1) finish(false);
    });
    socket.on("error", () => {});
    socket.on("close", () => finish(true));
    socket.on("timeout", reject);
  });
}
