import type { Pool, PoolClient, QueryResultRow } from "pg";
import { DirectoryError } from "./errors.js";
import { withPgClient } from "./pg-client.js";
import { applyPgMigrations } from "./pg-migrate.js";
import { checkpointStep, encodeProof, toCertificate, toCheckpoint, toConflict, type CertificateRow, type CheckpointRow, type ConflictRow } from "./rows.js";
import type { AcceptedCheckpoint, AllocationRecord, CommitOutcome, ConflictRecord, DirectoryStore, PublishedCertificate, UploadCommit } from "./store.js";

/** SQLSTATE classes and Node errors that mean "the database is not there now", not "the request is wrong". */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P)/;
const UNAVAILABLE_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "ENOENT", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND"]);

function isUnavailable(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  if (typeof code === "string" && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_ERRNO.has(code))) return true;
  // node-postgres reports a connection lost mid-query or a connect timeout without a code.
  return e instanceof Error && /^Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(e.message);
}

/** A database error becomes STORE_UNAVAILABLE when it is about reaching the database; anything else is rethrown as it is. */
export function storeError(e: unknown): unknown {
  if (isUnavailable(e)) return new DirectoryError("STORE_UNAVAILABLE", `the directory database is unavailable (${(e as Error).message}): retry later`, { cause: e });
  return e;
}

/** Every serial of an allocation is registered under one lock: lists are rare, and this makes the overlap check exact. */
const ALLOCATION_LOCK = "directory.allocations";

/**
 * The directory store in PostgreSQL, for several `directory serve` replicas on one database.
 * Concurrency: an upload's commit takes a transaction-scoped advisory lock on its station
 * (READ COMMITTED), so a station's checkpoints are one chain whatever replica its uploads
 * reach; serials are settled by the primary key, so two certificates for one serial can never
 * both be published. Neither needs a retry loop, unlike SERIALIZABLE under contention.
 */
export class PgDirectoryStore implements DirectoryStore {
  private closed = false;
  constructor(private readonly pool: Pool) {}

  private async query<R extends QueryResultRow>(text: string, values: unknown[] = [], name?: string): Promise<R[]> {
    try {
      return (await this.pool.query<R>({ text, values, ...(name ? { name } : {}) })).rows;
    } catch (e) {
      throw storeError(e);
    }
  }

