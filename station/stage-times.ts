// Exact samples up to this many per stage (every ordinary run); past it, a histogram of fixed
// size, so a million-unit line's memory does not grow with its units.
const EXACT_LIMIT = 100_000;
// Log-scale buckets 1% wide from 1 µs: p50/p99 within 1% of the exact value.
const RATIO = Math.log(1.01);
const FLOOR_MS = 0.001;

function bucketOf(ms: number): number {
  return Math.max(0, Math.floor(Math.log(Math.max(ms, FLOOR_MS) / FLOOR_MS) / RATIO));
}

/** One stage's times: exact percentiles while small, then approximate in bounded memory. */
export class StageTimes {
  #exact: number[] | undefined = [];
  readonly #buckets = new Map<number, number>();
  #count = 0;

  add(ms: number): void {
    this.#count++;
    if (this.#exact) {
      this.#exact.push(ms);
      if (this.#exact.length <= EXACT_LIMIT) return;
      for (const v of this.#exact) this.#bin(v);
      this.#exact = undefined;
      return;
    }
    this.#bin(ms);
  }

  #bin(ms: number): void {
    const b = bucketOf(ms);
    this.#buckets.set(b, (this.#buckets.get(b) ?? 0) + 1);
  }

  get count(): number {
    return this.#count;
  }

  /** The nearest-rank percentile (0 when there is no sample). */
  percentile(p: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.min(this.#count, Math.max(1, Math.ceil((p / 100) * this.#count)));
    if (this.#exact) return [...this.#exact].sort((a, b) => a - b)[rank - 1]!;
    let seen = 0;
    for (const b of [...this.#buckets.keys()].sort((x, y) => x - y)) {
      seen += this.#buckets.get(b)!;
      // The bucket's geometric middle.
      if (seen >= rank) return FLOOR_MS * Math.exp((b + 0.5) * RATIO);
    }
    return 0;
  }
}
