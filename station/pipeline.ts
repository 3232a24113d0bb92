import { isDamagedStore, isIdmintError, type Random } from "../core/index.js";
import { stopsTheLine } from "../hsm/index.js";
import { assertSerialSyntax, checkCsr, checkSignedKeyRequest, type CheckedCsr, type IdevidIssuer } from "../pki/index.js";
import type { KeyRequest, UnitKeyAlgorithm, UnitLink } from "../link/index.js";
import type { GroupCommitter } from "./commits.js";
import { StationError } from "./errors.js";
import { issueCertificate, type IssueStep } from "./issue.js";
import type { UnitStore } from "./store.js";

/** The steps of one unit, in order; each is a place a crash test may kill the station. */
export const STEPS = ["hello", "genkey", "intent", "signed", "issued", "installed", "delivered"] as const;
export type Step = (typeof STEPS)[number];

/** Stages whose time the summary reports (p50/p99). */
export type TimedStage = "hello" | "genkey" | "check" | "intent" | "sign" | "store" | "install" | "total";
const STAGE_OF: Record<IssueStep, TimedStage> = { intent: "intent", signed: "sign", issued: "store" };

export interface LineContext {
  /** Every change to the store goes through here: durable before the unit's next step, grouped across slots. */
  commits: GroupCommitter;
  /** Read only: where each unit stands when it says hello. */
  units: UnitStore;
  /** The factory CA: its IDevID issuer (the key in the HSM) and the chain a unit is given. */
  ca: { issuer: IdevidIssuer; chainPems: string[] };
  keyAlgorithm: UnitKeyAlgorithm;
  random: Random;
  /** Called after each step; a test hook kills the process here. */
  reached?(step: Step, serial: string): void;
}

export interface UnitOutcome {
  serial?: string;
  status: "provisioned" | "failed";
  /** For a failure: a stable code and a one-line reason. */
  code?: string;
  reason?: string;
  /** A request the unit sent itself (CMP), refused before anything was stored. */
  refused?: boolean;
  /** Provisioned earlier and only confirmed now, or delivered again after a crash. */
  resumed?: boolean;
  certificateFingerprint?: string;
  ms: Partial<Record<TimedStage, number>>;
}

class UnitFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function failure(e: unknown): UnitFailure {
  if (e instanceof UnitFailure) return e;
  if (isIdmintError(e)) return new UnitFailure(e.code, e.message);
  return new UnitFailure("INTERNAL", e instanceof Error ? e.message : String(e));
}

/**
 * One unit through the hot path (DESIGN.md): hello, the unit's CSR, proof of possession, the
 * serial's reservation with a ledger intent before the CA signs, one transaction for the
 * certificate, install on the unit, delivery recorded. Every state change is in SQLite
 * before the step that depends on it, so a killed station resumes each unit where it stood:
 * a unit whose certificate was signed and stored gets that same certificate again.
 * `slotFree` is called once the unit holds its certificate and the fixture slot may take the
 * next unit; the outcome follows when the delivery is recorded. `inFlight` holds the serials
 * the line's other slots are provisioning: a unit claiming one of them is refused at once
 * (a clone, or a fixture reporting one unit twice), before it costs a signature, and nothing
 * is recorded against the serial, whose row is the other unit's.
 */
export async function provisionUnit(link: UnitLink<KeyRequest>, ctx: LineContext, slot: { slotFree?: () => void; inFlight?: Set<string> } = {}): Promise<UnitOutcome> {
  const { slotFree, inFlight } = slot;
  const ms: UnitOutcome["ms"] = {};
  const started = performance.now();
  let mark = started;
  const lap = (stage: TimedStage) => {
    const now = performance.now();
    ms[stage] = (ms[stage] ?? 0) + (now - mark);
    mark = now;
  };
  let serial: string | undefined;
  /** The unit's certificate is on record: its serial is spent, whatever happens next. */
  let certified = false;
  /** The unit's intent is on record, or its certificate is being handed again: from here on its failure is the station's to record. */
  let intended = false;
  /** This unit holds its serial in `inFlight`: its failure is recorded against the serial. */
  let claimed = false;
  try {
    const hello = await link.hello();
    serial = hello.serial;
    assertSerialSyntax(serial);
    if (inFlight?.has(serial)) {
      throw new StationError("SERIAL_BUSY", `serial ${serial} is being provisioned in another slot: two units claim it (a clone, or the fixture reports one unit twice): check the fixture`);
    }
    inFlight?.add(serial);
    claimed = true;
    lap("hello");
    ctx.reached?.("hello", serial);

    const row = ctx.units.get(serial);
    certified = row?.stage === "delivered" || row?.stage === "issued";
    // A unit that came with its request (CMP) and asks again after a lost answer or a crash: the same key gets the same certificate.
    if (certified && link.requestFirst && row?.certificate) {
      const again = await checkKeyRequest(await link.genkey(ctx.keyAlgorithm), serial);
      if (again.keyFingerprint !== row.keyFingerprint) {
        throw new StationError("SERIAL_PROVISIONED", `serial ${serial} already has a certificate, for another key: a serial gets one certificate; this unit may be a clone`);
      }
      intended = true;
      if (row.stage === "issued") return await deliver(link, ctx, serial, row.certificate, row.certificateFingerprint ?? "", ms, started, lap, true, slotFree);
      return await handAgain(link, ctx, serial, row.certificate, row.certificateFingerprint ?? "", ms, started);
    }
    if (row?.stage === "delivered") return await confirmDelivered(link, serial, row.certificateFingerprint ?? "", ms, started);
    if (row?.stage === "issued" && row.certificate) {
      return await deliver(link, ctx, serial, row.certificate, row.certificateFingerprint ?? "", ms, started, lap, true, slotFree);
    }

    const s = serial;
    // The serial is checked and reserved in the intent's commit, once the unit's CSR is in
    // hand: one commit fewer per unit than reserving first, and still before anything is
    // signed. A refused serial costs the unit no more than a key it never uses.
    const request = await link.genkey(ctx.keyAlgorithm);
    lap("genkey");
    ctx.reached?.("genkey", serial);
    const checked = await checkKeyRequest(request, serial);
    lap("check");

    // Invariants 1, 2 and 4 (issue.ts): the serial's reservation, the key and the ledger's
    // intent in one commit before the CA signs, the certificate stored in the next.
    const cert = await issueCertificate({
      commits: ctx.commits,
      issuer: ctx.ca.issuer,
      serial: s,
      csr: checked,
      random: ctx.random,
      step: (step) => {
        lap(STAGE_OF[step]);
        if (step === "intent") intended = true;
        if (step === "issued") certified = true;
        ctx.reached?.(step, s);
      },
    });
    return await deliver(link, ctx, serial, cert.pem + "\n", cert.fingerprint, ms, started, lap, false, slotFree);
  } catch (e) {
    // A damaged store fails the station, not this unit: the line ends with it (exit 5).
    if (isDamagedStore(e)) throw e;
    const f = failure(e);
    // A request refused before its intent (CMP: anyone with the line's secret may send one)
    // is answered and not recorded: nothing of it was stored, and a stranger's serials grow no rows.
    const refusedRequest = link.requestFirst === true && !intended;
    if (claimed && !refusedRequest) await recordFailure(ctx, serial!, f, !certified);
    link.failed?.(f.code, f.message);
    // So does an HSM that is gone for good (exit 4); the serial nothing was signed for is free again.
    if (stopsTheLine(e)) throw e;
    ms.total = performance.now() - started;
    return { serial, status: "failed", code: f.code, reason: f.message, ...(refusedRequest ? { refused: true } : {}), ms };
  } finally {
    if (claimed) inFlight?.delete(serial!);
  }
}

