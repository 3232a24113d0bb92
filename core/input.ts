import { existsSync, readFileSync, statSync } from "node:fs";
import { CoreError } from "./errors.js";

/** Reads a file the user named, with a one-line error for a missing, unreadable or directory path. */
export function readInputFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "is not readable" : `cannot be read (${code})`;
    throw new CoreError("input", "FILE_UNREADABLE", `${what} ${path} ${why}: give the path of an existing file`, { cause: e });
  }
}

/** Reads an input file, refusing one larger than `max` bytes before reading it. */
export function readBoundedInput(path: string, what: string, max: number): Buffer {
  let size = 0;
  try {
    size = statSync(path).size;
  } catch {
    // readInputFile says what is wrong with the path.
  }
  if (size > max) throw new CoreError("input", "FILE_UNREADABLE", `${what} ${path} is ${size} bytes, more than ${max}: give the file itself`);
  return readInputFile(path, what);
}

/** Reads a JSON document the user named, with a one-line error for a missing or non-JSON file. */
export function readJsonFile(path: string, what: string): unknown {
  const text = readInputFile(path, what).toString("utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CoreError("input", "FILE_UNREADABLE", `${what} ${path} is not JSON: give the file idmint wrote`, { cause: e });
  }
}

/** Every command that writes --out refuses to replace a file. */
export function assertNewOutput(path: string): void {
  if (existsSync(path)) throw new CoreError("input", "FILE_EXISTS", `--out ${path} already exists: choose another path or remove it`);
}
