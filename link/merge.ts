import type { KeyRequest, UnitFixture, UnitLink } from "./driver.js";

interface Source {
  fixture: UnitFixture<KeyRequest>;
  /** Its next() is under way: one at a time, so no source seats units no slot asked for. */
  asking: boolean;
  done: boolean;
}

/**
 * Several fixtures as one (e.g. the simulator and the CMP endpoint beside it): each slot's
 * unit comes from whichever source has one first; the line ends when every source has no more.
 */
export class MergedFixture implements UnitFixture<KeyRequest> {
  private readonly sources: Source[];
  private readonly ready: UnitLink<KeyRequest>[] = [];
  private readonly waiting: Array<{ resolve(link: UnitLink<KeyRequest> | undefined): void; reject(e: unknown): void }> = [];

  constructor(fixtures: UnitFixture<KeyRequest>[]) {
    this.sources = fixtures.map((fixture) => ({ fixture, asking: false, done: false }));
  }

  next(): Promise<UnitLink<KeyRequest> | undefined> {
    const link = this.ready.shift();
    if (link) return Promise.resolve(link);
    if (this.sources.every((s) => s.done)) return Promise.resolve(undefined);
    const waiting = new Promise<UnitLink<KeyRequest> | undefined>((resolve, reject) => this.waiting.push({ resolve, reject }));
    this.ask();
    return waiting;
  }

  private ask(): void {
    for (const source of this.sources) {
      if (source.done || source.asking || this.waiting.length === 0) continue;
      source.asking = true;
      source.fixture.next().then(
        (link) => {
          source.asking = false;
          if (link) {
            const waiter = this.waiting.shift();
            if (waiter) waiter.resolve(link);
            else this.ready.push(link);
          } else {
            source.done = true;
            if (this.sources.every((s) => s.done)) for (const w of this.waiting.splice(0)) w.resolve(undefined);
          }
          this.ask();
        },
        (e: unknown) => {
          source.asking = false;
          source.done = true;
          for (const w of this.waiting.splice(0)) w.reject(e);
        },
      );
    }
  }

  async close(): Promise<void> {
    let first: unknown;
    for (const link of this.ready.splice(0)) await link.close();
    for (const s of this.sources) await s.fixture.close().catch((e: unknown) => (first ??= e));
    if (first !== undefined) throw first;
  }
}
