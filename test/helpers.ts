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

function cleanEnv(env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, ...env };
}

/** Runs the real idmint binary, as a user would, with a clean environment apart from `env`. */
export function idmint(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: options.cwd ?? REPO, env: cleanEnv(options.env), encoding: "utf8", timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Variables idmint and its libraries read from process.env rather than from Io.env: SoftHSM
 * takes its configuration from the real environment at C_Initialize (and Hsm.open sets it),
 * IDMINT_PKCS11_MODULE names the module, and yargs picks its message language from the locale.
 * A run sees the clean env's values, and the test's are put back after, so that one home's
 * SOFTHSM2_CONF does not outlive the command that set it.
 */
const PROCESS_ENV_READ = ["SOFTHSM2_CONF", "IDMINT_PKCS11_MODULE", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"] as const;

/**
 * Runs one idmint command line in this process through main(), as the binary would with the
 * same clean environment, without paying ~0.5 s of module loading per command. For a
 * command's behaviour only: the binary's own contract, and commands that are killed, wait
 * for signals, serve until stopped or need native code to see an env variable (PKCS11SPY),
 * stay on idmint(). Paths must be absolute: the binary runs in REPO, this process wherever vitest started.
 */
export async function idmintInProcess(args: string[], options: { env?: NodeJS.ProcessEnv; isTty?: boolean } = {}): Promise<Run> {
  // Loaded on first use, so test files that only spawn the binary do not pay for the CLI's modules.
  const { main } = await import("../cli/main.js");
  const env = cleanEnv(options.env);
  let stdout = "";
  let stderr = "";
  const saved = PROCESS_ENV_READ.map((name) => [name, process.env[name]] as const);
  for (const [name] of saved) setEnv(name, env[name]);
  try {
    const code = await main(args, { out: (t) => (stdout += t), err: (t) => (stderr += t), isTty: options.isTty ?? false, env });
    return { code, stdout, stderr };
  } finally {
    for (const [name, value] of saved) setEnv(name, value);
  }
}

function setEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
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
