import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, rmdirSync } from "node:fs";
import { dirname } from "node:path";
import { CoreError } from "./errors.js";
import { writeFileAtomic } from "./files.js";

/** Reads a file the user named, with a one-line error for a missing, unreadable or directory path. */
export function readInputFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "is not readable" : `cannot be read (${code})`;
    throw new CoreError("FILE_UNREADABLE", `${what} ${path} ${why}: give the path of an existing file`, { cause: e });
  }
}

/** Reads a JSON document the user named, with a one-line error for a missing or non-JSON file. */
export function readJsonFile(path: string, what: string): unknown {
  const text = readInputFile(path, what).toString("utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CoreError("FILE_UNREADABLE", `${what} ${path} is not JSON: give the file idmint wrote`, { cause: e });
  }
}

/** Every command that writes --out refuses to replace a file. */
export function assertNewOutput(path: string, option = "--out"): void {
  if (existsSync(path)) throw new CoreError("FILE_EXISTS", `${option} ${path} already exists: choose another path or remove it`);
}

/** Writes an output the user named, whole or not at all; a path that cannot be written is one line, exit 3. */
export function writeOutputFile(path: string, data: string | Uint8Array, mode?: number, option = "--out"): void {
  try {
    writeFileAtomic(path, data, mode);
  } catch (e) {
    throw unwritable(option, path, e);
  }
}

/** An output file claimed before the work that fills it; see withClaimedOutputs. */
export interface ClaimedOutput {
  readonly path: string;
  /** Replaces the empty placeholder whole (a temporary and a rename): readers never see half a file. */
  write(data: string | Uint8Array, mode?: number): void;
}

function unwritable(option: string, path: string, e: unknown): CoreError {
  const code = (e as NodeJS.ErrnoException).code;
  // EEXIST here is mkdir's: a file stands where a directory of the path should be.
  const why =
    code === "ENOTDIR" || code === "EEXIST" ? "part of its path is a file, not a directory" : code === "EACCES" || code === "EPERM" ? "permission denied" : (code ?? (e as Error).message);
  return new CoreError("FILE_UNWRITABLE", `${option} ${path} cannot be written (${why}): give a new path in a writable directory`, { cause: e });
}

/**
 * Claims one output: its directory made if need be, the file created empty and exclusively
 * (O_EXCL), so that a path that exists or cannot be written is refused at once. Returns the
 * claim and what undoes it (the placeholder and any directory made for it, deepest first).
 */
function claimOutput(option: string, path: string): { out: ClaimedOutput; release: () => void } {
  assertNewOutput(path, option);
  let made: string | undefined;
  try {
    made = mkdirSync(dirname(path), { recursive: true });
  } catch (e) {
    throw unwritable(option, path, e);
  }
  const removeMadeDirectories = () => {
    for (let dir = dirname(path); made !== undefined; dir = dirname(dir)) {
      try {
        rmdirSync(dir);
      } catch {
        return;
      }
      if (dir === made) return;
    }
  };
  try {
    closeSync(openSync(path, "wx", 0o600));
  } catch (e) {
    removeMadeDirectories();
    if ((e as NodeJS.ErrnoException).code === "EEXIST") assertNewOutput(path, option);
    throw unwritable(option, path, e);
  }
  let written = false;
  const out: ClaimedOutput = {
    path,
    write(data, mode) {
      writeOutputFile(path, data, mode, option);
      written = true;
    },
  };
  return {
    out,
    release: () => {
      if (written) return;
      rmSync(path, { force: true });
      removeMadeDirectories();
    },
  };
}

type Claimed<P extends ReadonlyArray<readonly [string, string | undefined]>> = { [K in keyof P]: P[K][1] extends string ? ClaimedOutput : ClaimedOutput | undefined };

/**
 * For commands that sign or record something and then write it out: every output is
 * claimed (see claimOutput) before `fn` runs, so an --out that exists or cannot be written
 * is refused before anything is signed; if `fn` fails, the outputs it did not write are
 * removed again. `outputs` are [option, path] pairs, e.g. ["--out", "report.json"]; an
 * optional output not given (path undefined) is passed on as undefined.
 */
export async function withClaimedOutputs<const P extends ReadonlyArray<readonly [option: string, path: string | undefined]>, T>(
  outputs: P,
  fn: (claimed: Claimed<P>) => Promise<T>,
): Promise<T> {
  const claims: Array<ReturnType<typeof claimOutput> | undefined> = [];
  try {
    for (const [option, path] of outputs) claims.push(path === undefined ? undefined : claimOutput(option, path));
    return await fn(claims.map((c) => c?.out) as Claimed<P>);
  } catch (e) {
    for (const c of claims) c?.release();
    throw e;
  }
}
