import { createPrivateKey, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { UnitError } from "./errors.js";
import { UNIT_KEY_ALGORITHMS, UNIT_STATES, type UnitKeyAlgorithm, type UnitState } from "./protocol.js";

/** Where a simulated unit keeps its secure storage: one directory per serial under the units dir. */
export interface UnitFiles {
  dir: string;
  /** The private key, PKCS#8 PEM, mode 0600 (soft keystore only). */
  key: string;
  /** The installed IDevID, PEM. */
  cert: string;
  /** The installed chain (factory CA ...), PEM. */
  chain: string;
  /** StoredUnitState as JSON. */
  state: string;
}

export function unitFiles(unitsDir: string, serial: string): UnitFiles {
  const dir = join(unitsDir, serial);
  return { dir, key: join(dir, "key.pem"), cert: join(dir, "cert.pem"), chain: join(dir, "chain.pem"), state: join(dir, "state.json") };
}

/** Which keystore holds a unit's key, and for a token, which object. */
export type KeyRef = { keystore: "soft" } | { keystore: "pkcs11"; object: string };

/** A unit's state.json: what survives a power cycle of the simulated unit. */
export interface StoredUnitState {
  v: 1;
  serial: string;
  state: UnitState;
  alg?: UnitKeyAlgorithm;
  key?: KeyRef;
  /** False when the key is another unit's (the duplicate-key fault): never destroy it. */
  keyOwned?: boolean;
  /** DER SubjectPublicKeyInfo of the current key, base64. */
  spki?: string;
  /** SHA-256 hex of the installed certificate's DER. */
  fingerprint?: string;
}

/**
 * Replaces a file with new content via a temporary sibling and a rename: a reader or a
 * killed simulator sees the old file or the new one, never half of one. Not fsynced: this
 * is a simulator on the bench's hot path, not the station's store.
 */
export function replaceFile(path: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}

/**
 * Writes a file in place, for files that state.json (written after them, atomically)
 * commits: a kill half-way leaves a partial file that the unit's state does not vouch for
 * and that the next write replaces. Creating a file costs a fraction of create + rename on
 * journalling file systems (~240 µs against ~470 µs on the bench's ext4).
 */
export function writeCommittedLater(path: string, data: string | Uint8Array, mode = 0o644): void {
  writeFileSync(path, data, { mode });
}

export function ensureUnitDir(files: UnitFiles): void {
  mkdirSync(files.dir, { recursive: true, mode: 0o700 });
}

export function writeUnitState(files: UnitFiles, state: StoredUnitState): void {
  replaceFile(files.state, JSON.stringify(state) + "\n");
}

/** The unit's stored state, if it has one; a file that is not one of ours is UNIT_STATE. */
export function readUnitState(files: UnitFiles, serial: string): StoredUnitState | undefined {
  if (!existsSync(files.state)) return undefined;
  const broken = (why: string) => new UnitError("UNIT_STATE", `${files.state} ${why}: remove ${files.dir} to start unit ${serial} afresh`);
  let s: Partial<StoredUnitState>;
  try {
    s = JSON.parse(readFileSync(files.state, "utf8")) as Partial<StoredUnitState>;
  } catch (e) {
    throw broken(`cannot be read as JSON (${(e as Error).message.split("\n")[0]})`);
  }
  if (typeof s !== "object" || s === null || s.v !== 1 || s.serial !== serial || !UNIT_STATES.includes(s.state as UnitState)) throw broken("is not this unit's state");
  if (s.state !== "new") {
    const keyOk = s.key?.keystore === "soft" || (s.key?.keystore === "pkcs11" && typeof s.key.object === "string");
    if (!UNIT_KEY_ALGORITHMS.includes(s.alg as UnitKeyAlgorithm) || !keyOk || typeof s.spki !== "string") throw broken("names no usable key");
  }
  if (s.state === "provisioned" && (typeof s.fingerprint !== "string" || !/^[0-9a-f]{64}$/.test(s.fingerprint))) throw broken("has no certificate fingerprint");
  return s as StoredUnitState;
}

/**
 * A soft-keystore unit's private key, for tests and for device-side decryption (`unit
 * decrypt`). A unit in a PKCS#11 token has no such file: its key cannot leave the token.
 */
export function readSoftUnitKey(unitsDir: string, serial: string): KeyObject {
  const files = unitFiles(unitsDir, serial);
  let pem: string;
  try {
    pem = readFileSync(files.key, "utf8");
  } catch (e) {
    throw new UnitError("UNIT_STATE", `unit ${serial} has no key file ${files.key} (${(e as NodeJS.ErrnoException).code ?? "unreadable"}): it never generated a key, or its key is in a PKCS#11 token`, { cause: e });
  }
  try {
    return createPrivateKey({ key: pem, format: "pem" });
  } catch (e) {
    throw new UnitError("UNIT_STATE", `${files.key} is not a PKCS#8 private key: remove ${files.dir} to start unit ${serial} afresh`, { cause: e });
  }
}
