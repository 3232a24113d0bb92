import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync, existsSync, mkdirSync } from "node:fs";
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
