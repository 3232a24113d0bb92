/**
 * The unit simulator's own process, forked by startSimulatorProcess (process.ts): it
 * says "ready", takes the UnitSimulator options in one IPC message, answers "listening" or
 * "failed", and serves units until it is told to close. It lives no longer than its parent:
 * the IPC channel closing ("disconnect", also when the parent was SIGKILLed) closes the
 * simulator and ends the process, as do SIGINT and SIGTERM (a Ctrl-C reaches the whole
 * process group).
 */
import { toWireError } from "../core/index.js";
import { SIM_CLOSE_TIMEOUT_MS, type FromSimChild, type ToSimChild } from "./process.js";
import { UnitSimulator } from "./simulator.js";

/**
 * How long closing may take before this process ends anyway: an orphan has nobody left to
 * kill it, and a parent that is still there kills it first (after SIM_CLOSE_TIMEOUT_MS).
 */
const CLOSE_GRACE_MS = 2 * SIM_CLOSE_TIMEOUT_MS;

let started: Promise<UnitSimulator | undefined> = Promise.resolve(undefined);
let ending = false;

/** A message to the parent; if it is gone, "disconnect" ends this process, so the failed send itself is nothing to act on. */
function send(message: FromSimChild, then: () => void = () => {}): void {
  process.send!(message, undefined, undefined, then);
}

/** Closes the simulator, once its start has settled, and ends the process; the first call of any cause wins. */
function end(): void {
  if (ending) return;
  ending = true;
  setTimeout(() => process.exit(1), CLOSE_GRACE_MS).unref();
  void (async () => {
    try {
      await (await started)?.close();
      process.exit(0);
    } catch (e) {
      process.stderr.write(`cannot close the unit simulator: ${toWireError(e).message}\n`);
      process.exit(1);
    }
  })();
}

process.on("message", (m: ToSimChild) => {
  if (m.type === "close") return end();
  started = UnitSimulator.start(m.options).then(
    (sim) => {
      send({ type: "listening", port: sim.port, count: sim.count });
      return sim;
    },
    (e: unknown) => {
      send({ type: "failed", error: toWireError(e) }, end);
      return undefined;
    },
  );
});
process.on("disconnect", end);
process.on("SIGINT", end);
process.on("SIGTERM", end);
// The parent may have died while this module was loading, before "disconnect" was listened for.
if (process.connected) send({ type: "ready" });
else end();
