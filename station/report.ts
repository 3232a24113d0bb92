import type { Clock } from "../core/index.js";
import type { Ledger, LedgerEventType, StoredCheckpoint } from "../ledger/index.js";
import type { SerialFate, SerialStore, UsageReport, UsageReportV2 } from "../serials/index.js";

/** The station's usage report over everything its ledger holds up to `checkpoint`, the ledger inside (format 1). */
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

// The entry that makes each fate: what `serials reconcile` finds as the serial's last fate-changing entry.
const PROVEN_BY: Partial<Record<string, LedgerEventType>> = { provisioned: "certificate.issued", scrapped: "serial.scrapped", reserved: "serial.reserved" };

/**
 * The report that stays small (format 2): each serial's fate with the index of the ledger entry
 * that proves it, and the checkpoint those indices are in; the ledger goes as tiles. About 25
 * bytes a serial, where format 1 carried some 1.65 KB of ledger per unit.
 */
export function buildTiledUsageReport(p: { store: SerialStore; ledger: Ledger; checkpoint: StoredCheckpoint; stationId: string; clock: Clock }): UsageReportV2 {
  const lines = new Map<string, string[]>();
  for (const a of p.store.allocationDocuments()) lines.set(a.allocationId, []);
  for (const s of p.store.eachSerial()) {
    const type = PROVEN_BY[s.state];
    const at = type ? p.ledger.findBySerial(s.serial, type) : undefined;
    const state = s.state === "provisioned" || s.state === "scrapped" || s.state === "reserved" ? s.state : "unused";
    lines.get(s.allocationId)!.push(at === undefined ? `${s.serial} ${state}` : `${s.serial} ${state}@${at}`);
  }
  return {
    format: "idmint-usage-report/2",
    station: p.stationId,
    generatedAt: p.clock.now().toISOString(),
    allocations: p.store.allocationDocuments().map((a) => ({ ...a, fates: lines.get(a.allocationId)!.join("\n") })),
    checkpoint: p.checkpoint.note,
  };
}
