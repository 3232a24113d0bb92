import { createHash } from "node:crypto";
import { assertSerialSyntax } from "../pki/index.js";
import { canonicalBytes } from "./document.js";
import { SerialsError } from "./errors.js";

/** A compact run of serials: prefix followed by start, start+1, ... zero-padded to width digits. */
export interface SerialRange {
  prefix: string;
  start: number;
  count: number;
  width: number;
}

/** What the vendor authorises one station to make for one production order. */
export interface Allocation {
  format: "idmint-allocation/1";
  allocationId: string;
  order: string;
  station: string;
  model: string;
  notBefore: string;
  notAfter: string;
  count: number;
  /** Exactly one of ranges (from --prefix/--start/--count) or serials (from --from-file). */
  ranges?: SerialRange[];
  serials?: string[];
  /** SHA-256 of each unit's claim code, keyed by serial: the directory answers only to a holder. */
  claimCodeHashes?: Record<string, string>;
  createdAt: string;
}

/** The most serials one allocation may hold: keeps lists and reports a sane size. */
export const MAX_ALLOCATION = 1_000_000;

export function formatSerial(prefix: string, n: number, width: number): string {
  return prefix + String(n).padStart(width, "0");
}

export function expandSerials(a: Pick<Allocation, "ranges" | "serials">): string[] {
  return [...allocationSerials(a)];
}

/** The allocation's serials one at a time: a million-serial range need not be a list in memory. */
export function* allocationSerials(a: Pick<Allocation, "ranges" | "serials">): IterableIterator<string> {
  if (a.serials) {
    yield* a.serials;
    return;
  }
  for (const r of a.ranges ?? []) for (let i = 0; i < r.count; i++) yield formatSerial(r.prefix, r.start + i, r.width);
}

export function allocationDigest(a: Allocation): string {
  return createHash("sha256").update(canonicalBytes(a)).digest("hex");
}

export function claimCodeHash(serial: string, code: string): string {
  return createHash("sha256").update(`idmint-claim/1\n${serial}\n${code}`).digest("hex");
}

const isText = (v: unknown, max = 128): v is string => typeof v === "string" && v.length > 0 && v.length <= max && !/[\u0000-\u001f]/.test(v);
const isTime = (v: unknown): v is string => typeof v === "string" && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/.test(v) && !Number.isNaN(Date.parse(v));
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1 && (v as number) <= MAX_ALLOCATION;

/**
 * Checks an allocation's shape after its signature verified (a signed list can still be
 * malformed if the signer is buggy): every field typed and bounded, serials well-formed and
 * unique, and `count` equal to what the ranges or list hold.
 */
export function validateAllocation(a: Allocation): void {
  const bad = (why: string) => new SerialsError("ALLOCATION_INVALID", `the allocation list is malformed: ${why}`);
  if (a.format !== "idmint-allocation/1") throw bad(`format is ${String(a.format)}, not idmint-allocation/1`);
  for (const f of ["allocationId", "order", "station", "model"] as const) if (!isText(a[f])) throw bad(`${f} is missing or not a short string`);
  if (!isTime(a.notBefore) || !isTime(a.notAfter) || !isTime(a.createdAt)) throw bad("notBefore, notAfter and createdAt must be ISO 8601 UTC times");
  if (Date.parse(a.notAfter) <= Date.parse(a.notBefore)) throw bad("notAfter is not after notBefore");
  if (!isCount(a.count)) throw bad(`count must be 1 to ${MAX_ALLOCATION}`);
  if ((a.ranges === undefined) === (a.serials === undefined)) throw bad("it needs exactly one of ranges or serials");
  if (a.ranges) {
    if (!Array.isArray(a.ranges) || a.ranges.length === 0 || a.ranges.length > 1000) throw bad("ranges must be a non-empty list");
    let total = 0;
    for (const r of a.ranges) {
      if (typeof r?.prefix !== "string" || r.prefix.length > 32 || !Number.isSafeInteger(r.start) || r.start < 0 || !isCount(r.count) || !Number.isInteger(r.width) || r.width < 1 || r.width > 18) {
        throw bad("a range needs a prefix, a start >= 0, a count and a width of 1-18 digits");
      }
      if (String(r.start + r.count - 1).length > r.width) throw bad(`range ${r.prefix}${r.start} + ${r.count} does not fit in ${r.width} digits`);
      total += r.count;
    }
    if (total > MAX_ALLOCATION) throw bad(`it holds more than ${MAX_ALLOCATION} serials`);
  } else if (!Array.isArray(a.serials) || a.serials.length > MAX_ALLOCATION) {
    throw bad("serials must be a list");
  }
  // One range and no claim codes (what `serials allocate --prefix` writes) is unique by construction:
  // its syntax is its first serial's, and a million-serial order need not be listed to be checked.
  const [only] = a.ranges ?? [];
  if (only && a.ranges!.length === 1 && a.claimCodeHashes === undefined) {
    if (only.count !== a.count) throw bad(`count says ${a.count} but it lists ${only.count} serials`);
    assertSerialSyntax(formatSerial(only.prefix, only.start, only.width));
    return;
  }
  const serials = expandSerials(a);
  if (serials.length !== a.count) throw bad(`count says ${a.count} but it lists ${serials.length} serials`);
  const seen = new Set<string>();
  for (const s of serials) {
    if (typeof s !== "string") throw bad("a serial is not a string");
    assertSerialSyntax(s);
    if (seen.has(s)) throw bad(`serial ${s} appears twice`);
    seen.add(s);
  }
  if (a.claimCodeHashes !== undefined) {
    const keys = Object.keys(a.claimCodeHashes);
    if (keys.length !== serials.length || keys.some((k) => !seen.has(k) || !/^[0-9a-f]{64}$/.test(String(a.claimCodeHashes![k])))) {
      throw bad("claimCodeHashes must hold one SHA-256 hex hash per serial");
    }
  }
}
