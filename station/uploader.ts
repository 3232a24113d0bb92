import type { Db } from "../core/index.js";
import { DirectoryClient, DirectoryError, buildUpload, signUpload, type RefusalReason, type UploadReceipt } from "../directory/client/index.js";
import type { Signer } from "../hsm/index.js";
import type { Ledger } from "../ledger/index.js";
import type { UnitStore } from "./store.js";

export interface UploaderDeps {
  db: Db;
  ledger: Ledger;
  units: UnitStore;
  client: DirectoryClient;
  stationId: string;
  stationCertificatePem: string;
  /** The station key (in the HSM): signs checkpoints and uploads. */
  signer: Signer;
  origin: string;
  /** What the uploader is doing, for a progress display (library code never prints). */
  onEvent?: (e: UploadEvent) => void;
}

export interface UploadRefusal {
  serial: string;
  reason: RefusalReason;
  message: string;
}

export type UploadEvent =
  /** Work begins: `pending` certificates are queued, `retried` of them refused before. */
  | { type: "start"; pending: number; retried: number }
  /** One request settled a batch; `retried` refused certificates went back in the queue after it. */
  | { type: "batch"; sent: number; refused: readonly UploadRefusal[]; retried: number; pending: number }
  /** The directory was away or busy: the next attempt comes in `retryInMs`. */
  | { type: "waiting"; error: string; retryInMs: number };

export interface UploadResult {
  /** Certificates the directory confirmed in this run (published now or before). */
  sent: number;
  /** Requests that settled a batch. */
  batches: number;
  /** Certificates refused in this run, by the directory's reason. */
  refused: Partial<Record<RefusalReason, number>>;
  refusedSerials: UploadRefusal[];
  /** Refused certificates sent again in this run. */
  retried: number;
  pending: number;
  /** Certificates now refused as unallocated: sent again once the directory knows more allocations. */
  awaitingAllocation: number;
  /** Why the last attempt failed, when certificates are still pending. */
  lastError?: string;
}

/**
 * The one refusal the directory may take back: a serial it did not know was allocated (the
 * vendor registers allocations with `directory allocations add`, maybe after the line ran).
 * Every other refusal is final (another certificate holds the serial, the serial is another
 * station's, the chain, profile, entry or proof is wrong) and is never sent again.
 */
const AWAITS_ALLOCATION: RefusalReason = "SERIAL_UNALLOCATED";

/** Worth trying again later: the directory was away or busy, or our view of its state was stale. */
const RETRYABLE = new Set<RefusalReason>(["BUSY", "PREVIOUS_SIZE_MISMATCH", "INTERNAL"]);

function retryable(e: unknown): boolean {
  if (!(e instanceof DirectoryError)) return false;
  if (e.code === "DIRECTORY_UNREACHABLE" || e.code === "BAD_RESPONSE") return true;
  return e.code === "REFUSED" && e.reason !== undefined && RETRYABLE.has(e.reason);
}

/**
 * Drains the station's outbox to the directory in batches: each batch carries a fresh
 * checkpoint, the consistency proof from the one the directory last accepted, and each
 * certificate's ledger entry with its inclusion proof, signed by the station key. The
 * directory's answer settles the whole batch: each certificate is marked sent or refused
 * only after the directory said so, and it treats a repeated upload as a no-op, so a crash
 * or a lost answer on either side ends exactly once.
 *
 * A certificate refused as unallocated goes back in the queue as soon as an answer shows
 * the directory holds more allocation lists than when it refused: only then can its answer
 * differ. Every answer carries that number; if nothing else is to be sent, one
 * certificate-free upload per uploader asks for it.
 */
export class Uploader {
  private readonly deps: UploaderDeps;
  private readonly batchSize: number;
  private readonly maxBackoffMs: number;
  private stopped = false;
  private askedAllocations = false;
  private wake: (() => void) | undefined;

  constructor(deps: UploaderDeps, options: { batchSize?: number; maxBackoffMs?: number } = {}) {
    this.deps = deps;
    this.batchSize = options.batchSize ?? 200;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
  }

