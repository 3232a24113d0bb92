import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync, sign as nodeSign } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Home, fixedClock, openDb, type Db } from "../../core/index.js";
import { Hsm, initEmbeddedHsm, type Signer } from "../../hsm/index.js";
import { Ledger, decodeEntry, encodeEntry, noteKeyId, openCheckpoint, proveEntry, signCheckpoint, stationOrigin, verifyBundle, verifyLedger, type LedgerEvent } from "../../ledger/index.js";
import { openssl, scratch } from "../helpers.js";

const s = scratch("ledger");
let hsm: Hsm;
let station: Signer;
let db: Db;
let ledger: Ledger;
const origin = stationOrigin("line-1");
const clock = fixedClock(new Date("2026-11-23T12:00:00.000Z"));

const issued = (i: number): LedgerEvent => ({
  type: "certificate.issued",
  serial: `SN${String(i).padStart(6, "0")}`,
  certificateSerial: "4" + String(i).padStart(31, "0"),
  certificateFingerprint: "ab".repeat(32),
});

/** A software P-256 signer: another station's key, for the tests that must be refused. */
function softwareSigner(): Signer {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    algorithm: "EC-P256",
    hash: "SHA-256",
    publicKeySpki: new Uint8Array(publicKey.export({ type: "spki", format: "der" })),
    sign: async (data) => new Uint8Array(nodeSign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" })),
  };
}

beforeAll(() => {
  const home = new Home(join(s.dir, "home"));
  initEmbeddedHsm(home);
  const config = home.readConfig();
  hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
  station = hsm.createKey(config.keys.station, "EC-P256");
  db = openDb(join(s.dir, "station.db"));
  ledger = new Ledger(db, clock);
});

afterAll(() => {
  db?.close();
  hsm?.close();
  s.cleanup();
});

describe("ledger store", () => {
  it("runs SQLite in WAL with synchronous=FULL", () => {
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    // 2 = FULL: NORMAL (1) could lose acknowledged appends on power loss.
    expect(db.pragma("synchronous", { simple: true })).toBe(2);
  });

  it("appends entries with consecutive indices whose canonical bytes round-trip", () => {
    const a = ledger.append({ type: "serial.reserved", serial: "SN000000", allocationId: "alloc-1" });
    const b = ledger.appendMany([issued(1), issued(2), { type: "error", stage: "genkey", code: "UNIT_TIMEOUT", message: "unit did not answer" }]);
    expect([a.index, ...b.map((e) => e.index)]).toEqual([0, 1, 2, 3]);
    expect(ledger.size()).toBe(4);
    expect(ledger.entry(1)).toEqual({ index: 1, time: "2026-11-23T12:00:00.000Z", event: issued(1) });
    const body = ledger.entryBytes(1).toString("utf8");
    expect(body.split("\n")[0]).toBe("idmint-ledger/1 1 certificate.issued 2026-11-23T12:00:00.000Z");
    expect(body.split("\n")[1]).toBe(`{"certificateFingerprint":"${"ab".repeat(32)}","certificateSerial":"4${"0".repeat(30)}1","serial":"SN000001"}`);
    expect(ledger.findBySerial("SN000002", "certificate.issued")).toBe(2);
  });

  it("refuses entry bytes that are not exactly canonical", () => {
    const good = encodeEntry({ index: 5, time: "2026-11-23T12:00:00.000Z", event: issued(5) });
    expect(decodeEntry(good).index).toBe(5);
    const spaced = Buffer.from(good.toString("utf8").replace('{"', '{ "'));
    expect(() => decodeEntry(spaced)).toThrow(/not a well-formed/);
    expect(() => decodeEntry(Buffer.from("garbage"))).toThrow(/not a well-formed/);
  });

  it("signs checkpoints in the C2SP signed-note format with the station key in the HSM, and openssl agrees", async () => {
    const cp = await ledger.checkpoint(station, origin);
    expect(cp).toMatchObject({ id: 1, size: 4 });
    const [text, sigLine] = cp.note.split("\n\n");
    expect(text).toBe(`${origin}\n4\n${Buffer.from(cp.root).toString("base64")}`);
    const m = /^\u2014 (\S+) (\S+)\n$/.exec(sigLine!)!;
    expect(m[1]).toBe(origin);
    const sig = Buffer.from(m[2]!, "base64");
    expect(sig.subarray(0, 4)).toEqual(noteKeyId(station.publicKeySpki));
    expect(openCheckpoint(cp.note, origin, station.publicKeySpki)).toMatchObject({ origin, size: 4 });

    const dir = s.dir;
    writeFileSync(join(dir, "note.txt"), text + "\n");
    writeFileSync(join(dir, "note.sig"), sig.subarray(4));
    writeFileSync(join(dir, "station.spki"), station.publicKeySpki);
    const r = openssl(["dgst", "-sha256", "-verify", join(dir, "station.spki"), "-keyform", "DER", "-signature", join(dir, "note.sig"), join(dir, "note.txt")]);
    expect(r.stdout.trim(), r.stderr).toBe("Verified OK");
  });

  it("returns the latest checkpoint again when nothing was appended, and extends it when something was", async () => {
    expect((await ledger.checkpoint(station, origin)).id).toBe(1);
    ledger.appendMany([issued(4), issued(5), issued(6)]);
    const cp2 = await ledger.checkpoint(station, origin);
    expect(cp2).toMatchObject({ id: 2, size: 7 });
    expect(verifyLedger(db, { origin, spki: station.publicKeySpki })).toMatchObject({ entries: 7, checkpoints: 2, uncovered: 0 });
  });

  it("refuses a checkpoint signed by another key, or for another origin", async () => {
    const other = softwareSigner();
    const note = await signCheckpoint({ origin, size: 7, root: ledger.latestCheckpoint()!.root }, other);
    expect(() => openCheckpoint(note, origin, station.publicKeySpki)).toThrow(/no signature by the station key/);
    expect(() => openCheckpoint(ledger.latestCheckpoint()!.note, stationOrigin("line-2"), station.publicKeySpki)).toThrow(/not idmint.station\/line-2/);
    const flipped = ledger.latestCheckpoint()!.note.replace(/\n7\n/, "\n6\n");
    expect(() => openCheckpoint(flipped, origin, station.publicKeySpki)).toThrow(/does not verify/);
  });

  it("proves an entry's inclusion and refuses a tampered proof", () => {
    const bundle = proveEntry(ledger, 2, origin, "(certificate)");
    expect(verifyBundle(bundle, station.publicKeySpki).entry.event).toEqual(issued(2));
    const otherEntry = { ...bundle, entry: ledger.entryBytes(3).toString("base64") };
    expect(() => verifyBundle(otherEntry, station.publicKeySpki)).toThrow(/says it is entry 3/);
    const wrongPath = { ...bundle, proof: [...bundle.proof].reverse() };
    expect(() => verifyBundle(wrongPath, station.publicKeySpki)).toThrow(/not in the checkpoint/);
    ledger.append(issued(7));
    expect(() => proveEntry(ledger, 7, origin, "")).toThrow(/newer than the latest checkpoint/);
  });
});
