import type { Worker } from "node:worker_threads";
import { fromWireError, siblingWorker, toWireError, type WireError } from "../core/index.js";
import { StationError } from "./errors.js";
import type { UnitChange } from "./changes.js";

/** What the writer thread is started with. */
export interface WriterOptions {
  dbPath: string;
  owner: string;
  /** The station's clock when it is fixed (IDMINT_NOW), as ISO 8601; the system clock otherwise. */
  now?: string;
  busyTimeoutMs?: number;
  /** Where each issued unit's certificate is copied as SERIAL.pem (HOME/certs), before its delivery is recorded; no copies when absent. */
  certsDir?: string;
}

export type ToWriter = { type: "commit"; id: number; changes: UnitChange[] } | { type: "close" };
export type FromWriter =
  | { type: "committed"; id: number; outcomes: Array<{ ok: true } | { ok: false; error: WireError }> }
  | { type: "failed"; id: number; error: WireError };

/**
 * Batches the writer may hold at once: one, so that what arrives during a commit groups into
 * the next; on a CPU-bound line more, smaller commits cost more than the wait they save
 * (bench/README.md).
 */
const MAX_IN_FLIGHT = 1;

interface Pending {
  change: UnitChange;
  resolve: () => void;
  reject: (reason: unknown) => void;
}

/**
 * Group commit for the line's slots. Every change of a unit must be durable
 * (synchronous=FULL) before that unit takes its next step, and a FULL commit's fsync made
 * on the event loop for each change would cap the line. So the changes are made by a worker
 * thread (store-writer.ts) with its own connection, many to a commit: whatever the slots
 * ask for while one commit is under way goes into the next, each in a savepoint of its own,
 * so a refusal (a serial already used, a key seen before) undoes that change alone. Nobody's
 * promise settles before the commit that holds its change: a crash loses only changes that
 * no slot has acted on.
 */
export class GroupCommitter {
  private readonly worker: Worker;
  private queue: Pending[] = [];
  /** Batches sent to the writer and not yet answered, oldest first (the writer takes them in order). */
  private readonly inFlight = new Map<number, Pending[]>();
  private scheduled = false;
  private nextId = 1;
  private dead: Error | undefined;
  private closing: Promise<void> | undefined;
  /** Who waits for every change asked for so far to settle (close). */
  private idleWaiters: Array<() => void> = [];
  private commits = 0;
  private changes = 0;

  constructor(options: WriterOptions) {
    this.worker = siblingWorker(import.meta.url, "store-writer", options);
    // An idle writer never keeps a station alive; one with changes under way does (send, settle).
    this.worker.unref();
    this.worker.on("message", (m: FromWriter) => this.settle(m));
    this.worker.on("error", (e: unknown) => this.fail(e));
    this.worker.on("exit", (code) => this.fail(new StationError("STORE_WRITER", `the station store's writer thread ended (exit code ${code})`)));
  }

  /** Makes `change` in the next group commit; settles once it is durable, or rejects with its refusal. */
  commit(change: UnitChange): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.closing) return reject(new StationError("STORE_WRITER", "the station store's writer is closed"));
      if (this.dead) return reject(this.dead);
      this.queue.push({ change, resolve, reject });
      this.schedule();
    });
  }

  /** Commits made and changes they carried, for the line's summary. */
  get stats(): { commits: number; changes: number } {
    return { commits: this.commits, changes: this.changes };
  }

  /** Waits for the changes asked for so far, then ends the writer thread. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.inFlight.size || this.queue.length) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      if (this.dead) return;
      const exited = new Promise<void>((resolve) => this.worker.once("exit", () => resolve()));
      // Waiting for the writer's exit is what keeps this process alive now.
      this.worker.ref();
      this.worker.postMessage({ type: "close" } satisfies ToWriter);
      await exited;
    })();
    return this.closing;
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight.size >= MAX_IN_FLIGHT) return;
    this.scheduled = true;
    // The next turn of the event loop: what every slot asks for in this one shares the commit.
    setImmediate(() => {
      this.scheduled = false;
      this.send();
    });
  }

  private send(): void {
    if (this.inFlight.size >= MAX_IN_FLIGHT || this.queue.length === 0 || this.dead) return;
    const batch = this.queue;
    this.queue = [];
    const id = this.nextId++;
    this.inFlight.set(id, batch);
    this.worker.ref();
    this.worker.postMessage({ type: "commit", id, changes: batch.map((p) => p.change) } satisfies ToWriter);
  }

  private settle(m: FromWriter): void {
    const batch = this.inFlight.get(m.id);
    if (!batch) return;
    this.inFlight.delete(m.id);
    if (m.type === "failed") {
      // The commit itself failed (disk full, store locked too long): none of its changes happened.
      const error = fromWireError(m.error);
      for (const p of batch) p.reject(error);
    } else {
      this.commits++;
      this.changes += batch.length;
      batch.forEach((p, i) => {
        const o = m.outcomes[i]!;
        if (o.ok) p.resolve();
        else p.reject(fromWireError(o.error));
      });
    }
    // What queued up during this commit goes at once: the slots are already waiting.
    if (this.queue.length) this.send();
    else if (this.inFlight.size === 0) this.becameIdle();
  }

  private becameIdle(): void {
    this.worker.unref();
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private fail(e: unknown): void {
    if (this.dead) return;
    const wire = toWireError(e);
    // A damaged store stays what it is (exit 5); anything else that ends the writer is a bug.
    this.dead = wire.code === "DB_DAMAGED" ? fromWireError(wire) : new StationError("STORE_WRITER", `the station store's writer thread failed: ${wire.message}`);
    const waiting = [...[...this.inFlight.values()].flat(), ...this.queue];
    this.inFlight.clear();
    this.queue = [];
    for (const p of waiting) p.reject(this.dead);
    this.becameIdle();
  }
}
