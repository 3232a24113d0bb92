import { readFileSync } from "node:fs";
import { CoreError, Home, type IdmintConfig } from "../core/index.js";
import { Hsm } from "../hsm/index.js";
import type { GlobalArgs, Io } from "./io.js";

export function homeOf(args: GlobalArgs, io: Io): Home {
  return Home.resolve(args.home, io.env);
}

/** Opens the HSM a home is configured for, runs `fn`, and always closes it again. */
export async function withHsm<T>(config: IdmintConfig, io: Io, fn: (hsm: Hsm) => Promise<T> | T): Promise<T> {
  const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, env: io.env });
  try {
    return await fn(hsm);
  } finally {
    hsm.close();
  }
}

export function readInputFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "is not readable" : `cannot be read (${code})`;
    throw new CoreError("input", "FILE_UNREADABLE", `${what} ${path} ${why}: give the path of an existing file`, { cause: e });
  }
}
