import { fork } from "node:child_process";
import { fromWireError, siblingModule, type WireError } from "../core/index.js";
import { DashboardError, isDashboardErrorCode } from "./errors.js";

/** How long close() gives the dashboard process to end before it is killed. */
const CLOSE_TIMEOUT_MS = 3_000;
const STDERR_TAIL_CHARS = 2_000;

/** What child.ts and this module say to each other over the IPC channel. */
export type FromDashboardChild = { type: "listening"; url: string } | { type: "failed"; error: WireError };
export interface DashboardChildOptions {
  home: string;
  port: number;
  host: string;
}

export interface DashboardProcess {
  url: string;
  pid: number;
  /** Settles when the process ended on its own (a crash, a kill), never after close(): with how it ended. */
  readonly crashed: Promise<string>;
  /** Ends the process (SIGTERM, then SIGKILL after a few seconds) and waits for it. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the dashboard in a process of its own (child.ts), beside a line: the HTTP server
 * never runs in the process that holds the HSM sessions, and a dashboard that crashes ends
 * only itself. Resolves once it listens, or rejects with its start-up error (same code and
 * message). It ends with this process however that ends (it watches the IPC channel).
 */
export function startDashboardProcess(options: DashboardChildOptions): Promise<DashboardProcess> {
  const { path, execArgv } = siblingModule(import.meta.url, "child");
  const child = fork(path, [JSON.stringify(options)], { execArgv, stdio: ["ignore", "ignore", "pipe", "ipc"] });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL_CHARS);
  });
  let closing: Promise<void> | undefined;
  const ended = new Promise<string>((resolve) =>
    child.once("close", (code, signal) => resolve(`the dashboard process (pid ${child.pid}) ended (${signal ? `signal ${signal}` : `exit code ${code}`})${stderr.trim() ? `: ${stderr.trim().split("\n").at(-1)}` : ""}`)),
  );
  return new Promise<DashboardProcess>((resolve, reject) => {
    let failure: Error | undefined;
    child.on("message", (m: FromDashboardChild) => {
      if (m.type === "failed") {
        failure = isDashboardErrorCode(m.error.code) ? new DashboardError(m.error.code, m.error.message) : fromWireError(m.error);
        return;
      }
      resolve({
        url: m.url,
        pid: child.pid!,
        crashed: ended.then((how) => (closing ? new Promise<string>(() => {}) : how)),
        close: () =>
          (closing ??= (async () => {
            const killer = setTimeout(() => child.kill("SIGKILL"), CLOSE_TIMEOUT_MS);
            child.kill("SIGTERM");
            await ended;
            clearTimeout(killer);
          })()),
      });
    });
    child.on("error", reject);
    void ended.then((how) => reject(failure ?? new DashboardError("DASHBOARD_CRASHED", how)));
  });
}
