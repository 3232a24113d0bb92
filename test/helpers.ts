import { spawnSync, type SpawnSyncOptions } from "node:child_process";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = fileURLToPath(new URL("..", import.meta.url));
export const BIN = join(REPO, "bin", "idmint.js");

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A fresh directory for one test file's homes and fixtures; removed by the returned cleanup. */
export function scratch(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `idmint-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs the real idmint binary, as a user would, with a clean environment apart from `env`. */
export function idmint(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Run {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, ...options.env };
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: options.cwd ?? REPO, env, encoding: "utf8", timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function run(cmd: string, args: string[], options: SpawnSyncOptions = {}): Run {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 120_000, ...options });
  return { code: r.status ?? -1, stdout: String(r.stdout ?? ""), stderr: String(r.stderr ?? "") };
}

export function openssl(args: string[], options: SpawnSyncOptions = {}): Run {
  return run("openssl", args, options);
}

/** Asserts the shape every refused command must have: one line on stderr, no stack trace. */
export function oneLineError(r: Run): string {
  const lines = r.stderr.trimEnd().split("\n");
  if (lines.length !== 1 || !lines[0]!.startsWith("idmint: ") || /\n\s+at /.test(r.stderr)) {
    throw new Error(`expected one "idmint: ..." line on stderr, got:\n${r.stderr}`);
  }
  return lines[0]!;
}

export function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}
