import { decodeEntry, openCheckpoint, stationOrigin, tileSource, tiledEntries } from "../ledger/index.js";
import { FateReplay, reconcileTiled, type Allocation, type Anomaly, type Reconciliation, type UsageReportV2 } from "../serials/index.js";

/**
 * Reconciles a report that names its checkpoint: the station's ledger is streamed from its tiles
 * (checked entry by entry against that signed checkpoint) into the serials' replay, so memory
 * holds per serial only its fate, never the ledger. Wires ledger/ to serials/, which may not
 * import each other.
 */
export async function reconcileFromTiles(allocation: Allocation, report: UsageReportV2, stationId: string, stationSpki: Uint8Array, tiles: string): Promise<Reconciliation> {
  const origin = stationOrigin(stationId);
  const checkpoint = openCheckpoint(report.checkpoint, origin, stationSpki);
  const replay = new FateReplay();
  const malformed: Anomaly[] = [];
  for await (const { index, body } of tiledEntries(tileSource(tiles), checkpoint, { origin, spki: stationSpki })) {
    let entry;
    try {
      entry = decodeEntry(body);
    } catch {
      entry = undefined;
    }
    if (entry?.index === index) replay.add(index, entry.event);
    else malformed.push({ kind: "report-disagrees", detail: `ledger entry ${index} in the tiles is malformed or out of place` });
  }
  const r = reconcileTiled(allocation, report, stationId, replay, checkpoint.size);
  return { ...r, anomalies: [...malformed, ...r.anomalies] };
}
