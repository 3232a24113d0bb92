import type { Worker } from "node:worker_threads";
import { setTimeout as sleep } from "node:timers/promises";
import { siblingWorker } from "../../core/index.js";
import { HsmError, pkcs11Failure } from "../errors.js";
import { hashFor, type KeyAlgorithm, type Signer } from "../signer.js";
import { Pkcs11Module } from "./module.js";
import { RECOVERABLE, RECOVERABLE_CODES, type FromPoolWorker, type PoolFailure, type PoolCall, type PoolKey, type ToPoolWorker } from "./pool-messages.js";
import { signInput } from "./signer.js";

/** How the pool's HSM is doing, as the line shows it: gone since a time, or back after an outage. */
export type HsmStatus = { state: "unreachable"; since: Date; cause: string } | { state: "back"; since: Date; outageMs: number };

export interface HsmOutageStats {
  sessions: number;
  outages: number;
  /** Milliseconds the HSM was unreachable, over all outages (one under way counts so far). */
  outageMs: number;
  /** Signatures asked for again after an outage: the first may or may not have been made; only one came back. */
  signaturesRetried: number;
}

export interface SigningPoolOptions {
  /** Sessions (and threads) per key: as many signatures at once. */
  sessions: number;
  /** How long the pool waits for an unreachable HSM before it gives up (HSM_UNREACHABLE). */
  waitMs: number;
  /** A signature (or reconnect) not answered within this long counts as the HSM gone. */
  callTimeoutMs?: number;
  onStatus?(status: HsmStatus): void;
}

/** A pool key with what the main thread learnt of it. */
export interface PooledKey extends PoolKey {
  algorithm: KeyAlgorithm;
  spki: Uint8Array<ArrayBuffer>;
  /** How the key is named in messages. */
  name: string;
}

const DEFAULT_CALL_TIMEOUT_MS = 30_000;
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5_000;
const GROW_RETRY_MS = 1_000;

interface Job {
  key: number;
  data: Buffer;
  outBytes: number;
  retried: boolean;
  onRetry?(): void;
  resolve(signature: Uint8Array<ArrayBuffer>): void;
  reject(e: unknown): void;
}

class Failed extends Error {
  constructor(readonly failure: PoolFailure) {
    super(failure.message);
  }
}

/** One pool thread and the call it is answering (at most one: its PKCS#11 calls are synchronous). */
class Lane {
  private nextId = 1;
  private pending: { id: number; resolve(m: FromPoolWorker): void; reject(e: unknown): void; timer: NodeJS.Timeout } | undefined;
  readonly exited: Promise<void>;
  /** The thread is gone (crashed) or given up on (a call timed out): it takes no more calls. */
  ended = false;

  constructor(
    private readonly worker: Worker,
    private readonly timeoutMs: number,
  ) {
    this.exited = new Promise((resolve) => worker.once("exit", () => ((this.ended = true), resolve())));
    worker.on("message", (m: FromPoolWorker) => this.settle(m.id, (p) => p.resolve(m)));
    worker.on("error", (e) => this.settle(undefined, (p) => p.reject(e)));
    worker.on("exit", (code) => this.settle(undefined, (p) => p.reject(new Failed({ message: `a signing thread ended (exit code ${code})`, ckr: "CKR_DEVICE_ERROR" }))));
  }

  get busy(): boolean {
    return this.pending !== undefined;
  }

  /** Asks the thread one thing; a thread that does not answer in time is left to end and counts as the HSM gone. */
  call(m: PoolCall): Promise<FromPoolWorker> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(id, (p) => p.reject(new Failed({ message: `the HSM did not answer within ${this.timeoutMs / 1000} s`, ckr: "CKR_DEVICE_ERROR" })));
        // Stuck in a PKCS#11 call: it ends once that returns; a fresh thread takes its place now.
        this.ended = true;
        void this.worker.terminate();
      }, this.timeoutMs);
      this.pending = { id, resolve, reject, timer };
      // A call under way keeps the process alive until it is answered; an idle thread does not.
      this.worker.ref();
      this.worker.postMessage({ ...m, id } satisfies ToPoolWorker);
    });
  }

  private settle(id: number | undefined, how: (p: NonNullable<Lane["pending"]>) => void): void {
    const p = this.pending;
    if (!p || (id !== undefined && p.id !== id)) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    this.worker.unref();
    how(p);
  }

  async close(): Promise<void> {
    this.worker.ref();
    this.worker.postMessage({ type: "close" } satisfies ToPoolWorker);
    await this.exited;
  }
}

