import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync, existsSync, mkdirSync } from "node:fs";
import { dirname, basename, join } from "node:path";
import { CoreError } from "./errors.js";

/** The temporary a file is written to before it is renamed into place: `.NAME.PID.tmp` beside it. */
export function temporarySibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
}
// What temporarySibling names: what a killed writer may leave behind.
const LEFTOVER = /^\..+\.\d+\.tmp$/;

/**
 * Replaces `path` through a temporary sibling and a rename, so that readers see either the
 * old content or the whole new one; with `durable`, the temporary is fsynced first. A
 * failure at any step leaves no temporary behind.
 */
function replaceFile(path: string, data: string | Uint8Array, mode: number, durable: boolean): void {
  const tmp = temporarySibling(path);
  try {
    const fd = openSync(tmp, "w", mode);
    try {
      const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
      let offset = 0;
      while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Writes a file whole or not at all, durably: its directory is made if need be, and the content fsynced before the rename. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  replaceFile(path, data, mode, true);
}

/** Writes several files all-or-nothing: if any already exists, nothing is written. */
export function writeNewFiles(files: ReadonlyArray<{ path: string; data: string | Uint8Array; mode?: number }>): void {
  const existing = files.find((f) => existsSync(f.path));
  if (existing) throw new CoreError("FILE_EXISTS", `${existing.path} already exists: remove it or choose another home`);
  const written: string[] = [];
  try {
    for (const f of files) {
      writeFileAtomic(f.path, f.data, f.mode);
      written.push(f.path);
    }
  } catch (e) {
    for (const p of written) rmSync(p, { force: true });
    throw e;
  }
}

/**
 * Removes the temporaries a killed writer left in `dir` (`.NAME.PID.tmp`); call it only
 * when no other process can be writing there (e.g. under the station's run lock).
 */
export function removeLeftoverTemporaries(dir: string): void {
  for (const name of readdirSync(dir)) if (LEFTOVER.test(name)) rmSync(join(dir, name), { force: true });
}

/**
 * Replaces a file whole or not at all, without fsync: for copies of what a database already
 * holds durably (HOME/certs/SERIAL.pem), where readers must never see half a file but an OS
 * crash may cost a copy that is made again. Synchronous: the station's store writer thread
 * makes these copies, where blocking costs no event loop, and four fs/promises calls a copy
 * cost the line more (thread hand-offs, promises) than the system calls themselves.
 */
export function writeCopy(path: string, data: string | Uint8Array, mode = 0o644): void {
  replaceFile(path, data, mode, false);
}
