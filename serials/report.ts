import { x509 } from "../pki/index.js";
import { allocationSerials, validateAllocation, type Allocation } from "./allocation.js";
import { openDocument } from "./document.js";
import { SerialsError } from "./errors.js";
import { FateReplay, type FateState } from "./replay.js";

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

/**
 * A report that stays small (format 2): each serial's fate as "STATE@INDEX", the index of the
 * ledger entry that made it so ("unused" alone when none did), and the signed checkpoint the
 * indices are in. The ledger itself travels as C2SP tiles (`idmint ledger tiles`), which the
 * vendor reads entry by entry against that checkpoint. The fates are one text of lines
 * `SERIAL FATE`, not an object: canonicalizing and parsing an object of a million keys cost
 * more memory than the rest of reconciliation together.
 */
export interface UsageReportV2 {
  format: "idmint-usage-report/2";
  station: string;
  generatedAt: string;
  allocations: Array<{ allocationId: string; digest: string; fates: string }>;
  checkpoint: string;
}

/** The ledger as the vendor opened it from the report (see ledger's openExtract). */
export interface LedgerEvidence {
  matchesCheckpoint: boolean;
  size: number;
  malformed: number[];
  entries: Array<{ index: number; event: { type: string; serial?: string; certificateFingerprint?: string; keyFingerprint?: string; reason?: string; allocationId?: string } }>;
}

export async function openAllocation(doc: unknown, root: x509.X509Certificate, at: Date): Promise<{ allocation: Allocation }> {
  const { payload } = await openDocument<Allocation>(doc, root, "allocation-signer", "the allocation list", at);
  validateAllocation(payload);
  return { allocation: payload };
}

