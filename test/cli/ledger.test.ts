import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Home, openDb, systemClock } from "../../core/index.js";
import { Hsm } from "../../hsm/index.js";
import { Ledger, hashLeaf, signCheckpoint, stationOrigin, type LedgerEvent } from "../../ledger/index.js";
import { idmint, idmintInProcess, oneLineError, openssl, scratch, type Run } from "../helpers.js";

const s = scratch("cli-ledger");
const homeDir = join(s.dir, "home");
const home = new Home(homeDir);
const pristine = join(s.dir, "pristine.db");
// A second vendor home, with its own root and no ledger.
const otherHome = join(s.dir, "other-home");
const cli = (...args: string[]): Promise<Run> => idmintInProcess(["--home", homeDir, ...args]);
const binary = (...args: string[]): Run => idmint(["--home", homeDir, ...args]);
const origin = stationOrigin("station-1");
let foreignNote = "";

const event = (i: number): LedgerEvent => ({ type: "serial.reserved", serial: `SN${String(i).padStart(6, "0")}`, allocationId: "alloc-1" });

beforeAll(async () => {
  for (const h of [homeDir, otherHome]) {
    for (const args of [["hsm", "init"], ["ca", "init"]]) {
      const r = await idmintInProcess(["--home", h, ...args]);
      if (r.code !== 0) throw new Error(r.stderr);
    }
  }
  const config = home.readConfig();
  const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
  const db = openDb(home.stationDbPath);
  try {
    const ledger = new Ledger(db, systemClock);
    const signer = hsm.signer(config.keys.station);
    // 50 entries; checkpoint 1 covers 20, checkpoint 2 covers 40, 10 are not yet covered.
    for (let i = 0; i < 50; i++) {
      ledger.append(event(i));
      if (i === 19 || i === 39) await ledger.checkpoint(signer, origin);
    }
    // A real HSM key that is not this station's: what a rogue station would sign with.
    const rogue = hsm.createKey(config.keys.station.replace("object=station-key", "object=rogue-station-key"), "EC-P256");
    foreignNote = await signCheckpoint({ origin, size: 50, root: hashLeaf(new Uint8Array(0)) }, rogue);
  } finally {
    db.close();
    hsm.close();
  }
  copyFileSync(home.stationDbPath, pristine);
});
afterAll(() => s.cleanup());

/** Restores the untouched ledger, applies one tampering with plain SQL, and runs `ledger verify`. */
async function tamper(sql: (db: Database.Database) => void, run: (...args: string[]) => Run | Promise<Run> = cli): Promise<Run> {
  copyFileSync(pristine, home.stationDbPath);
  const db = new Database(home.stationDbPath);
  sql(db);
  db.close();
  return run("ledger", "verify");
}

function flipByte(db: Database.Database, idx: number, rehash: boolean): void {
  const body = db.prepare("SELECT body FROM ledger_entries WHERE idx = ?").pluck().get(idx) as Buffer;
  const at = body.length - 5;
  body[at] = body[at]! ^ 0x01;
  db.prepare("UPDATE ledger_entries SET body = ? WHERE idx = ?").run(body, idx);
  if (rehash) db.prepare("UPDATE ledger_entries SET leaf_hash = ? WHERE idx = ?").run(Buffer.from(hashLeaf(body)), idx);
}

describe("idmint ledger verify", () => {
  it("passes on the untouched ledger and reports what is covered", async () => {
    const r = await tamper(() => undefined);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/50 entries, 2 checkpoints, all verified/);
    expect(r.stdout).toMatch(/10 entries after the latest checkpoint/);
    const j = await cli("ledger", "verify", "--json");
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: true, entries: 50, checkpoints: 2, uncovered: 10, latestCheckpoint: { id: 2, size: 40 } });
  });

  for (const idx of [0, 7, 19, 33, 49]) {
    it(`names entry ${idx} when one byte of it changed`, async () => {
      const r = await tamper((db) => flipByte(db, idx, false));
      expect(r.code).toBe(6);
      expect(oneLineError(r)).toMatch(new RegExp(`entry ${idx} was changed`));
    });
  }

  it("names the checkpoint when a changed entry's stored hash was rewritten too", async () => {
    const r = await tamper((db) => flipByte(db, 7, true));
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/checkpoint 1 \(size 20\) does not match the entries/);
  });

  // The real binary, for its contract: the exit code and one "idmint: ..." line, no stack trace.
  it("names a deleted entry", async () => {
    const r = await tamper((db) => db.prepare("DELETE FROM ledger_entries WHERE idx = 12").run(), binary);
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/entry 12 is missing/);
  });

  it("names two swapped entries", async () => {
    const r = await tamper((db) => {
      const rows = db.prepare("SELECT idx, body, leaf_hash FROM ledger_entries WHERE idx IN (3, 4) ORDER BY idx").all() as Array<{ idx: number; body: Buffer; leaf_hash: Buffer }>;
      const put = db.prepare("UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = ?");
      put.run(rows[1]!.body, rows[1]!.leaf_hash, 3);
      put.run(rows[0]!.body, rows[0]!.leaf_hash, 4);
    });
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/entry 3 says it is entry 4/);
  });

  it("names the checkpoint when the tail was cut after it", async () => {
    const r = await tamper((db) => db.prepare("DELETE FROM ledger_entries WHERE idx >= 30").run());
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/checkpoint 2 covers 40 entries but the ledger holds only 30/);
  });

  it("names a checkpoint whose signature was replaced", async () => {
    const r = await tamper((db) => {
      const note = db.prepare("SELECT note FROM ledger_checkpoints WHERE id = 1").pluck().get() as string;
      const [text, line] = note.split("\n\n") as [string, string];
      const sig = Buffer.from(line.trim().split(" ")[2]!, "base64");
      sig[sig.length - 2] = sig[sig.length - 2]! ^ 0x40;
      db.prepare("UPDATE ledger_checkpoints SET note = ? WHERE id = 1").run(`${text}\n\n\u2014 ${origin} ${sig.toString("base64")}\n`);
    });
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/checkpoint 1: the checkpoint signature by the station key does not verify/);
  });

  it("names a checkpoint signed by another station's key", async () => {
    const r = await tamper((db) => db.prepare("INSERT INTO ledger_checkpoints (size, root, note, frontier, created_at) VALUES (50, ?, ?, '{}', 'now')").run(Buffer.alloc(32), foreignNote));
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/checkpoint 3: the checkpoint carries no signature by the station key/);
  });

  it("says so, in JSON too, when there is no ledger", async () => {
    const r = await idmintInProcess(["--home", otherHome, "ledger", "verify", "--json"]);
    expect(r.code).toBe(5);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { code: "NO_LEDGER" } });
  });
});

