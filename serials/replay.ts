/** A ledger event as reconciliation reads it (every field attacker-controlled: the station wrote them). */
export interface ReplayedEvent {
  type: string;
  serial?: string;
  certificateFingerprint?: string;
  keyFingerprint?: string;
  reason?: string;
  allocationId?: string;
}

export type FateState = "provisioned" | "scrapped" | "reserved" | "unused";

const STATES: readonly FateState[] = ["unused", "reserved", "provisioned", "scrapped"];
// A serial's record is one number: index * RECORD + (certified ? CERTIFIED : 0) + state.
const CERTIFIED = 4;
const RECORD = 8;

// A fingerprint kept as the 32 bytes it encodes (a one-byte string half the size of its hex):
// with a million units these maps are most of reconcile's memory.
const compact = (hex: string): string => (/^[0-9a-f]{64}$/.test(hex) ? Buffer.from(hex, "hex").toString("latin1") : hex);

/**
 * Replays a station's ledger one entry at a time, keeping per serial only what reconciliation
 * needs: its fate (what its last fate-changing entry made it, and that entry's index), whether
 * the CA was asked to sign for it, the allocation it was reserved under, its certificates and
 * the key it was certified with. So a million-unit ledger streams through in one pass.
 */
export class FateReplay {
  size = 0;
  readonly #fates = new Map<string, number>();
  readonly #issued = new Map<string, string | Set<string>>();
  readonly #reservedUnder = new Map<string, string>();
  readonly #allocationIds = new Map<string, string>();
  readonly imported = new Set<string>();
  readonly lab = new Map<string, string>();
  readonly #keys = new Map<string, string | Set<string>>();

  add(index: number, ev: ReplayedEvent): void {
    this.size = Math.max(this.size, index + 1);
    if (ev.type === "allocation.imported" && ev.allocationId) this.imported.add(ev.allocationId);
    const s = ev.serial;
    if (typeof s !== "string" || !s) return;
    const rec = this.#fates.get(s);
    const state = rec === undefined ? "unused" : STATES[rec % CERTIFIED]!;
    const certified = rec !== undefined && Math.floor(rec / CERTIFIED) % 2 === 1;
    const set = (next: FateState, at: number | undefined, cert = certified) => {
      const prevAt = rec === undefined ? 0 : Math.floor(rec / (RECORD));
      this.#fates.set(s, (at ?? prevAt) * RECORD + (cert ? CERTIFIED : 0) + STATES.indexOf(next));
    };
    if (ev.type === "signing.intent") {
      set(state, undefined, true);
      if (ev.keyFingerprint) addTo(this.#keys, compact(ev.keyFingerprint), s);
    } else if (ev.type === "serial.outside-allocation") {
      this.lab.set(s, ev.reason ?? "");
    } else if (ev.type === "serial.reserved") {
      if (ev.allocationId) this.#reservedUnder.set(s, this.#intern(ev.allocationId));
      if (state === "unused" || state === "reserved") set("reserved", index);
    } else if (ev.type === "serial.released") {
      if (state === "reserved") set("unused", index);
    } else if (ev.type === "certificate.issued") {
      addTo(this.#issued, compact(ev.certificateFingerprint ?? ""), s, true);
      set(state === "scrapped" ? "scrapped" : "provisioned", state === "scrapped" ? undefined : index, true);
    } else if (ev.type === "serial.scrapped") {
      set("scrapped", index);
    }
  }

  #intern(id: string): string {
    let v = this.#allocationIds.get(id);
    if (v === undefined) this.#allocationIds.set(id, (v = id));
    return v;
  }

  /** The serial's fate by the ledger, and the index of the entry that made it so (undefined if never touched). */
  fate(serial: string): { state: FateState; at?: number } {
    const rec = this.#fates.get(serial);
    if (rec === undefined) return { state: "unused" };
    return { state: STATES[rec % CERTIFIED]!, at: Math.floor(rec / (RECORD)) };
  }

  /** Serials the CA was asked to sign for (an intent names each signature) or that were issued a certificate. */
  *certified(): IterableIterator<string> {
    for (const [s, rec] of this.#fates) if (Math.floor(rec / CERTIFIED) % 2 === 1) yield s;
  }

  reservedUnder(serial: string): string | undefined {
    return this.#reservedUnder.get(serial);
  }

  *reservations(): IterableIterator<[string, string]> {
    yield* this.#reservedUnder;
  }

  /** How many different certificates the serial received. */
  certificates(serial: string): number {
    const v = this.#issued.get(serial);
    return v === undefined ? 0 : typeof v === "string" ? 1 : v.size;
  }

  wasIssued(serial: string, fingerprint: string): boolean {
    const v = this.#issued.get(serial);
    const fp = compact(fingerprint);
    return v === undefined ? false : typeof v === "string" ? v === fp : v.has(fp);
  }

  *issuedSerials(): IterableIterator<string> {
    yield* this.#issued.keys();
  }

  /** Keys put up for certification under more than one serial (invariant 4), with those serials. */
  *reusedKeys(): IterableIterator<[string, string[]]> {
    for (const [key, serials] of this.#keys) {
      if (typeof serials !== "string") yield [Buffer.from(key, "latin1").toString("hex"), [...serials].sort()];
    }
  }
}

/** Adds `value` under `key`, keeping a lone value as itself and only a second distinct one as a Set. */
function addTo(map: Map<string, string | Set<string>>, key: string, value: string, byValue = false): void {
  const [k, v] = byValue ? [value, key] : [key, value];
  const have = map.get(k);
  if (have === undefined) map.set(k, v);
  else if (typeof have === "string") {
    if (have !== v) map.set(k, new Set([have, v]));
  } else have.add(v);
}