export async function openUsageReport(doc: unknown, root: x509.X509Certificate, at: Date): Promise<{ report: UsageReport | UsageReportV2; stationId: string; stationSpki: Uint8Array }> {
  const { payload: report, signer } = await openDocument<UsageReport | UsageReportV2>(doc, root, "station", "the usage report", at);
  const v1 = report.format === "idmint-usage-report/1" && Array.isArray(report.ledger);
  if (!(v1 || report.format === "idmint-usage-report/2") || !Array.isArray(report.allocations) || typeof report.checkpoint !== "string") {
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
 * `idmint serials reconcile` of a whole-ledger report (format 1), once both documents and the
 * report's ledger are opened: replays the ledger and lists every way the report, the ledger and
 * the allocation disagree (allocated = provisioned + scrapped + reserved + unused).
 */
export function reconcile(allocation: Allocation, report: UsageReport, stationId: string, evidence: LedgerEvidence): Reconciliation {
  const anomalies: Anomaly[] = [];
  if (!evidence.matchesCheckpoint) {
    anomalies.push({ kind: "report-disagrees", detail: `the report's ${report.ledger.length} ledger entries do not hash to its signed checkpoint (size ${evidence.size}): the ledger in the report was altered` });
  }
  for (const i of evidence.malformed) anomalies.push({ kind: "report-disagrees", detail: `ledger entry ${i} in the report is malformed` });
  const replay = new FateReplay();
  for (const { index, event } of evidence.entries) replay.add(index, event);
  const section = report.allocations.find((a) => a?.allocationId === allocation.allocationId);
  const claims = section?.serials && Object.entries(section.serials);
  return compareFates(allocation, stationId, replay, evidence.size, anomalies, claims, (s, id, claimed: SerialFate, ledger) => {
    if (claimed.state !== ledger.state) return `the report says ${s} is ${claimed.state}, its ledger says ${ledger.state}`;
    if (claimed.state === "provisioned" && !replay.wasIssued(id, claimed.certificateFingerprint)) return `the report names a certificate for ${s} that its ledger never issued`;
    return undefined;
  });
}

/**
 * `idmint serials reconcile` of a report that names its checkpoint (format 2): `replay` holds
 * the station's ledger read from its tiles (checked against that checkpoint), and each fate the
 * report claims must be what the ledger made of the serial, by the very entry it names.
 */
export function reconcileTiled(allocation: Allocation, report: UsageReportV2, stationId: string, replay: FateReplay, checkpointSize: number): Reconciliation {
  const section = report.allocations.find((a) => a?.allocationId === allocation.allocationId);
  const anomalies: Anomaly[] = [];
  const claims = section && fateLines(String(section.fates), anomalies);
  return compareFates(allocation, stationId, replay, checkpointSize, anomalies, claims, (s, _id, claimed: string, ledger) => {
    const m = /^(provisioned|scrapped|reserved)@(0|[1-9]\d{0,15})$|^unused$/.exec(claimed);
    const state = m ? (m[1] ?? "unused") : undefined;
    if (state !== ledger.state) return `the report says ${s} is ${String(claimed)}, its ledger says ${ledger.state}`;
    if (m?.[2] !== undefined && Number(m[2]) !== ledger.at) return `the report proves ${s} ${state} by ledger entry ${m[2]}, but entry ${ledger.at ?? "(none)"} made it so`;
    return undefined;
  });
}

/** The lines `SERIAL FATE` of a format-2 section, one at a time: the text is never split whole. */
function* fateLines(text: string, anomalies: Anomaly[]): IterableIterator<[string, string]> {
  for (let at = 0; at < text.length; ) {
    let end = text.indexOf("\n", at);
    if (end === -1) end = text.length;
    const line = text.slice(at, end);
    at = end + 1;
    const space = line.indexOf(" ");
    if (space > 0) yield [line.slice(0, space), line.slice(space + 1)];
    else anomalies.push({ kind: "report-disagrees", detail: `the report has a malformed fate line "${line.slice(0, 80)}"` });
  }
}

// Marks per serial id in compareFates.
const ALLOCATED = 1;
const CLAIMED = 2;

/**
 * Every way the report's claims, the replayed ledger and the allocation disagree. Streams: the
 * claims are read once and compared as they come, and what is kept per serial is two bits by
 * the replay's serial id, so a million-serial report adds a megabyte, not a map of a million.
 */
function compareFates<C>(
  allocation: Allocation,
  stationId: string,
  replay: FateReplay,
  checkpointSize: number,
  anomalies: Anomaly[],
  claims: Iterable<[string, C]> | undefined,
  disagreement: (serial: string, id: number, claimed: C, ledger: { state: FateState; at?: number }) => string | undefined,
): Reconciliation {
  if (allocation.station !== stationId) {
    throw new SerialsError("ALLOCATION_STATION", `the report is from station ${stationId} but the allocation is for ${allocation.station}: reconcile a report with its own station's allocation`);
  }
  let marks = new Uint8Array(Math.max(1024, replay.serialIds));
  const mark = (id: number, bit: number) => {
    if (id >= marks.length) {
      const more = new Uint8Array(2 * id);
      more.set(marks);
      marks = more;
    }
    marks[id]! |= bit;
  };
  const has = (id: number, bit: number) => ((marks[id] ?? 0) & bit) !== 0;
  let allocated = 0;
  for (const s of allocationSerials(allocation)) {
    mark(replay.id(s), ALLOCATED);
    allocated++;
  }

  // What the report claims, checked as it is read; these anomalies follow the ledger's own.
  const claimed: Anomaly[] = [];
  if (!claims) anomalies.push({ kind: "unaccounted", detail: `the report has no section for allocation ${allocation.allocationId}` });
  for (const [s, claim] of claims ?? []) {
    const id = replay.id(s);
    if (has(id, CLAIMED)) {
      claimed.push({ kind: "report-disagrees", serial: s, detail: `the report accounts for ${s} twice` });
      continue;
    }
    mark(id, CLAIMED);
    if (!has(id, ALLOCATED)) {
      anomalies.push({ kind: "outside-allocation", serial: s, detail: `the report lists ${s} under ${allocation.allocationId}, which does not hold it` });
      continue;
    }
    const detail = disagreement(s, id, claim, replay.fateOf(id));
    if (detail) claimed.push({ kind: "report-disagrees", serial: s, detail });
  }

  let certifiedUnderAllocation = 0;
  for (const [id, allocationId] of replay.reservations()) {
    if (allocationId !== allocation.allocationId) continue;
    if (!has(id, ALLOCATED)) {
      const s = replay.serialOf(id);
      anomalies.push({ kind: "outside-allocation", serial: s, detail: `the ledger reserved ${s} under ${allocation.allocationId}, which does not hold it` });
    }
    if (replay.certificates(id) > 0) certifiedUnderAllocation++;
  }
  // Invariant 1: whatever was certified outside this allocation must have been reserved under another one the station imported.
  for (const id of replay.certified()) {
    if (has(id, ALLOCATED)) continue;
    const s = replay.serialOf(id);
    const under = replay.reservedUnder(id);
    if (replay.lab.has(s)) {
      anomalies.push({ kind: "lab-unit", serial: s, detail: `${s} was certified outside every allocation as a lab unit ("${replay.lab.get(s)}")` });
    } else if (under === undefined || !replay.imported.has(under)) {
      anomalies.push({ kind: "outside-allocation", serial: s, detail: `the ledger certifies ${s}, which no allocation the station imported holds` });
    }
  }
  for (const id of replay.issuedSerials()) {
    const n = replay.certificates(id);
    if (n > 1 && (has(id, ALLOCATED) || replay.reservedUnder(id) === allocation.allocationId)) {
      const s = replay.serialOf(id);
      anomalies.push({ kind: "issued-twice", serial: s, detail: `${s} received ${n} different certificates` });
    }
  }
  // Invariant 4: a key the station was asked to certify under two serials (a weak RNG or a cloned key it let through).
  for (const [key, named] of replay.reusedKeys()) {
    anomalies.push({ kind: "key-reused", serial: named[0], detail: `one public key (SHA-256 ${key.slice(0, 16)}…) was certified under ${named.length} serials: ${named.join(", ")}` });
  }
  if (certifiedUnderAllocation > allocation.count) {
    anomalies.push({ kind: "count-exceeded", detail: `${certifiedUnderAllocation} units were certified under ${allocation.allocationId}, which allows ${allocation.count}` });
  }
  anomalies.push(...claimed);

  const totals = { provisioned: 0, scrapped: 0, reserved: 0, unused: 0 };
  for (let id = 0; id < marks.length; id++) {
    if (!has(id, ALLOCATED)) continue;
    totals[replay.fateOf(id).state]++;
    if (claims && !has(id, CLAIMED)) {
      const s = replay.serialOf(id);
      anomalies.push({ kind: "unaccounted", serial: s, detail: `the report does not account for ${s}` });
    }
  }
  return { allocationId: allocation.allocationId, station: stationId, allocated, ...totals, checkpointSize, anomalies };
}
