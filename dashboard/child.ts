/**
 * The dashboard's own process, forked by startDashboardProcess (process.ts): it serves the
 * page until SIGTERM or SIGINT, or until its parent (the line) is gone, IPC "disconnect"
 * included when the parent was SIGKILLed.
 */
import { Home, toWireError } from "../core/index.js";
import type { DashboardChildOptions, FromDashboardChild } from "./process.js";
import { startDashboard, type DashboardServer } from "./server.js";

const options = JSON.parse(process.argv[2]!) as DashboardChildOptions;
let server: DashboardServer | undefined;
let ending = false;

/** Closes the server (if it started) and ends the process; a close that hangs is cut short. */
async function end(): Promise<void> {
  if (ending) return;
  ending = true;
  setTimeout(() => process.exit(1), 2_000).unref();
  await server?.close().catch(() => undefined);
  process.exit(0);
}

function tell(m: FromDashboardChild): Promise<void> {
  return new Promise((resolve) => (process.connected ? process.send!(m, undefined, undefined, () => resolve()) : resolve()));
}

for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => void end());
process.on("disconnect", () => void end());
if (!process.connected) void end();
try {
  server = await startDashboard({ home: new Home(options.home), port: options.port, host: options.host });
  // A signal during start-up: the server is closed now that it exists.
  if (ending) await server.close();
  else await tell({ type: "listening", url: server.url });
} catch (e) {
  await tell({ type: "failed", error: toWireError(e) });
  await end();
}
