import { fork, type ChildProcess } from "node:child_process";
import { fromWireError, siblingModule, type WireError } from "../core/index.js";
import { SimError, isSimErrorCode } from "./errors.js";
import type { UnitSimulatorOptions } from "./simulator.js";

/** How long close() gives the simulator process to close its units before it is killed. */
export const SIM_CLOSE_TIMEOUT_MS = 5_000;
/** How much of the simulator's stderr is kept to explain a crash. */
const STDERR_TAIL_CHARS = 4_000;

type WithoutClock<T> = T extends unknown ? Omit<T, "clock"> : never;

/** UnitSimulator's options as they cross to the simulator process: plain data, so no clock (it runs on the system clock). */
export type SimProcessOptions = WithoutClock<UnitSimulatorOptions>;

/** What child.ts and this module say to each other over the IPC channel. */
export type ToSimChild = { type: "start"; options: SimProcessOptions } | { type: "close" };
export type FromSimChild = { type: "ready" } | { type: "listening"; port: number; count: number } | { type: "failed"; error: WireError };

function simFailure(w: WireError): Error {
  if (w.code === undefined || w.kind === undefined) return new SimError("SIM_CRASHED", `the unit simulator failed to start: ${w.message}`);
  return isSimErrorCode(w.code) ? new SimError(w.code, w.message) : fromWireError(w);
}

/** The simulator running in a process of its own (see startSimulatorProcess). */
export interface SimulatorProcess {
  /** The TCP port on 127.0.0.1 (SIM_HOST) the units are served on. */
  readonly port: number;
  readonly count: number;
  readonly pid: number;
  /** Closes the simulator and waits for its process to end, killing it after a few seconds; rejects if it crashed. Idempotent. */
  close(): Promise<void>;
}

type Ended = { code: number | null; signal: NodeJS.Signals | null };

function crashed(pid: number | undefined, { code, signal }: Ended, stderr: string): Error {
  const tail = stderr.trim();
  return new SimError("SIM_CRASHED", `the unit simulator process (pid ${pid}) ended unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`})${tail ? `\n${tail}` : ""}`);
}

// A child that is already gone cannot be told anything; how it ended is what counts.
const unheard = () => {};

function running(child: ChildProcess, port: number, count: number, ended: Promise<Ended>, stderr: () => string): SimulatorProcess {
  let closing: Promise<void> | undefined;
  return {
    port,
    count,
    pid: child.pid!,
    close: () =>
      (closing ??= (async () => {
        let killed = false;
        const killer = setTimeout(() => {
          killed = true;
          child.kill("SIGKILL");
        }, SIM_CLOSE_TIMEOUT_MS);
        child.send({ type: "close" } satisfies ToSimChild, unheard);
        const end = await ended;
        clearTimeout(killer);
        // Only a crash ends the child otherwise: it exits 0 after closing, whoever asked it to.
        if (end.code !== 0 && !killed) throw crashed(child.pid, end, stderr());
      })()),
  };
}

/**
 * Starts a UnitSimulator in a child process of its own (child.ts), so that the units'
 * work runs on another core than the station's, as a real fixture is another device. The
 * options go over the IPC channel (a line of up to a million serials is no argv); resolves
 * once the child listens, or rejects with the child's start-up error rebuilt here with the
 * same code, kind and one-line message. The child's stdout is discarded and its stderr only
 * kept to explain a crash, so a station's --json output stays its own. The child ends with
 * this process however it ends (it watches the IPC channel).
 */
export function startSimulatorProcess(options: SimProcessOptions): Promise<SimulatorProcess> {
  const { path, execArgv } = siblingModule(import.meta.url, "child");
  // Advanced serialization carries the root as bytes and a long serial list without JSON.
  const child = fork(path, [], { execArgv, stdio: ["ignore", "ignore", "pipe", "ipc"], serialization: "advanced" });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL_CHARS);
  });
  // "close" rather than "exit": by then the child's stderr has been read to its end.
  const ended = new Promise<Ended>((resolve) => child.once("close", (code, signal) => resolve({ code, signal })));
  return new Promise<SimulatorProcess>((resolve, reject) => {
    let failure: Error | undefined;
    const onMessage = (m: FromSimChild) => {
      if (m.type === "ready") {
        child.send({ type: "start", options } satisfies ToSimChild, unheard);
      } else if (m.type === "listening") {
        child.off("message", onMessage);
        resolve(running(child, m.port, m.count, ended, () => stderr));
      } else {
        // The child closes and exits after a failed start; the caller hears of it then, with no child left behind.
        failure = simFailure(m.error);
      }
    };
    child.on("message", onMessage);
    // A failed spawn; later errors (a kill that failed) change nothing "close" does not report.
    child.on("error", reject);
    void ended.then((end) => reject(failure ?? crashed(child.pid, end, stderr)));
  });
}