async function deliver(
  link: UnitLink<KeyRequest>,
  ctx: LineContext,
  serial: string,
  pem: string,
  fingerprint: string,
  ms: UnitOutcome["ms"],
  started: number,
  lap: (s: TimedStage) => void,
  resumed: boolean,
  slotFree: (() => void) | undefined,
): Promise<UnitOutcome> {
  // Whatever the answer, nothing more is asked of this unit: its slot may seat the next one meanwhile.
  const ack = await link.install(pem, ctx.ca.chainPems, { last: true });
  if (ack.fingerprint !== fingerprint) {
    throw new StationError("INSTALL_MISMATCH", `unit ${serial} acknowledged certificate ${ack.fingerprint.slice(0, 16)}…, not the one it was given: check the unit`);
  }
  lap("install");
  ctx.reached?.("installed", serial);
  // The unit holds its certificate: its slot may take the next unit while this is recorded.
  // (HOME/certs/SERIAL.pem is on disk before the record: see the store writer.)
  slotFree?.();
  await ctx.commits.commit({ op: "delivered", serial, pem, fingerprint });
  link.delivered?.();
  ctx.reached?.("delivered", serial);
  ms.total = performance.now() - started;
  return { serial, status: "provisioned", certificateFingerprint: fingerprint, resumed, ms };
}

function checkKeyRequest(request: KeyRequest, serial: string): Promise<CheckedCsr> {
  return "csr" in request ? checkCsr(request.csr, serial) : checkSignedKeyRequest(request.signedRequest, serial);
}

/** A delivered unit that asked again with its certificate's key (its answer was lost): the certificate again, nothing recorded anew. */
async function handAgain(link: UnitLink<KeyRequest>, ctx: LineContext, serial: string, pem: string, fingerprint: string, ms: UnitOutcome["ms"], started: number): Promise<UnitOutcome> {
  const ack = await link.install(pem, ctx.ca.chainPems, { last: true });
  if (ack.fingerprint !== fingerprint) {
    throw new StationError("INSTALL_MISMATCH", `unit ${serial} acknowledged certificate ${ack.fingerprint.slice(0, 16)}…, not the one it was given: check the unit`);
  }
  link.delivered?.();
  ms.total = performance.now() - started;
  return { serial, status: "provisioned", certificateFingerprint: fingerprint, resumed: true, ms };
}

/** A unit presenting a serial that is already delivered: the same unit again, or a clone. */
async function confirmDelivered(link: UnitLink<KeyRequest>, serial: string, fingerprint: string, ms: UnitOutcome["ms"], started: number): Promise<UnitOutcome> {
  const st = await link.status();
  ms.total = performance.now() - started;
  if (st.state === "provisioned" && st.fingerprint === fingerprint) {
    return { serial, status: "provisioned", certificateFingerprint: fingerprint, resumed: true, ms };
  }
  throw new UnitFailure("SERIAL_PROVISIONED", `serial ${serial} was already provisioned and this unit does not hold its certificate: it may be a clone`);
}

async function recordFailure(ctx: LineContext, serial: string, f: UnitFailure, releaseSerial: boolean): Promise<void> {
  try {
    // No certificate is on record for the unit: its serial, if this station holds it (this
    // run's intent or a killed run's), may go to a good unit later.
    await ctx.commits.commit({ op: "failed", serial, code: f.code, message: f.message, releaseSerial });
  } catch {
    // The failure is reported either way; a store that cannot record it fails the next unit too.
  }
}
