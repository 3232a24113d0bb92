import type { UploadEvent, UploadRefusal, UploadResult } from "../station/index.js";
import type { Io } from "./io.js";
import { progress, type Progress } from "./progress.js";

/** Serials named per reason in a human summary; --json lists them all. */
const SHOWN = 5;

/** The refused serials under each reason, reasons and serials in order (batches finish in any order). */
function byReason(refused: readonly UploadRefusal[]): Array<[string, string[]]> {
  const out = new Map<string, string[]>();
  for (const r of refused) out.set(r.reason, [...(out.get(r.reason) ?? []), r.serial]);
  return [...out].sort(([a], [b]) => a.localeCompare(b)).map(([reason, serials]) => [reason, serials.sort()]);
}

function serialsText(serials: readonly string[]): string {
  return serials.slice(0, SHOWN).join(", ") + (serials.length > SHOWN ? `, and ${serials.length - SHOWN} more` : "");
}

/** The human summary of an upload run (station upload, and station run --directory). */
export function uploadLines(r: UploadResult): string[] {
  return [
    `sent ${r.sent} certificates in ${r.batches} batches; ${r.pending} still pending`,
    ...(r.retried > 0 ? [`  ${r.retried} of them had been refused before the directory knew their allocation and were sent again`] : []),
    ...byReason(r.refusedSerials).map(([reason, serials]) => `  refused ${serials.length} as ${reason}: ${serialsText(serials)}`),
    ...(r.awaitingAllocation > 0
      ? [
          `  ${r.awaitingAllocation} refused as not allocated wait for the directory to know their allocation (the vendor's \`idmint directory allocations add\`): ` +
            "they are sent again by themselves once it holds more allocations, or now with `idmint station upload --retry-refused`",
        ]
      : []),
    ...(r.pending > 0 && r.lastError ? [`  last error: ${r.lastError}`] : []),
  ];
}

/** Renders an uploader's events: a bar on a terminal, a line per batch when piped (none with --json). */
export function uploadProgress(io: Io, json: boolean): { onEvent: (e: UploadEvent) => void; done: () => void } {
  let bar: Progress | undefined;
  let batches = 0;
  return {
    onEvent(e) {
      if (e.type === "start") {
        bar = progress(io, { total: e.pending, json, label: "certificates", words: { ok: "sent", failed: "refused" } });
        if (e.retried > 0) bar.note(`sending again ${e.retried} certificates refused before the directory knew their allocation`);
      } else if (e.type === "batch") {
        bar?.grow(e.retried);
        const reasons = byReason(e.refused).map(([reason, serials]) => `${serials.length} ${reason}`).join(", ");
        const again = e.retried > 0 ? `; ${e.retried} refused before go again (the directory holds more allocations now)` : "";
        bar?.add(e.sent, e.refused.length, `batch ${++batches}: ${e.sent} sent, ${e.refused.length} refused${reasons ? ` (${reasons})` : ""}${again}; ${e.pending} pending`);
      } else {
        bar?.note(`the directory did not take the upload (${e.error}); trying again in ${(e.retryInMs / 1000).toFixed(1)} s`);
      }
    },
    done: () => bar?.done(),
  };
}