/** What no reconnect mends: a PIN refused (tried once, never again), a key gone, or not a PKCS#11 failure at all. */
function final(e: unknown): boolean {
  return !(e instanceof Failed) || ["PIN_INCORRECT", "PIN_LOCKED", "KEY_NOT_FOUND"].includes(e.failure.code ?? "");
}

function recoverable(e: unknown): boolean {
  if (!(e instanceof Failed)) return false;
  return (e.failure.ckr !== undefined && RECOVERABLE.has(e.failure.ckr)) || (e.failure.code !== undefined && RECOVERABLE_CODES.has(e.failure.code));
}

/**
 * Signing with keys in a PKCS#11 HSM off the event loop: `sessions` threads, each with its
 * own session (C_SignInit and C_Sign stay paired on it), take signatures from one queue, so
 * a slow or distant HSM makes signatures wait, not the station. When the HSM goes away
 * (a dropped session, a device error, a call that never returns) the pool stops handing out
 * work, keeps every waiting signature queued (nobody fails for it), and reconnects with
 * backoff: the first thread alone first, so a PIN that is now wrong is tried once, never
 * looped; every key handle is looked up again. After `waitMs` it gives up and every waiting
 * signature fails with HSM_UNREACHABLE.
 */
export class SigningPool {
  private lanes: Lane[] = [];
  private readonly queue: Job[] = [];
  private state: "up" | "down" | "failed" | "closed" = "up";
  private fatal: Error | undefined;
  private downSince = 0;
  private readonly stats: HsmOutageStats;
  private recovering: Promise<void> | undefined;
  /** The latest thread's connect (see connect). */
  private connecting: Promise<unknown> = Promise.resolve();
  /** After a thread failed to join, the pool waits this long before growing again. */
  private growAfter = 0;
  /** Sessions being added (see grow). */
  private readonly growing = new Set<Promise<void>>();
  private module: Pkcs11Module | undefined;
  private readonly timeoutMs: number;
  /** Cuts a reconnect's backoff short when the pool closes. */
  private readonly closing = new AbortController();

  private constructor(
    private readonly modulePath: string,
    private readonly keys: PooledKey[],
    private readonly options: SigningPoolOptions,
  ) {
    this.timeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.stats = { sessions: options.sessions, outages: 0, outageMs: 0, signaturesRetried: 0 };
  }

  /** Starts the first thread and connects it; more follow as signatures wait (grow). The module stays loaded until close(). */
  static async open(modulePath: string, keys: PooledKey[], options: SigningPoolOptions): Promise<SigningPool> {
    const pool = new SigningPool(modulePath, keys, options);
    pool.module = Pkcs11Module.acquire(modulePath);
    try {
      pool.lanes = [pool.newLane()];
      await pool.connectAll();
    } catch (e) {
      await pool.close();
      throw e instanceof Failed ? pool.errorOf(e, "connecting to the HSM") : e;
    }
    return pool;
  }

  signer(key: number): Signer {
    const k = this.keys[key]!;
    const { input, outBytes } = signInput(k.algorithm);
    return {
      algorithm: k.algorithm,
      hash: hashFor(k.algorithm),
      publicKeySpki: k.spki,
      sign: (data, options) =>
        new Promise((resolve, reject) => {
          if (this.state === "failed" || this.state === "closed") return reject(this.fatal ?? new HsmError("CLOSED", "the HSM signing pool is already closed"));
          this.queue.push({ key, data: input(data), outBytes, retried: false, onRetry: options?.onRetry, resolve, reject });
          this.dispatch();
        }),
    };
  }

