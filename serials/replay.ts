import { createHash } from "node:crypto";
import { ByteIds } from "./byte-ids.js";

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
// Fingerprints are kept as their first 16 bytes (32 hex digits): 128 bits tell certificates and
// keys apart as surely as 256 do here (finding another with the same prefix takes 2^128 work), at half the memory.
const PREFIX_HEX = 32;
const FATE_EVENTS = new Set(["signing.intent", "serial.reserved", "serial.released", "certificate.issued", "serial.scrapped"]);

// Anything that is not a SHA-256 in hex (the station wrote it) is hashed first, so every prefix is PREFIX_HEX hex digits.
const prefix = (hex: string): string => (/^[0-9a-f]{64}$/.test(hex) ? hex : createHash("sha256").update(String(hex)).digest("hex")).slice(0, PREFIX_HEX);

/** A number array that grows as ids are handed out. */
function grown<T extends Float64Array | Uint16Array | Uint32Array>(a: T, need: number, make: (n: number) => T): T {
  if (need <= a.length) return a;
  const b = make(Math.max(need, 2 * a.length));
  b.set(a);
  return b;
}

/**
 * Replays a station's ledger one entry at a time, keeping per serial only what reconciliation
 * needs: its fate (what its last fate-changing entry made it, and that entry's index), whether
 * the CA was asked to sign for it, the allocation it was reserved under, its certificates and
 * the key it was certified with. Serials and keys get dense ids (ByteIds) and their data lives
 * in typed arrays, off the V8 heap, so a million-unit ledger streams through in about a hundred
 * bytes a serial.
 */
export class FateReplay {
  size = 0;
  readonly imported = new Set<string>();
  readonly lab = new Map<string, string>();
  readonly #serials = new ByteIds();
  #records = new Float64Array(1024);
  #allocation = new Uint16Array(1024);
  readonly #allocationIds: string[] = [];
  // The first certificate of each serial issued one (PREFIX_HEX / 2 bytes per id; #issued[id]
  // says if there is one); the serials given a second, different one.
  #fingerprints = Buffer.alloc((1024 * PREFIX_HEX) / 2);
  #issued = new Uint16Array(1024);
  readonly #moreCertificates = new Map<number, Set<string>>();
  // Per key id, the first serial it was put up for (+ 1); the keys put up for more than one.
  readonly #keys = new ByteIds();
  #keyFirstSerial = new Uint32Array(1024);
  readonly #reusedKeys = new Map<number, Set<number>>();

  /** The serial's id, handed out on first sight: every serial the replay or a report names has one. */
  id(serial: string): number {
    const id = this.#serials.id(serial);
    this.#records = grown(this.#records, id + 1, (n) => new Float64Array(n));
    this.#allocation = grown(this.#allocation, id + 1, (n) => new Uint16Array(n));
    this.#issued = grown(this.#issued, id + 1, (n) => new Uint16Array(n));
    if (this.#fingerprints.length < ((id + 1) * PREFIX_HEX) / 2) {
      const more = Buffer.alloc((this.#issued.length * PREFIX_HEX) / 2);
      this.#fingerprints.copy(more);
      this.#fingerprints = more;
    }
    return id;
  }

  /** How many serials have an id (ids are 0 .. serialIds - 1). */
  get serialIds(): number {
    return this.#serials.size;
  }

  serialOf(id: number): string {
    return this.#serials.text(id);
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
    if (!FATE_EVENTS.has(ev.type)) return;
    const id = this.id(s);
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
    return this.#issued[id] ? this.#fingerprints.toString("hex", (id * PREFIX_HEX) / 2, ((id + 1) * PREFIX_HEX) / 2) : undefined;
  }

  #certificateOf(id: number, fp: string): void {
    const first = this.#firstCertificate(id);
    if (first === undefined) {
      this.#fingerprints.write(fp, (id * PREFIX_HEX) / 2, "hex");
      this.#issued[id] = 1;
    } else if (first !== fp) {
      this.#moreCertificates.set(id, (this.#moreCertificates.get(id) ?? new Set([first])).add(fp));
    }
  }

  #keyOf(key: string, id: number): void {
    const keyId = this.#keys.id(key);
    this.#keyFirstSerial = grown(this.#keyFirstSerial, keyId + 1, (n) => new Uint32Array(n));
    const first = this.#keyFirstSerial[keyId]! - 1;
    if (first === -1) this.#keyFirstSerial[keyId] = id + 1;
    else if (first !== id) this.#reusedKeys.set(keyId, (this.#reusedKeys.get(keyId) ?? new Set([first])).add(id));
  }

  /** The fate of the serial with this id by the ledger, and the index of the entry that made it so (undefined if never touched). */
  fateOf(id: number): { state: FateState; at?: number } {
    const rec = this.#records[id]!;
    const atPlusOne = Math.floor(rec / RECORD);
    return { state: STATES[rec % CERTIFIED]!, ...(atPlusOne > 0 ? { at: atPlusOne - 1 } : {}) };
  }

  /** Ids of the serials the CA was asked to sign for (an intent names each signature) or that were issued a certificate. */
  *certified(): IterableIterator<number> {
    for (let id = 0; id < this.#serials.size; id++) if (Math.floor(this.#records[id]! / CERTIFIED) % 2 === 1) yield id;
  }

  reservedUnder(id: number): string | undefined {
    const a = this.#allocation[id]!;
    return a === 0 ? undefined : this.#allocationIds[a - 1];
  }

  /** Ids of the serials reserved under an allocation, with its id. */
  *reservations(): IterableIterator<[number, string]> {
    for (let id = 0; id < this.#serials.size; id++) {
      const a = this.#allocation[id]!;
      if (a > 0) yield [id, this.#allocationIds[a - 1]!];
    }
  }

  /** How many different certificates the serial with this id received. */
  certificates(id: number): number {
    if (!this.#issued[id]) return 0;
    return this.#moreCertificates.get(id)?.size ?? 1;
  }

  wasIssued(id: number, fingerprint: string): boolean {
    const fp = prefix(fingerprint);
    return this.#firstCertificate(id) === fp || (this.#moreCertificates.get(id)?.has(fp) ?? false);
  }

  /** Ids of the serials issued a certificate. */
  *issuedSerials(): IterableIterator<number> {
    for (let id = 0; id < this.#serials.size; id++) if (this.#issued[id]) yield id;
  }

  /** Keys put up for certification under more than one serial (invariant 4), with those serials. */
  *reusedKeys(): IterableIterator<[string, string[]]> {
    for (const [keyId, ids] of this.#reusedKeys) yield [this.#keys.text(keyId), [...ids].map((id) => this.serialOf(id)).sort()];
  }
}
