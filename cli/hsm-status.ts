import type { HsmStatus } from "../hsm/index.js";
import type { Io } from "./io.js";
import type { Progress } from "./progress.js";

/**
 * The HSM went away or came back during a run: a line above the bar on a terminal, a plain
 * line when piped, and with --json one JSON event per line on stderr (stdout keeps the result).
 */
export function showHsmStatus(io: Io, json: boolean, status: HsmStatus, bar: Progress | undefined): void {
  const at = status.since.toISOString();
  if (json) {
    const event = status.state === "unreachable" ? { event: "hsm-unreachable", since: at, cause: status.cause } : { event: "hsm-back", at, outageSeconds: Number((status.outageMs / 1000).toFixed(1)) };
    io.err(JSON.stringify(event) + "\n");
    return;
  }
  const line =
    status.state === "unreachable"
      ? `HSM unreachable since ${at} (${status.cause}), retrying: the units wait for their signatures`
      : `HSM back at ${at} after ${(status.outageMs / 1000).toFixed(1)} s: the line goes on`;
  if (bar) bar.note(line);
  else io.err(line + "\n");
}
