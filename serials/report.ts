import { x509 } from "../pki/index.js";
import { expandSerials, validateAllocation, type Allocation } from "./allocation.js";
import { openDocument } from "./document.js";
import { SerialsError } from "./errors.js";

export type SerialFate =
  | { state: "provisioned"; certificateFingerprint: string }
  | { state: "scrapped"; reason: string }
  | { state: "reserved" }
  | { state: "unused" };

/**
 * What a station hands back: each allocated serial's fate, and the ledger that proves it —
 * every entry up to a checkpoint the station signed, so the vendor can recompute the tree
 * and derive every fate itself rather than trust the table.
 */
export interface UsageReport {
  format: "idmint-usage-report/1";
  station: string;
  generatedAt: string;
  allocations: Array<{ allocationId: string; digest: string; serials: Record<string, SerialFate> }>;
  checkpoint: string;
  /** base64 of every ledger entry 0 .. checkpoint size - 1. */
  ledger: string[];
}

/** The ledger as the vendor opened it from the report (see ledger's openExtract). */
export interface LedgerEvidence {
  matchesCheckpoint: boolean;
  size: number;
  malformed: number[];
  entries: Array<{ index: number; event: { type: string; serial?: string; certificateFingerprint?: string; keyFingerprint?: string; reason?: string; allocationId?: string } }>;
}

export async function openAllocation(doc: unknown, root: x509.X509Certificate, at: Date): Promise<{ allocation: Allocation; serials: string[] }> {
  const { payload } = await openDocument<Allocation>(doc, root, "allocation-signer", "the allocation list", at);
  return { allocation: payload, serials: validateAllocation(payload) };
}

export async function openUsageReport(doc: unknown, root: x509.X509Certificate, at: Date): Promise<{ report: UsageReport; stationId: string; stationSpki: Uint8Array }> {
  const { payload: report, signer } = await openDocument<UsageReport>(doc, root, "station", "the usage report", at);
  if (report.format !== "idmint-usage-report/1" || !Array.isArray(report.allocations) || !Array.isArray(report.ledger) || typeof report.checkpoint !== "string") {
    throw new SerialsError("REPORT_INVALID", "the usage report is malformed: give the file `idmint station report` wrote");
  }
  const stationId = signer.subjectName.getField("CN")[0] ?? "";
  if (report.station !== stationId) {
    throw new SerialsError("REPORT_SIGNATURE", `the report names station ${report.station} but is signed by ${stationId}`);
  }
  return { report, stationId, stationSpki: new Uint8Array(signer.publicKey.rawData) };
}

/**
 * "outside-allocation": a serial certified (or about to be) that this allocation does not
 * hold and no allocation the station imported reserved; "lab-unit": one declared as such
 * (`ca issue --outside-allocation`), with its reason; "key-reused": one public key put up
 * for certification under two serials (invariant 4).
 */
export type AnomalyKind = "outside-allocation" | "lab-unit" | "issued-twice" | "key-reused" | "count-exceeded" | "unaccounted" | "report-disagrees";

export interface Anomaly {
  kind: AnomalyKind;
  serial?: string;
  detail: string;
}

export interface Reconciliation {
  allocationId: string;
  station: string;
  allocated: number;
  provisioned: number;
  scrapped: number;
  reserved: number;
  unused: number;
  checkpointSize: number;
  anomalies: Anomaly[];
}

/**
 * `idmint serials reconcile`, once both documents and the report's ledger are opened:
 * derives each serial's fate from the ledger and lists every way the report, the ledger
 * and the allocation disagree (allocated = provisioned + scrapped + reserved + unused).
 */
