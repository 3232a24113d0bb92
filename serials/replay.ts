import { createHash } from "node:crypto";

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
// A serial's record is one number: (index of its fate's entry + 1) * RECORD + (certified ? CERTIFIED : 0) + state.
const CERTIFIED = 4;
const RECORD = 8;
// Fingerprints are kept as their first 16 bytes: 128 bits tell certificates and keys apart as
// surely as 256 do here (finding another with the same prefix takes 2^128 work), at half the memory.
const PREFIX_BYTES = 16;

// Anything that is not a SHA-256 in hex (the station wrote it) is hashed first, so every prefix is PREFIX_BYTES latin1 characters.
const prefix = (hex: string): string =>
  (/^[0-9a-f]{64}$/.test(hex) ? Buffer.from(hex, "hex") : createHash("sha256").update(String(hex)).digest()).toString("latin1", 0, PREFIX_BYTES);

/** A number array that grows as ids are handed out. */
function grown<T extends Float64Array | Uint16Array>(a: T, need: number, make: (n: number) => T): T {
  if (need <= a.length) return a;
  const b = make(Math.max(need, 2 * a.length));
  b.set(a);
  return b;
}

/**
 * Replays a station's ledger one entry at a time, keeping per serial only what reconciliation
 * needs: its fate (what its last fate-changing entry made it, and that entry's index), whether
 * the CA was asked to sign for it, the allocation it was reserved under, its certificates and
 * the key it was certified with. Each serial gets a small id and its data lives in typed
 * arrays, so a million-unit ledger streams through in a few hundred bytes a serial.
 */
export class FateReplay {
  size = 0;
  readonly imported = new Set<string>();
  readonly lab = new Map<string, string>();
  readonly #ids = new Map<string, number>();
  readonly #serials: string[] = [];
  #records = new Float64Array(1024);
  #allocation = new Uint16Array(1024);
  readonly #allocationIds: string[] = [];
  // The first certificate of each serial issued one (PREFIX_BYTES per id; #issued[id] says if
  // there is one); the serials given a second, different one.
  #fingerprints = Buffer.alloc(1024 * PREFIX_BYTES);
  #issued = new Uint16Array(1024);
  readonly #moreCertificates = new Map<number, Set<string>>();
  // The first serial each key was put up for; the keys put up for more than one.
  readonly #keys = new Map<string, number>();
  readonly #reusedKeys = new Map<string, Set<number>>();

  #id(serial: string): number {
    let id = this.#ids.get(serial);
    if (id === undefined) {
      id = this.#serials.length;
      this.#ids.set(serial, id);
      this.#serials.push(serial);
      this.#records = grown(this.#records, id + 1, (n) => new Float64Array(n));
      this.#allocation = grown(this.#allocation, id + 1, (n) => new Uint16Array(n));
      this.#issued = grown(this.#issued, id + 1, (n) => new Uint16Array(n));
      if (this.#fingerprints.length < (id + 1) * PREFIX_BYTES) {
        const more = Buffer.alloc(this.#issued.length * PREFIX_BYTES);
        this.#fingerprints.copy(more);
        this.#fingerprints = more;
      }
    }
    return id;
  }

  add(index: number, ev: ReplayedEvent): void {
    this.size = Math.max(this.size, index + 1);
    if (ev.type === "allocation.imported" && ev.allocationId) this.imported.add(ev.allocationId);
    const s = ev.serial;
    if (typeof s !== "string" || !s) return;
    if (ev.type === "serial.outside-allocation") {
      this.lab.set(s, ev.reason ?? "");
      return;
    }
    if (!["signing.intent", "serial.reserved", "serial.released", "certificate.issued", "serial.scrapped"].includes(ev.type)) return;
    const id = this.#id(s);
    const rec = this.#records[id]!;
    const state = STATES[rec % CERTIFIED]!;
    const certified = Math.floor(rec / CERTIFIED) % 2 === 1;
    const set = (next: FateState, at: number | undefined, cert = certified) => {
      const atPlusOne = at === undefined ? Math.floor(rec / RECORD) : at + 1;
      this.#records[id] = atPlusOne * RECORD + (cert ? CERTIFIED : 0) + STATES.indexOf(next);
    };
    if (ev.type === "signing.intent") {
      set(state, undefined, true);
      if (ev.keyFingerprint) this.#keyOf(prefix(ev.keyFingerprint), id);
    } else if (ev.type === "serial.reserved") {
      if (ev.allocationId) this.#allocation[id] = this.#allocationIndex(ev.allocationId) + 1;
      if (state === "unused" || state === "reserved") set("reserved", index);
    } else if (ev.type === "serial.released") {
      if (state === "reserved") set("unused", index);
    } else if (ev.type === "certificate.issued") {
      this.#certificateOf(id, prefix(ev.certificateFingerprint ?? ""));
      set(state === "scrapped" ? "scrapped" : "provisioned", state === "scrapped" ? undefined : index, true);
    } else {
      set("scrapped", index);
    }
  }

