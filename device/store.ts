import { createPrivateKey, type KeyObject } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { isDamagedStore, migrate, openDb, type Db, type Migration } from "../core/index.js";
import { DeviceError } from "./errors.js";
import { UNIT_KEY_ALGORITHMS, UNIT_STATES, type UnitKeyAlgorithm, type UnitState } from "../link/index.js";

/** Which keystore holds a unit's key, and for a token, which object. */
export type KeyRef = { keystore: "soft" } | { keystore: "pkcs11"; object: string };

/** What a simulated unit keeps across a power cycle (its row in the units' flash, less the private key). */
export interface UnitRecord {
  serial: string;
  state: UnitState;
  alg?: UnitKeyAlgorithm;
  key?: KeyRef;
  /** False when the key is another unit's (the duplicate-key fault): never destroy it. */
  keyOwned?: boolean;
  /** DER SubjectPublicKeyInfo of the current key. */
  spki?: Buffer;
  /** The installed IDevID, PEM. */
  certificate?: string;
  /** The installed chain (factory CA ...), PEM. */
  chain?: string;
  /** SHA-256 hex of the installed certificate's DER. */
  fingerprint?: string;
}

export function unitsDbPath(unitsDir: string): string {
  return join(unitsDir, "units.db");
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    // pkcs8 holds a soft-keystore key (DER); a key in a token stays there, named by key_object.
    sql: `CREATE TABLE units (
      serial TEXT PRIMARY KEY,
      state TEXT NOT NULL,
      alg TEXT,
      keystore TEXT,
      key_object TEXT,
      key_owned INTEGER,
      spki BLOB,
      pkcs8 BLOB,
      certificate TEXT,
      chain TEXT,
      fingerprint TEXT
    )`,
  },
];

interface Row {
  serial: string;
  state: string;
  alg: string | null;
  keystore: string | null;
  key_object: string | null;
  key_owned: number | null;
  spki: Buffer | null;
  has_pkcs8: number;
  certificate: string | null;
  chain: string | null;
  fingerprint: string | null;
}

const COLUMNS = "serial, state, alg, keystore, key_object, key_owned, spki, pkcs8 IS NOT NULL AS has_pkcs8, certificate, chain, fingerprint";

/**
 * The simulated units' flash: one SQLite database, `<unitsDir>/units.db`, one row per unit.
 * A row is written whole by one statement (genkey, then install), so a killed simulator
 * leaves each unit as it was before or after a step, never half-way.
 */
export class UnitFlash {
  private readonly select;
  private readonly selectKey;
  private readonly keyed;
  private readonly provisioned;

  private constructor(
    private readonly db: Db,
    readonly path: string,
  ) {
    this.select = db.prepare<[string], Row>(`SELECT ${COLUMNS} FROM units WHERE serial = ?`);
    this.selectKey = db.prepare<[string], { pkcs8: Buffer | null }>("SELECT pkcs8 FROM units WHERE serial = ?");
    this.keyed = db.prepare(
      "INSERT OR REPLACE INTO units (serial, state, alg, keystore, key_object, key_owned, spki, pkcs8) VALUES (@serial, 'keyed', @alg, @keystore, @object, @owned, @spki, @pkcs8)",
    );
    this.provisioned = db.prepare("UPDATE units SET state = 'provisioned', certificate = @certificate, chain = @chain, fingerprint = @fingerprint WHERE serial = @serial");
  }

  /**
   * Opens (and makes) the units' flash. synchronous=NORMAL: this is the simulated units'
   * storage, not the station's record; in WAL mode a killed simulator process loses nothing,
   * only an OS crash or power cut could lose the last units' steps, and a commit costs a
   * seventh of FULL's on the bench's hot path.
   */
  static open(unitsDir: string): UnitFlash {
    const path = unitsDbPath(unitsDir);
    let db: Db | undefined;
    try {
      // Soft units' private keys live here: owner only.
      db = openDb(path, { synchronous: "NORMAL", mode: 0o600 });
      migrate(db, "units", MIGRATIONS);
      return new UnitFlash(db, path);
    } catch (e) {
      db?.close();
      if (isDamagedStore(e)) throw e;
      throw new DeviceError("UNIT_STATE", `the units' store ${path} cannot be used (${(e as Error).message.split("\n")[0]}): remove it to start every simulated unit afresh`, { cause: e });
    }
  }