  private async send(batch: ReadonlyArray<{ serial: string; certificate: string }>, previousSize: number): Promise<UploadReceipt> {
    const d = this.deps;
    const checkpoint = await d.ledger.checkpoint(d.signer, d.origin);
    const content = buildUpload({ ledger: d.ledger, station: d.stationId, checkpoint, previousSize, certificates: batch });
    return d.client.upload(await signUpload(content, d.signer, d.stationCertificatePem));
  }

  /** Records what the directory said of each certificate of a batch, and what its answer puts back in the queue, in one transaction. */
  private settle(receipt: UploadReceipt, result: UploadResult): void {
    const d = this.deps;
    const sent = [...receipt.published, ...receipt.alreadyPublished];
    const refused = receipt.refused.map((r): UploadRefusal => ({ serial: r.serial, reason: r.code, message: r.message }));
    const retried = d.db
      .transaction(() => {
        d.units.markSent(sent);
        for (const r of refused) d.units.markRefused(r.serial, r.reason, r.message, receipt.allocations);
        d.ledger.append({ type: "upload.sent", directory: d.client.url, certificates: sent.length, checkpointSize: receipt.checkpoint.size });
        return d.units.requeueRefused(AWAITS_ALLOCATION, receipt.allocations);
      })
      .immediate();
    result.sent += sent.length;
    result.batches++;
    result.retried += retried;
    for (const r of refused) result.refused[r.reason] = (result.refused[r.reason] ?? 0) + 1;
    result.refusedSerials.push(...refused);
    d.onEvent?.({ type: "batch", sent: sent.length, refused, retried, pending: d.units.pendingUploads() });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /**
   * Uploads everything pending, retrying with backoff while the directory is away, until
   * nothing is pending or `deadlineMs` passed. `retryRefused` first puts back in the queue
   * every certificate refused as unallocated, whatever the directory's count. A refusal about
   * the station itself (unknown, bad signature, rewritten history) is thrown: retrying cannot
   * fix it.
   */
  async flush(deadlineMs: number, options: { retryRefused?: boolean } = {}): Promise<UploadResult> {
    const { units, client, stationId, onEvent } = this.deps;
    const result: UploadResult = { sent: 0, batches: 0, refused: {}, refusedSerials: [], retried: 0, pending: 0, awaitingAllocation: 0 };
    if (options.retryRefused) result.retried = units.requeueRefused(AWAITS_ALLOCATION);
    onEvent?.({ type: "start", pending: units.pendingUploads(), retried: result.retried });
    const end = Date.now() + deadlineMs;
    let backoff = 250;
    // The directory's accepted checkpoint size: asked once, then taken from each receipt.
    let previousSize: number | undefined;
    for (;;) {
      const batch = units.nextUploads(this.batchSize);
      if (batch.length === 0 && (this.askedAllocations || (units.refusedByReason()[AWAITS_ALLOCATION] ?? 0) === 0)) break;
      // Any answer tells the allocation count; a certificate-free upload asks for it only once.
      this.askedAllocations = true;
      try {
        // Asked first: while the directory is away, no checkpoint is signed for nothing.
        previousSize ??= await client.acceptedSize(stationId);
        const receipt = await this.send(batch, previousSize);
        previousSize = receipt.checkpoint.size;
        this.settle(receipt, result);
        backoff = 250;
      } catch (e) {
        previousSize = e instanceof DirectoryError ? e.acceptedSize : undefined;
        if (!retryable(e)) throw e;
        result.lastError = (e as Error).message;
        if (Date.now() + backoff > end || this.stopped) break;
        onEvent?.({ type: "waiting", error: result.lastError, retryInMs: backoff });
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, this.maxBackoffMs);
      }
    }
    result.pending = units.pendingUploads();
    result.awaitingAllocation = units.refusedByReason()[AWAITS_ALLOCATION] ?? 0;
    return result;
  }

  /**
   * Uploads in the background while the line runs, every `intervalMs`; a directory that is
   * down or slow never stops the line. Resolves when `stop()` was called and the round under
   * way ended.
   */
  async runInBackground(intervalMs: number, onError: (e: unknown) => void): Promise<void> {
    while (!this.stopped) {
      try {
        await this.flush(intervalMs);
      } catch (e) {
        onError(e);
      }
      if (!this.stopped) await this.sleep(intervalMs);
    }
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }
}
