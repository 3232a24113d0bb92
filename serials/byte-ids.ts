/**
 * Dense ids 0, 1, 2, ... for distinct strings (serials, fingerprint prefixes), kept off the V8
 * heap: an open-addressing table of ids in an Int32Array and the strings' UTF-8 bytes in one
 * Buffer. A Map of a million strings is ~70 MB of heap, which V8 lets grow to several times
 * its live size before it collects (reconciling a million units peaked at 824 MB); here it is
 * ~30 MB of array buffers the collector never scans or copies.
 */
export class ByteIds {
  #slots = new Int32Array(1 << 12);
  #hashes = new Uint32Array(1 << 11);
  #offsets = new Uint32Array((1 << 11) + 1);
  #bytes = Buffer.alloc(1 << 14);
  #scratch = Buffer.alloc(256);
  size = 0;

  /** The string's id, handing out the next one if it has none and `add` is set; -1 if it has none. */
  id(text: string, add = true): number {
    const length = this.#encode(text);
    const hash = fnv1a(this.#scratch, length);
    const mask = this.#slots.length - 1;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const found = this.#slots[slot]! - 1;
      if (found === -1) {
        if (!add) return -1;
        const id = this.#append(hash, length);
        this.#slots[slot] = id + 1;
        if (2 * this.size > this.#slots.length) this.#rehash();
        return id;
      }
      if (this.#hashes[found] === hash && this.#equals(found, length)) return found;
    }
  }

  text(id: number): string {
    return this.#bytes.toString("utf8", this.#offsets[id], this.#offsets[id + 1]);
  }

  #encode(text: string): number {
    const need = Buffer.byteLength(text, "utf8");
    if (need > this.#scratch.length) this.#scratch = Buffer.alloc(2 * need);
    return this.#scratch.write(text, 0, "utf8");
  }

  #equals(id: number, length: number): boolean {
    const start = this.#offsets[id]!;
    return this.#offsets[id + 1]! - start === length && this.#bytes.compare(this.#scratch, 0, length, start, start + length) === 0;
  }

  #append(hash: number, length: number): number {
    const id = this.size++;
    if (id === this.#hashes.length) {
      this.#hashes = grow(this.#hashes, new Uint32Array(2 * id));
      this.#offsets = grow(this.#offsets, new Uint32Array(2 * id + 1));
    }
    const start = this.#offsets[id]!;
    if (start + length > this.#bytes.length) {
      const more = Buffer.alloc(Math.max(2 * this.#bytes.length, start + length));
      this.#bytes.copy(more, 0, 0, start);
      this.#bytes = more;
    }
    this.#scratch.copy(this.#bytes, start, 0, length);
    this.#hashes[id] = hash;
    this.#offsets[id + 1] = start + length;
    return id;
  }

  #rehash(): void {
    const slots = new Int32Array(2 * this.#slots.length);
    const mask = slots.length - 1;
    for (let id = 0; id < this.size; id++) {
      let slot = this.#hashes[id]! & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = id + 1;
    }
    this.#slots = slots;
  }
}

function grow<T extends Uint32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/** FNV-1a, 32 bits: spreads short, similar strings (SN00000001, SN00000002) over the table. */
function fnv1a(bytes: Buffer, length: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}