  /** The units' flash of `unitsDir` if any unit was ever keyed there; undefined otherwise. */
  static openExisting(unitsDir: string): UnitFlash | undefined {
    return existsSync(unitsDbPath(unitsDir)) ? UnitFlash.open(unitsDir) : undefined;
  }

  /** The unit's record, if it has one; a row that is not a usable unit is UNIT_STATE. */
  read(serial: string): UnitRecord | undefined {
    const row = this.select.get(serial);
    if (!row) return undefined;
    const broken = (why: string) => new DeviceError("UNIT_STATE", `unit ${serial}'s row in ${this.path} ${why}: delete that row to start unit ${serial} afresh`);
    const state = row.state as UnitState;
    if (!UNIT_STATES.includes(state)) throw broken(`has state ${JSON.stringify(row.state)}, which is no unit state`);
    if (state === "new") return { serial, state };
    const key: KeyRef | undefined =
      row.keystore === "soft" && row.has_pkcs8 ? { keystore: "soft" } : row.keystore === "pkcs11" && row.key_object ? { keystore: "pkcs11", object: row.key_object } : undefined;
    if (!UNIT_KEY_ALGORITHMS.includes(row.alg as UnitKeyAlgorithm) || !key || !row.spki?.length) throw broken("names no usable key");
    const record: UnitRecord = { serial, state, alg: row.alg as UnitKeyAlgorithm, key, keyOwned: row.key_owned === 1, spki: row.spki };
    if (state === "keyed") return record;
    if (!row.certificate || !row.chain || !/^[0-9a-f]{64}$/.test(row.fingerprint ?? "")) throw broken("has no complete certificate");
    return { ...record, certificate: row.certificate, chain: row.chain, fingerprint: row.fingerprint! };
  }

  /** The unit's soft-keystore private key (PKCS#8 DER), if it has one. */
  softKey(serial: string): Buffer | undefined {
    return this.selectKey.get(serial)?.pkcs8 ?? undefined;
  }

  /** Records a new key: the unit is keyed, whatever it held before. */
  saveKey(r: { serial: string; alg: UnitKeyAlgorithm; key: KeyRef; keyOwned: boolean; spki: Buffer }, pkcs8: Buffer | undefined): void {
    this.keyed.run({
      serial: r.serial,
      alg: r.alg,
      keystore: r.key.keystore,
      object: r.key.keystore === "pkcs11" ? r.key.object : null,
      owned: r.keyOwned ? 1 : 0,
      spki: r.spki,
      pkcs8: pkcs8 ?? null,
    });
  }

  /** Records the installed certificate: the unit is provisioned. */
  saveInstall(r: { serial: string; certificate: string; chain: string; fingerprint: string }): void {
    this.provisioned.run(r);
  }

  close(): void {
    this.db.close();
  }
}

/** Runs `fn` on the units' flash of `unitsDir` (undefined if it has none) and closes it again. */
export function withUnitFlash<T>(unitsDir: string, fn: (flash: UnitFlash | undefined) => T): T {
  const flash = UnitFlash.openExisting(unitsDir);
  try {
    return fn(flash);
  } finally {
    flash?.close();
  }
}

/** A simulated unit's record, as the simulator keeps it between power cycles (for tests and tools). */
export function readUnitRecord(unitsDir: string, serial: string): UnitRecord | undefined {
  return withUnitFlash(unitsDir, (flash) => flash?.read(serial));
}

/** A soft-keystore unit's private key from its flash, or why there is none. */
export function softUnitKey(flash: UnitFlash, serial: string): KeyObject {
  const pkcs8 = flash.softKey(serial);
  if (!pkcs8) {
    throw new DeviceError("UNIT_STATE", `unit ${serial} has no key in ${flash.path}: it never generated a key, or its key is in a PKCS#11 token`);
  }
  try {
    return createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  } catch (e) {
    throw new DeviceError("UNIT_STATE", `unit ${serial}'s key in ${flash.path} is not a PKCS#8 private key: delete that row to start unit ${serial} afresh`, { cause: e });
  }
}

/**
 * A soft-keystore unit's private key, for tests and for device-side decryption (`unit
 * decrypt`). A unit in a PKCS#11 token has none here: its key cannot leave the token.
 */
export function readSoftUnitKey(unitsDir: string, serial: string): KeyObject {
  return withUnitFlash(unitsDir, (flash) => {
    if (!flash) throw new DeviceError("UNIT_STATE", `unit ${serial} has no key: there is no ${unitsDbPath(unitsDir)}, so no unit ever generated one there`);
    return softUnitKey(flash, serial);
  });
}
