/**
 * A process that does nothing but measure its own event-loop delay, beside a run: what the
 * machine's run queue alone costs any event loop at that moment. The station's delay is read
 * against it (a station turn of 5 ms is the station's only if an idle process sees far less).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";

/** The sampling period of every event-loop delay histogram here; a sample is how long one period took. */
export const LOOP_RESOLUTION_MS = 1;

/** A histogram's nanoseconds as delay: less the sampling period, i.e. how late a timer of that period fired. */
export const loopDelayMs = (ns: number): number => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS);

// Plain CommonJS in the child: nothing to load but perf_hooks, so it starts in ~40 ms.
const CHILD = `
const { monitorEventLoopDelay } = require("node:perf_hooks");
const h = monitorEventLoopDelay({ resolution: ${LOOP_RESOLUTION_MS} });
h.enable();
process.on("message", (m) => {
  if (m === "reset") return void h.reset();
  process.send({ p99Ns: h.percentile(99), maxNs: h.max });
});
process.on("disconnect", () => process.exit(0));
`;

export interface LoopDelay {
  p99Ms: number;
  maxMs: number;
}

export interface Bystander {
  /** Starts a new window. */
  reset(): void;
  /** The window's delays so far, less the 1 ms sampling period (as the station's are read). */
  read(): Promise<LoopDelay>;
  close(): Promise<void>;
}

export async function startBystander(): Promise<Bystander> {
  const child = spawn(process.execPath, ["-e", CHILD], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  await once(child, "spawn");
  return {
    reset: () => void child.send("reset"),
    async read() {
      child.send("read");
      const [m] = (await once(child, "message")) as [{ p99Ns: number; maxNs: number }];
      return { p99Ms: loopDelayMs(m.p99Ns), maxMs: loopDelayMs(m.maxNs) };
    },
    async close() {
      if (child.exitCode !== null) return;
      const exited = once(child, "exit");
      child.disconnect();
      await exited;
    },
  };
}