  /** One transaction on one connection; rolled back when fn throws. */
  private async transaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    try {
      return await withPgClient(this.pool, async (client, broke) => {
        await client.query("BEGIN");
        try {
          const out = await fn(client);
          await client.query("COMMIT");
          return out;
        } catch (e) {
          // A connection whose rollback failed is not handed out again.
          await client.query("ROLLBACK").catch(broke);
          throw e;
        }
      });
    } catch (e) {
      throw storeError(e);
    }
  }

  async latestCheckpoint(station: string): Promise<AcceptedCheckpoint | undefined> {
    const [row] = await this.query<CheckpointRow>("SELECT * FROM directory_checkpoints WHERE station = $1 ORDER BY size DESC LIMIT 1", [station], "latest");
    return row && toCheckpoint(row);
  }

  async checkpointAt(station: string, size: number): Promise<AcceptedCheckpoint | undefined> {
    const [row] = await this.query<CheckpointRow>("SELECT * FROM directory_checkpoints WHERE station = $1 AND size = $2", [station, size], "checkpointAt");
    return row && toCheckpoint(row);
  }

  async allocationOf(serial: string): Promise<{ station: string; allocationId: string } | undefined> {
    const [row] = await this.query<{ station: string; allocationId: string }>('SELECT station, allocation_id AS "allocationId" FROM directory_serials WHERE serial = $1', [serial], "allocationOf");
    return row;
  }

  async allocationCount(): Promise<number> {
    const [row] = await this.query<{ n: number }>("SELECT COUNT(*)::int AS n FROM directory_allocations", [], "allocationCount");
    return row!.n;
  }

  async published(serial: string): Promise<{ der: Uint8Array; fingerprint: string } | undefined> {
    const [row] = await this.query<{ der: Buffer; fingerprint: string }>("SELECT der, fingerprint FROM directory_certificates WHERE serial = $1", [serial], "published");
    return row;
  }

  async certificate(serial: string): Promise<PublishedCertificate | undefined> {
    const [row] = await this.query<CertificateRow>("SELECT * FROM directory_certificates WHERE serial = $1", [serial], "certificate");
    return row && toCertificate(row);
  }

  async recentCertificates(limit: number): Promise<Array<{ serial: string; der: Uint8Array; fingerprint: string }>> {
    return this.query("SELECT serial, der, fingerprint FROM directory_certificates ORDER BY seq DESC LIMIT $1", [limit]);
  }

  async addAllocation(a: AllocationRecord, at: string): Promise<{ added: boolean; count: number }> {
    return this.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [ALLOCATION_LOCK]);
      const [held] = (await client.query<{ station: string; digest: string; count: number }>("SELECT station, digest, count FROM directory_allocations WHERE allocation_id = $1", [a.allocationId])).rows;
      if (held) {
        if (held.digest !== a.digest || held.station !== a.station) {
          throw new DirectoryError("ALLOCATION_CONFLICT", `the directory already holds a different allocation ${a.allocationId}: two lists with one id come from a broken or forged register`);
        }
        return { added: false, count: held.count };
      }
      const [owner] = (
        await client.query<{ serial: string; station: string; allocation_id: string }>("SELECT serial, station, allocation_id FROM directory_serials WHERE serial = ANY($1::text[]) LIMIT 1", [a.serials])
      ).rows;
      const twice = owner ? undefined : a.serials.find((s, i) => a.serials.indexOf(s) !== i);
      if (owner || twice !== undefined) {
        throw new DirectoryError(
          "ALLOCATION_CONFLICT",
          owner
            ? `serial ${owner.serial} of ${a.allocationId} already belongs to ${owner.allocation_id} (station ${owner.station}): the vendor allocated it twice; nothing was registered`
            : `serial ${twice} is twice in ${a.allocationId}: the vendor allocated it twice; nothing was registered`,
        );
      }
      await client.query("INSERT INTO directory_allocations (allocation_id, station, digest, count, added_at) VALUES ($1, $2, $3, $4, $5)", [a.allocationId, a.station, a.digest, a.serials.length, at]);
      await client.query("INSERT INTO directory_serials (serial, station, allocation_id) SELECT s, $2, $3 FROM unnest($1::text[]) AS s", [a.serials, a.station, a.allocationId]);
      return { added: true, count: a.serials.length };
    });
  }

  async commitUpload(c: UploadCommit): Promise<CommitOutcome> {
    try {
      return await this.transaction(async (client) => {
        await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [`directory.station/${c.station}`]);
        const [current] = (await client.query<CheckpointRow>("SELECT size, root FROM directory_checkpoints WHERE station = $1 ORDER BY size DESC LIMIT 1", [c.station])).rows;
        const step = checkpointStep(current, c);
        if (step === "STALE") return { ok: false, reason: "STALE" } as const;
        if (step === "advance") {
          await client.query("INSERT INTO directory_checkpoints (station, size, root, note, station_certificate, accepted_at) VALUES ($1, $2, $3, $4, $5, $6)", [
            c.station,
            c.checkpoint.size,
            Buffer.from(c.checkpoint.root),
            c.checkpoint.note,
            c.checkpoint.stationCertificate,
            c.at,
          ]);
        }
        const certs = c.certificates;
        const col = <T>(f: (p: PublishedCertificate) => T) => certs.map(f);
        // ON CONFLICT waits for a concurrent insert of the same serial (another replica) and then skips it.
        const inserted = await client.query<{ serial: string }>(
          `INSERT INTO directory_certificates (serial, der, fingerprint, certificate_serial, station, ledger_index, entry, checkpoint_size, inclusion_proof, issued_at, published_at)
           SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bytea[], $8::bigint[], $9::text[], $10::text[], $11::text[])
           ON CONFLICT DO NOTHING RETURNING serial`,
          [
            col((p) => p.serial),
            col((p) => Buffer.from(p.der)),
            col((p) => p.fingerprint),
            col((p) => p.certificateSerial),
            col((p) => p.station),
            col((p) => p.ledgerIndex),
            col((p) => Buffer.from(p.entry)),
            col((p) => p.checkpointSize),
            col((p) => encodeProof(p.inclusionProof)),
            col((p) => p.issuedAt),
            col((p) => p.publishedAt),
          ],
        );
        const fresh = new Set(inserted.rows.map((r) => r.serial));
        const others = certs.filter((p) => !fresh.has(p.serial));
        if (others.length > 0) {
          const held = new Map(
            (await client.query<{ serial: string; fingerprint: string }>("SELECT serial, fingerprint FROM directory_certificates WHERE serial = ANY($1::text[])", [others.map((p) => p.serial)])).rows.map((r) => [r.serial, r.fingerprint]),
          );
          const conflict = others.find((p) => held.get(p.serial) !== p.fingerprint);
          if (conflict) throw new ConflictAbort(conflict.serial);
        }
        return {
          ok: true,
          checkpointAdvanced: step === "advance",
          published: certs.filter((p) => fresh.has(p.serial)).map((p) => p.serial),
          alreadyPublished: others.map((p) => p.serial),
        } as const;
      });
    } catch (e) {
      // Thrown inside the transaction, so everything it wrote was rolled back.
      if (e instanceof ConflictAbort) return { ok: false, reason: "CONFLICT", serial: e.serial };
      throw e;
    }
  }

  async recordConflicts(conflicts: readonly ConflictRecord[]): Promise<void> {
    if (conflicts.length === 0) return;
    const col = <T>(f: (c: ConflictRecord) => T) => conflicts.map(f);
    await this.query(
      `INSERT INTO directory_conflicts (serial, der, fingerprint, station, ledger_index, entry, checkpoint_note, inclusion_proof, held_fingerprint, received_at)
       SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::bigint[], $6::bytea[], $7::text[], $8::text[], $9::text[], $10::text[])
       ON CONFLICT (serial, fingerprint) DO NOTHING`,
      [
        col((c) => c.serial),
        col((c) => Buffer.from(c.der)),
        col((c) => c.fingerprint),
        col((c) => c.station),
        col((c) => c.ledgerIndex),
        col((c) => Buffer.from(c.entry)),
        col((c) => c.checkpointNote),
        col((c) => encodeProof(c.inclusionProof)),
        col((c) => c.heldFingerprint),
        col((c) => c.receivedAt),
      ],
    );
  }

  async conflicts(serial?: string): Promise<ConflictRecord[]> {
    const rows =
      serial === undefined
        ? await this.query<ConflictRow>("SELECT * FROM directory_conflicts ORDER BY id")
        : await this.query<ConflictRow>("SELECT * FROM directory_conflicts WHERE serial = $1 ORDER BY id", [serial]);
    return rows.map(toConflict);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/** Thrown inside the commit transaction to roll it back when a serial turned out to be held by another certificate. */
class ConflictAbort extends Error {
  constructor(readonly serial: string) {
    super(`serial ${serial} is held by another certificate`);
  }
}

export interface PgStoreOptions {
  /** Connections this process keeps (default 10). */
  maxConnections?: number;
  /** How long a request waits for a connection before the store is called unavailable (default 2 s). */
  connectTimeoutMs?: number;
}

/** Connects to the directory's PostgreSQL database and brings its schema up to date (refused if it is newer than this code). */
export async function openPgStore(url: string, options: PgStoreOptions = {}): Promise<PgDirectoryStore> {
  // Loaded here, not at the top: the embedded default (SQLite) never pays for it.
  const { default: pg } = await import("pg");
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 2000,
    // BIGINT columns (sizes, indexes) as numbers, as the SQLite store returns them.
    types: { getTypeParser: (oid: number, format?: "text" | "binary") => (oid === 20 ? (v: string) => Number(v) : (pg.types.getTypeParser as (o: number, f?: string) => (v: string) => unknown)(oid, format)) },
  } as ConstructorParameters<typeof pg.Pool>[0]);
  // An idle connection cut by the server (restart, failover) must not end the process; the next query reconnects.
  pool.on("error", () => undefined);
  try {
    await applyPgMigrations(pool, url);
  } catch (e) {
    await pool.end();
    throw storeError(e);
  }
  return new PgDirectoryStore(pool);
}