  get outages(): HsmOutageStats {
    const ongoing = this.state === "down" ? performance.now() - this.downSince : 0;
    return { ...this.stats, outageMs: Math.round(this.stats.outageMs + ongoing) };
  }

  private newLane(): Lane {
    const worker = siblingWorker(import.meta.url, "pool-worker", { module: this.modulePath, keys: this.keys.map(({ token, serial, object, id, pin, mechanism }) => ({ token, serial, object, id, pin, mechanism })) });
    worker.unref();
    return new Lane(worker, this.timeoutMs);
  }

  /**
   * The first thread (a wrong PIN is met once, and decides), then the others; one of those
   * that fails for any reason but a final one is dropped, and the pool grows again later.
   */
  private async connectAll(): Promise<void> {
    const [first, ...rest] = this.lanes;
    await this.connect(first!);
    const dropped = new Set<Lane>();
    await Promise.all(
      rest.map((lane) =>
        this.connect(lane).catch(async (e: unknown) => {
          if (final(e)) throw e;
          dropped.add(lane);
          await lane.close();
        }),
      ),
    );
    this.lanes = this.lanes.filter((l) => !dropped.has(l));
  }

  /**
   * One thread's module instance, session, login and key handles, one thread at a time:
   * p11-kit's client crashed (SIGSEGV) on C_Initialize from several threads at once, and
   * answered CKR_GENERAL_ERROR when one thread initialised while others logged in.
   */
  private async connect(lane: Lane): Promise<void> {
    const connected = this.connecting.then(() => this.expectDone(lane.call({ type: "connect" })));
    this.connecting = connected.then(
      () => undefined,
      () => undefined,
    );
    await connected;
  }

  private async expectDone(answer: Promise<FromPoolWorker>): Promise<FromPoolWorker & { type: "done" }> {
    const m = await answer;
    if (m.type === "failed") throw new Failed(m.failure);
    return m;
  }

  private dispatch(): void {
    if (this.state !== "up") return;
    // A thread that crashed is dropped; grow() replaces it if signatures wait.
    this.lanes = this.lanes.filter((l) => !l.ended);
    for (const lane of this.lanes) {
      if (this.queue.length === 0) return;
      if (lane.busy) continue;
      const job = this.queue.shift()!;
      this.expectDone(lane.call({ type: "sign", key: job.key, data: job.data, outBytes: job.outBytes })).then(
        (m) => {
          job.resolve(new Uint8Array(m.signature!));
          this.dispatch();
        },
        (e) => {
          if (recoverable(e) && this.state !== "closed") {
            if (!job.retried) {
              this.stats.signaturesRetried++;
              job.onRetry?.();
            }
            job.retried = true;
            this.queue.unshift(job);
            this.down(e as Failed);
          } else {
            job.reject(e instanceof Failed ? this.errorOf(e, `signing with ${this.keys[job.key]!.name}`) : e);
            this.dispatch();
          }
        },
      );
    }
    while (this.queue.length > this.growing.size && this.lanes.length + this.growing.size < this.options.sessions && performance.now() >= this.growAfter) {
      const growth: Promise<void> = this.grow().finally(() => this.growing.delete(growth));
      this.growing.add(growth);
    }
  }

  /**
   * One more session while signatures wait and the pool is below its size: a short run starts
   * one thread, not one per slot; a line of K slots soon has K.
   */
  private async grow(): Promise<void> {
    const lane = this.newLane();
    try {
      await this.connect(lane);
    } catch (e) {
      await lane.close();
      if (final(e)) return this.fail(e instanceof Failed ? this.errorOf(e, "opening one more HSM session") : e);
      if (recoverable(e) || this.lanes.length === 0) return this.down(e as Failed);
      // The pool signs on with the sessions it has and tries again in a while.
      this.growAfter = performance.now() + GROW_RETRY_MS;
      setTimeout(() => this.dispatch(), GROW_RETRY_MS);
      return;
    }
    if (this.state !== "up") return lane.close();
    this.lanes.push(lane);
    this.dispatch();
  }