describe("idmint ledger checkpoint, prove and verify-proof", () => {
  it("proves a unit's issued certificate with only root.pem, and refuses a tampered proof or another root", async () => {
    copyFileSync(pristine, home.stationDbPath);
    const key = join(s.dir, "u.key");
    const csr = join(s.dir, "u.csr");
    const req = openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", "/serialNumber=SN777777", "-out", csr]);
    expect(req.code, req.stderr).toBe(0);
    // A lab unit (this home imported no allocation): entries 50-53 are its declaration, intent, issue and delivery.
    expect((await cli("ca", "issue", "--csr", csr, "--serial", "SN777777", "--out", join(s.dir, "u.pem"), "--outside-allocation", "--reason", "ledger test")).code).toBe(0);

    const before = await cli("ledger", "prove", "--serial", "SN777777");
    expect(before.code).toBe(5);
    expect(oneLineError(before)).toMatch(/newer than the latest checkpoint.*idmint ledger checkpoint/);

    const cp = await cli("ledger", "checkpoint", "--json");
    expect(cp.code, cp.stderr).toBe(0);
    expect(JSON.parse(cp.stdout)).toMatchObject({ id: 3, size: 54 });

    const proofPath = join(s.dir, "proof.json");
    // An --out under a regular file, or one that exists: one line, exit 3, nothing written.
    const underFile = await cli("ledger", "prove", "--serial", "SN777777", "--out", join(csr, "proof.json"));
    expect(underFile.code).toBe(3);
    expect(oneLineError(underFile)).toMatch(/--out .*proof\.json cannot be written \(part of its path is a file, not a directory\)/);
    const existing = await cli("ledger", "prove", "--serial", "SN777777", "--out", csr);
    expect(existing.code).toBe(3);
    expect(oneLineError(existing)).toMatch(/already exists/);
    expect((await cli("ledger", "prove", "--serial", "SN777777", "--out", proofPath)).code).toBe(0);
    const ok = await idmintInProcess(["ledger", "verify-proof", "--proof", proofPath, "--root", join(homeDir, "pki", "root.pem"), "--json"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, index: 52, checkpointSize: 54, entry: { event: { type: "certificate.issued", serial: "SN777777" } } });

    const bundle = JSON.parse(readFileSync(proofPath, "utf8"));
    const forged = join(s.dir, "forged.json");
    const body = Buffer.from(bundle.entry, "base64").toString("utf8").replace("SN777777", "SN777778");
    writeFileSync(forged, JSON.stringify({ ...bundle, entry: Buffer.from(body).toString("base64") }));
    const bad = await idmintInProcess(["ledger", "verify-proof", "--proof", forged, "--root", join(homeDir, "pki", "root.pem")]);
    expect(bad.code).toBe(6);
    expect(oneLineError(bad)).toMatch(/entry 52 is not in the checkpoint of size 54/);

    const otherRoot = join(otherHome, "pki", "root.pem");
    const wrongRoot = await idmintInProcess(["ledger", "verify-proof", "--proof", proofPath, "--root", otherRoot]);
    expect(wrongRoot.code).toBe(6);
    expect(oneLineError(wrongRoot)).toMatch(/does not chain to the vendor root/);

    const unknown = await cli("ledger", "prove", "--serial", "SN000404");
    expect(unknown.code).toBe(3);
    expect(oneLineError(unknown)).toMatch(/no certificate for serial SN000404/);
  });

  it("has help with an example for each ledger command", async () => {
    for (const cmd of ["verify", "checkpoint", "prove", "verify-proof"]) {
      const r = await idmintInProcess(["ledger", cmd, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Examples:/);
    }
  });
});
