import type { Pool, PoolClient } from "pg";

/**
 * Runs `fn` on a client checked out of `pool`, then gives it back. pg-pool drops its own
 * 'error' listener while a client is out: a connection the server ends between two queries
 * (PostgreSQL stopped) would otherwise be an unhandled 'error' event that ends the process.
 * A client that broke, or that `fn` reports broken (`broke`), is discarded, not handed out again.
 */
export async function withPgClient<T>(pool: Pool, fn: (client: PoolClient, broke: (e: unknown) => void) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: unknown;
  const onError = (e: Error) => (broken = e);
  client.on("error", onError);
  try {
    return await fn(client, (e) => (broken = e));
  } finally {
    client.off("error", onError);
    client.release(broken instanceof Error ? broken : undefined);
  }
}
