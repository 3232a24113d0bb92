import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync, existsSync, mkdirSync } from "node:fs";
import { rename, rm, writeFile } from "node:fs/promises";
import { dirname, basename, join } from "node:path";

/**
 * Writes a file so that readers see either the old content or the whole new one:
 * write a temporary sibling, fsync it, rename it over the target.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, "w", mode);
  try {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/** Writes several files all-or-nothing: if any already exists, nothing is written. */
export function writeNewFiles(files: ReadonlyArray<{ path: string; data: string | Uint8Array; mode?: number }>): void {
  const existing = files.find((f) => existsSync(f.path));
  if (existing) throw new Error(`${existing.path} already exists`);
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

const TEMPORARY_SUFFIX = ".tmp";
const LEFTOVER = /^\..+\.\d+\.tmp$/;

/**
 * Removes the temporaries a killed writer left in `dir` (`.NAME.PID.tmp`); call it only
 * when no other process can be writing there (e.g. under the station's run lock).
 */
export function removeLeftoverTemporaries(dir: string): void {
  for (const name of readdirSync(dir)) if (LEFTOVER.test(name)) rmSync(join(dir, name), { force: true });
}

/**
 * Replaces a file through a temporary sibling and a rename, off the event loop and without
 * fsync: for copies of what a database already holds durably (HOME/certs/SERIAL.pem), where
 * readers must never see half a file but an OS crash may cost a copy that is made again. Off
 * the event loop because creating a file waits for the file system's journal, which every
 * SQLite fsync on the same disk commits: measured on the line, 1.1 ms a file in line against
 * ~0.1 ms of the event loop this way.
 */
export async function publishCopy(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}${TEMPORARY_SUFFIX}`);
  try {
    await writeFile(tmp, data, { mode });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
