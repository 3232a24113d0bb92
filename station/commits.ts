import type { Db } from "../core/index.js";

interface Pending {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

/**
 * Group commit for the line's slots. Every state change of a unit must be durable
 * (synchronous=FULL) before that unit takes its next step, and one FULL commit costs
 * 0.2-0.3 ms of fsync on these machines: four per unit would cap the line near 1,000
 * units/s before any other work. Changes asked for while the event loop is busy are
 * therefore committed together in one transaction at the next turn (setImmediate), each in
 * a savepoint of its own, so one unit's refusal (a serial already used, a key seen before)
 * rolls back that unit's change alone. Nobody's promise settles before the commit that holds
 * its change: a crash loses only changes no slot has acted on.
 */
export class GroupCommitter {
  private queue: Pending[] = [];
  private scheduled = false;
  private commits = 0;
  private changes = 0;

  constructor(private readonly db: Db) {}

  /** Runs `work` (synchronous SQLite statements) in the next group commit; settles once it is durable. */
  commit<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits made and changes they carried, for the line's summary. */
  get stats(): { commits: number; changes: number } {
    return { commits: this.commits, changes: this.changes };
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      this.db
        .transaction(() => {
          for (const p of batch) {
            try {
              // A transaction function called inside another runs as a savepoint (better-sqlite3).
              outcomes.push({ ok: true, value: this.db.transaction(p.work)() });
            } catch (error) {
              outcomes.push({ ok: false, error });
            }
          }
        })
        .immediate();
    } catch (error) {
      // The commit itself failed (disk full, store locked too long): none of the changes happened.
      for (const p of batch) p.reject(error);
      return;
    }
    this.commits++;
    this.changes += batch.length;
    batch.forEach((p, i) => {
      const o = outcomes[i]!;
      if (o.ok) p.resolve(o.value);
      else p.reject(o.error);
    });
  }
}