  #allocationIndex(allocationId: string): number {
    let i = this.#allocationIds.indexOf(allocationId);
    if (i === -1) i = this.#allocationIds.push(allocationId) - 1;
    return i;
  }

  #firstCertificate(id: number): string | undefined {
    return this.#issued[id] ? this.#fingerprints.toString("latin1", id * PREFIX_BYTES, (id + 1) * PREFIX_BYTES) : undefined;
  }

  #certificateOf(id: number, fp: string): void {
    const first = this.#firstCertificate(id);
    if (first === undefined) {
      this.#fingerprints.write(fp, id * PREFIX_BYTES, "latin1");
      this.#issued[id] = 1;
    } else if (first !== fp) {
      this.#moreCertificates.set(id, (this.#moreCertificates.get(id) ?? new Set([first])).add(fp));
    }
  }

  #keyOf(key: string, id: number): void {
    const first = this.#keys.get(key);
    if (first === undefined) this.#keys.set(key, id);
    else if (first !== id) this.#reusedKeys.set(key, (this.#reusedKeys.get(key) ?? new Set([first])).add(id));
  }

  /** The serial's fate by the ledger, and the index of the entry that made it so (undefined if never touched). */
  fate(serial: string): { state: FateState; at?: number } {
    const id = this.#ids.get(serial);
    const rec = id === undefined ? 0 : this.#records[id]!;
    const atPlusOne = Math.floor(rec / RECORD);
    return { state: STATES[rec % CERTIFIED]!, ...(atPlusOne > 0 ? { at: atPlusOne - 1 } : {}) };
  }

  /** Serials the CA was asked to sign for (an intent names each signature) or that were issued a certificate. */
  *certified(): IterableIterator<string> {
    for (let id = 0; id < this.#serials.length; id++) if (Math.floor(this.#records[id]! / CERTIFIED) % 2 === 1) yield this.#serials[id]!;
  }

  reservedUnder(serial: string): string | undefined {
    const id = this.#ids.get(serial);
    const a = id === undefined ? 0 : this.#allocation[id]!;
    return a === 0 ? undefined : this.#allocationIds[a - 1];
  }

  *reservations(): IterableIterator<[string, string]> {
    for (let id = 0; id < this.#serials.length; id++) {
      const a = this.#allocation[id]!;
      if (a > 0) yield [this.#serials[id]!, this.#allocationIds[a - 1]!];
    }
  }

  /** How many different certificates the serial received. */
  certificates(serial: string): number {
    const id = this.#ids.get(serial);
    if (id === undefined || !this.#issued[id]) return 0;
    return this.#moreCertificates.get(id)?.size ?? 1;
  }

  wasIssued(serial: string, fingerprint: string): boolean {
    const id = this.#ids.get(serial);
    if (id === undefined) return false;
    const fp = prefix(fingerprint);
    return this.#firstCertificate(id) === fp || (this.#moreCertificates.get(id)?.has(fp) ?? false);
  }

  *issuedSerials(): IterableIterator<string> {
    for (let id = 0; id < this.#serials.length; id++) if (this.#issued[id]) yield this.#serials[id]!;
  }

  /** Keys put up for certification under more than one serial (invariant 4), with those serials. */
  *reusedKeys(): IterableIterator<[string, string[]]> {
    for (const [key, ids] of this.#reusedKeys) yield [Buffer.from(key, "latin1").toString("hex"), [...ids].map((id) => this.#serials[id]!).sort()];
  }
}