  private down(cause: Failed): void {
    if (this.state !== "up") return;
    this.state = "down";
    this.downSince = performance.now();
    this.stats.outages++;
    this.options.onStatus?.({ state: "unreachable", since: new Date(), cause: describe(cause) });
    this.recovering = this.recover(cause);
  }

  private async recover(first: Failed): Promise<void> {
    let last = first;
    let backoff = FIRST_BACKOFF_MS;
    for (;;) {
      // Calls still out on other threads end first (each answers or times out).
      while (this.growing.size > 0 || this.lanes.some((l) => l.busy)) await sleep(10);
      if (this.state !== "down") return;
      try {
        this.replaceEndedLanes();
        await this.connectAll();
        break;
      } catch (e) {
        if (final(e)) return this.fail(e instanceof Failed ? this.errorOf(e, "reconnecting to the HSM") : e);
        last = e as Failed;
      }
      const left = this.options.waitMs - (performance.now() - this.downSince);
      if (left <= 0) {
        const seconds = Math.round(this.options.waitMs / 1000);
        return this.fail(
          new HsmError("HSM_UNREACHABLE", `the HSM has not answered for ${seconds} s (${describe(last)}): the run stops; bring the HSM back, then run it again (--hsm-wait sets how long the line waits)`),
        );
      }
      await sleep(Math.min(backoff, left), undefined, { signal: this.closing.signal }).catch(() => undefined);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
    const outageMs = performance.now() - this.downSince;
    this.stats.outageMs += outageMs;
    this.state = "up";
    this.options.onStatus?.({ state: "back", since: new Date(), outageMs: Math.round(outageMs) });
    this.dispatch();
  }

  /** A thread that ended (stuck past its timeout, or crashed) is replaced before reconnecting. */
  private replaceEndedLanes(): void {
    this.lanes = this.lanes.map((lane) => (lane.ended ? this.newLane() : lane));
  }

  private fail(e: unknown): void {
    if (this.state === "closed" || this.state === "failed") return;
    if (this.state === "down") this.stats.outageMs += performance.now() - this.downSince;
    this.state = "failed";
    this.fatal = e instanceof Error ? e : new Error(String(e));
    for (const job of this.queue.splice(0)) job.reject(this.fatal);
  }

  private errorOf(e: Failed, doing: string): HsmError {
    const f = e.failure;
    if (f.code === "PIN_INCORRECT") return new HsmError("PIN_INCORRECT", `${f.message} (${doing}): fix the PIN in its pin-source; idmint tried once and will not retry, as real HSMs lock after a few failures`);
    if (f.code === "PIN_LOCKED") return new HsmError("PIN_LOCKED", `${f.message} (${doing}): have the security officer unlock it`);
    if (f.code === "KEY_NOT_FOUND") return new HsmError("KEY_NOT_FOUND", `${f.message} (${doing}): restore the key, or check the key URI in idmint.json`);
    if (f.code === "TOKEN_NOT_FOUND") return new HsmError("TOKEN_NOT_FOUND", `${f.message} (${doing}): check that the HSM is reachable and the token present`);
    return pkcs11Failure(doing, new Error(f.ckr ?? f.message));
  }

  /** Fails whatever still waits, ends every thread and releases the module; idempotent. */
  async close(): Promise<void> {
    if (this.state === "closed") return;
    this.fail(new HsmError("CLOSED", "the HSM signing pool closed while signatures were waiting"));
    this.state = "closed";
    this.closing.abort();
    await this.recovering;
    await Promise.all(this.growing);
    await Promise.all(this.lanes.map((l) => l.close()));
    this.module?.release();
    this.module = undefined;
  }
}

function describe(e: Failed): string {
  return e.failure.ckr ?? e.failure.code ?? e.failure.message;
}
