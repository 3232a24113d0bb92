import type { Clock } from "../core/index.js";
import type { Ledger, StoredCheckpoint } from "../ledger/index.js";
import type { SerialFate, SerialStore, UsageReport } from "../serials/index.js";

/** The station's usage report over everything its ledger holds up to `checkpoint`. */
export function buildUsageReport(p: { store: SerialStore; ledger: Ledger; checkpoint: StoredCheckpoint; stationId: string; clock: Clock }): UsageReport {
  const allocations = new Map<string, UsageReport["allocations"][number]>();
  for (const a of p.store.allocationDocuments()) allocations.set(a.allocationId, { ...a, serials: {} });
  for (const s of p.store.serials()) {
    const fate: SerialFate =
      s.state === "provisioned"
        ? { state: "provisioned", certificateFingerprint: s.certificateFingerprint ?? "" }
        : s.state === "scrapped"
          ? { state: "scrapped", reason: s.reason ?? "" }
          : s.state === "reserved"
            ? { state: "reserved" }
            : { state: "unused" };
    allocations.get(s.allocationId)!.serials[s.serial] = fate;
  }
  const ledger: string[] = [];
  for (let i = 0; i < p.checkpoint.size; i++) ledger.push(p.ledger.entryBytes(i).toString("base64"));
  return {
    format: "idmint-usage-report/1",
    station: p.stationId,
    generatedAt: p.clock.now().toISOString(),
    allocations: [...allocations.values()],
    checkpoint: p.checkpoint.note,
    ledger,
  };
}
