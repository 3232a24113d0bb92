import type { Db } from "../core/index.js";
import { DirectoryClient, DirectoryError, buildUpload, signUpload, type RefusalReason } from "../directory/client/index.js";
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
}

export interface UploadResult {
  uploaded: number;
  batches: number;
  refused: Array<{ serial: string; reason: string }>;
  pending: number;
  /** Why the last attempt failed, when certificates are still pending. */
  lastError?: string;
}

/** Worth trying again later: the directory was away or busy, or our view of its state was stale. */
const RETRYABLE = new Set<RefusalReason>(["BUSY", "PREVIOUS_SIZE_MISMATCH", "INTERNAL"]);
/** About one certificate, not the station: isolate it and send the rest. */
const PER_CERTIFICATE = new Set<RefusalReason>(["SERIAL_UNALLOCATED", "SERIAL_NOT_ALLOWED", "CONFLICT", "CHAIN_INVALID", "PROFILE_VIOLATION", "LEDGER_MISMATCH", "PROOF_INVALID"]);

function retryable(e: unknown): boolean {
  if (!(e instanceof DirectoryError)) return false;
  if (e.code === "DIRECTORY_UNREACHABLE" || e.code === "BAD_RESPONSE") return true;
  return e.code === "REFUSED" && e.reason !== undefined && RETRYABLE.has(e.reason);
}

/**
 * Drains the station's outbox to the directory in batches: each batch carries a fresh
 * checkpoint, the consistency proof from the one the directory last accepted, and each
 * certificate's ledger entry with its inclusion proof, signed by the station key. A row is
 * marked sent only after the directory said so, and the directory treats a repeated upload as
 * a no-op, so a crash or a lost answer on either side ends exactly-once.
 */
export class Uploader {
  private readonly deps: UploaderDeps;
  private readonly batchSize: number;
  private readonly maxBackoffMs: number;
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(deps: UploaderDeps, options: { batchSize?: number; maxBackoffMs?: number } = {}) {
    this.deps = deps;
    this.batchSize = options.batchSize ?? 200;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
  }

  private async send(batch: ReadonlyArray<{ serial: string; certificate: string }>): Promise<void> {
    const d = this.deps;
    // Ask the directory first: while it is away, no checkpoint is signed for nothing.
    const previousSize = await d.client.acceptedSize(d.stationId);
    const checkpoint = await d.ledger.checkpoint(d.signer, d.origin);
    const content = buildUpload({ ledger: d.ledger, station: d.stationId, checkpoint, previousSize, certificates: batch });
    const receipt = await d.client.upload(await signUpload(content, d.signer, d.stationCertificatePem));
    d.db
      .transaction(() => {
        d.units.markSent(batch.map((b) => b.serial));
        d.ledger.append({ type: "upload.sent", directory: d.client.url, certificates: receipt.published.length + receipt.alreadyPublished.length, checkpointSize: checkpoint.size });
      })
      .immediate();
  }

  /** Sends one batch; a per-certificate refusal is narrowed down to the certificate at fault. */
  private async sendIsolating(batch: ReadonlyArray<{ serial: string; certificate: string }>, result: UploadResult): Promise<void> {
    try {
      await this.send(batch);
      result.uploaded += batch.length;
      result.batches++;
    } catch (e) {
      if (!(e instanceof DirectoryError) || e.code !== "REFUSED" || !e.reason || !PER_CERTIFICATE.has(e.reason)) throw e;
      if (batch.length === 1) {
        this.deps.units.markRefused(batch[0]!.serial, `${e.reason}: ${e.message}`);
        result.refused.push({ serial: batch[0]!.serial, reason: e.reason });
        return;
      }
      const half = Math.ceil(batch.length / 2);
      await this.sendIsolating(batch.slice(0, half), result);
      await this.sendIsolating(batch.slice(half), result);
    }
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
   * nothing is pending or `deadlineMs` passed. A refusal about the station itself (unknown,
   * bad signature, rewritten history) is thrown: retrying cannot fix it.
   */
  async flush(deadlineMs: number): Promise<UploadResult> {
    const result: UploadResult = { uploaded: 0, batches: 0, refused: [], pending: 0 };
    const end = Date.now() + deadlineMs;
    let backoff = 250;
    for (;;) {
      const batch = this.deps.units.nextUploads(this.batchSize);
      if (batch.length === 0) break;
      try {
        await this.sendIsolating(batch, result);
        backoff = 250;
      } catch (e) {
        if (!retryable(e)) throw e;
        result.lastError = (e as Error).message;
        if (Date.now() + backoff > end || this.stopped) break;
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, this.maxBackoffMs);
      }
    }
    result.pending = this.deps.units.pendingUploads();
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