export function reconcile(allocation: Allocation, report: UsageReport, stationId: string, evidence: LedgerEvidence): Reconciliation {
  if (allocation.station !== stationId) {
    throw new SerialsError("ALLOCATION_STATION", `the report is from station ${stationId} but the allocation is for ${allocation.station}: reconcile a report with its own station's allocation`);
  }
  const anomalies: Anomaly[] = [];
  if (!evidence.matchesCheckpoint) {
    anomalies.push({ kind: "report-disagrees", detail: `the report's ${report.ledger.length} ledger entries do not hash to its signed checkpoint (size ${evidence.size}): the ledger in the report was altered` });
  }
  for (const i of evidence.malformed) anomalies.push({ kind: "report-disagrees", detail: `ledger entry ${i} in the report is malformed` });

  // Replays the ledger: each serial's state is what its last entry made it.
  const fate = new Map<string, SerialFate["state"]>();
  const issued = new Map<string, Set<string>>();
  const reservedUnder = new Map<string, string>();
  const imported = new Set<string>();
  const lab = new Map<string, string>();
  // Serials the CA was asked to sign for (an intent names each signature), and by which key.
  const certified = new Set<string>();
  const serialsOfKey = new Map<string, Set<string>>();
  for (const { event: ev } of evidence.entries) {
    if (ev.type === "allocation.imported" && ev.allocationId) imported.add(ev.allocationId);
    const s = ev.serial;
    if (!s) continue;
    if (ev.type === "signing.intent") {
      certified.add(s);
      if (ev.keyFingerprint) serialsOfKey.set(ev.keyFingerprint, (serialsOfKey.get(ev.keyFingerprint) ?? new Set()).add(s));
    } else if (ev.type === "serial.outside-allocation") {
      lab.set(s, ev.reason ?? "");
    } else if (ev.type === "serial.reserved") {
      if (ev.allocationId) reservedUnder.set(s, ev.allocationId);
      if (!fate.has(s) || fate.get(s) === "unused") fate.set(s, "reserved");
    } else if (ev.type === "serial.released") {
      if (fate.get(s) === "reserved") fate.set(s, "unused");
    } else if (ev.type === "certificate.issued") {
      certified.add(s);
      issued.set(s, (issued.get(s) ?? new Set()).add(ev.certificateFingerprint ?? ""));
      if (fate.get(s) !== "scrapped") fate.set(s, "provisioned");
    } else if (ev.type === "serial.scrapped") {
      fate.set(s, "scrapped");
    }
  }

  const allocated = expandSerials(allocation);
  const inAllocation = new Set(allocated);
  const section = report.allocations.find((a) => a?.allocationId === allocation.allocationId);
  const table: Record<string, SerialFate> = section?.serials ?? {};
  if (!section) anomalies.push({ kind: "unaccounted", detail: `the report has no section for allocation ${allocation.allocationId}` });

  for (const s of Object.keys(table)) {
    if (!inAllocation.has(s)) anomalies.push({ kind: "outside-allocation", serial: s, detail: `the report lists ${s} under ${allocation.allocationId}, which does not hold it` });
  }
  let certifiedUnderAllocation = 0;
  for (const [s, allocationId] of reservedUnder) {
    if (allocationId !== allocation.allocationId) continue;
    if (!inAllocation.has(s)) anomalies.push({ kind: "outside-allocation", serial: s, detail: `the ledger reserved ${s} under ${allocation.allocationId}, which does not hold it` });
    if (issued.has(s)) certifiedUnderAllocation++;
  }
  // Invariant 1: whatever was certified outside this allocation must have been reserved under another one the station imported.
  for (const s of certified) {
    if (inAllocation.has(s)) continue;
    const under = reservedUnder.get(s);
    if (lab.has(s)) {
      anomalies.push({ kind: "lab-unit", serial: s, detail: `${s} was certified outside every allocation as a lab unit ("${lab.get(s)}")` });
    } else if (under === undefined || !imported.has(under)) {
      anomalies.push({ kind: "outside-allocation", serial: s, detail: `the ledger certifies ${s}, which no allocation the station imported holds` });
    }
  }
  for (const [s, fingerprints] of issued) {
    if (fingerprints.size > 1 && (inAllocation.has(s) || reservedUnder.get(s) === allocation.allocationId)) {
      anomalies.push({ kind: "issued-twice", serial: s, detail: `${s} received ${fingerprints.size} different certificates` });
    }
  }
  // Invariant 4: a key the station was asked to certify under two serials (a weak RNG or a cloned key it let through).
  for (const [key, serials] of serialsOfKey) {
    if (serials.size > 1) {
      const named = [...serials].sort();
      anomalies.push({ kind: "key-reused", serial: named[0], detail: `one public key (SHA-256 ${key.slice(0, 16)}…) was certified under ${named.length} serials: ${named.join(", ")}` });
    }
  }
  if (certifiedUnderAllocation > allocation.count) {
    anomalies.push({ kind: "count-exceeded", detail: `${certifiedUnderAllocation} units were certified under ${allocation.allocationId}, which allows ${allocation.count}` });
  }

  const totals = { provisioned: 0, scrapped: 0, reserved: 0, unused: 0 };
  for (const s of allocated) {
    const fromLedger = fate.get(s) ?? "unused";
    totals[fromLedger]++;
    const claimed = table[s];
    if (!claimed) {
      if (section) anomalies.push({ kind: "unaccounted", serial: s, detail: `the report does not account for ${s}` });
      continue;
    }
    if (claimed.state !== fromLedger) {
      anomalies.push({ kind: "report-disagrees", serial: s, detail: `the report says ${s} is ${claimed.state}, its ledger says ${fromLedger}` });
    } else if (claimed.state === "provisioned" && !issued.get(s)?.has(claimed.certificateFingerprint)) {
      anomalies.push({ kind: "report-disagrees", serial: s, detail: `the report names a certificate for ${s} that its ledger never issued` });
    }
  }
  return { allocationId: allocation.allocationId, station: stationId, allocated: allocated.length, ...totals, checkpointSize: evidence.size, anomalies };
}
