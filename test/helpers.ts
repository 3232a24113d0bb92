import { spawn, spawnSync, type SpawnSyncOptions } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

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

/**
 * Exit 70 means a bug in idmint, and no input may cause one (issue 16): a run through the
 * helpers below that ends with it fails its test here, whatever the test expected.
 */
function noInternalError(args: string[], r: Run): Run {
  if (r.code === 70) throw new Error(`idmint ${args.join(" ")} exited 70 (an internal error, a bug in idmint):\n${r.stderr}`);
  return r;
}

/** Runs the real idmint binary, as a user would, with a clean environment apart from `env`. */
export function idmint(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: options.cwd ?? REPO, env: cleanEnv(options.env), encoding: "utf8", timeout: 120_000 });
  return noInternalError(args, { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr });
}

/** What idmintSteps runs in its Node process: argv[1] is the bundle's URL, argv[2] the steps as JSON. */
const STEPS_SCRIPT = `
const { main } = await import(process.argv[1]);
for (const step of JSON.parse(process.argv[2])) {
  const code = await main(step);
  if (code !== 0) {
    process.stderr.write("step failed: " + step.join(" ") + "\\n");
    process.exitCode = code;
    break;
  }
}
`;

/**
 * The binary's `main()` over several command lines in one process, one after another, as
 * bin/idmint.js runs one: set-up steps without a Node start-up each (they were a third of the
 * suite's spawns). Ends at the first step that fails, with its exit code and the step named on
 * stderr.
 */
export function idmintSteps(steps: string[][], options: { env?: NodeJS.ProcessEnv } = {}): Run {
  const main = pathToFileURL(join(REPO, "dist", "idmint.mjs")).href;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", STEPS_SCRIPT, main, JSON.stringify(steps)], { cwd: REPO, env: cleanEnv(options.env), encoding: "utf8", timeout: 120_000 });
  return noInternalError(steps.flat(), { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr });
}

/** A station's home as the line needs it: `hsm init`, `ca init`, and `count` serials SN000001... for station-1 allocated and imported. */
export function lineHome(dir: string, name: string, count: number): { home: string; allocation: string; cli: (...args: string[]) => Run } {
  const home = join(dir, name);
  const cli = (...args: string[]) => idmint(["--home", home, ...args]);
  const allocation = join(dir, `${name}-allocation.json`);
  const steps = [
    ["hsm", "init"],
    ["ca", "init"],
    ["serials", "allocate", "--order", "PO-1", "--station", "station-1", "--model", "RT-1", "--count", String(count), "--prefix", "SN", "--start", "1", "--out", allocation],
    ["serials", "import", allocation],
  ];
  const r = idmintSteps(steps.map((step) => ["--home", home, ...step]));
  if (r.code !== 0) throw new Error(r.stderr);
  return { home, allocation, cli };
}

export interface BoundedRun extends Run {
  /** The run was still going after its limit and was killed, with its whole process group. */
  timedOut: boolean;
  /** Pids of the run's process group still alive once it had ended (then killed): what it left behind. */
  leftovers: number[];
}

/**
 * Runs the real binary without blocking this process (so runs can go concurrently), in a
 * process group of its own: a hang is killed after `limitMs`, and whatever the run started
 * and left running (a simulator child, say) is found in its group once it ends. `onOutput`
 * sees the whole stdout and stderr so far each time more arrives.
 */
export function idmintBounded(args: string[], options: { env?: NodeJS.ProcessEnv; limitMs: number; onOutput?: (stdout: string, stderr: string) => void }): Promise<BoundedRun> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, env: cleanEnv(options.env), detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const group = child.pid!;
  const killGroup = () => {
    try {
      process.kill(-group, "SIGKILL");
    } catch {
      // The group is already gone.
    }
  };
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (t: string) => {
    stdout += t;
    options.onOutput?.(stdout, stderr);
  });
  child.stderr!.setEncoding("utf8").on("data", (t: string) => {
    stderr += t;
    options.onOutput?.(stdout, stderr);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, options.limitMs);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      const leftovers = run("pgrep", ["-g", String(group)]).stdout.split("\n").filter(Boolean).map(Number);
      if (leftovers.length > 0) killGroup();
      resolve({ code: code ?? -1, stdout, stderr, timedOut, leftovers });
    });
  });
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
    return noInternalError(args, { code, stdout, stderr });
  } finally {
    for (const [name, value] of saved) setEnv(name, value);
  }
}

function setEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

/** OpenSC's pkcs11-spy module, when installed: it sits between idmint and the real module (PKCS11SPY) and logs every call. */
export const PKCS11_SPY = ["/usr/lib/x86_64-linux-gnu/pkcs11-spy.so", "/usr/lib/aarch64-linux-gnu/pkcs11-spy.so"].find((p) => existsSync(p));

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

/** A refused command: exit `code`, one "idmint: ..." line on stderr, and nothing at `out`; returns the line. */
export function refusedWithoutOutput(r: Run, code: number, out: string): string {
  if (r.code !== code) throw new Error(`expected exit ${code}, got ${r.code}: ${r.stderr}`);
  if (existsSync(out)) throw new Error(`a refused command left ${out} behind`);
  return oneLineError(r);
}

export function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}
