import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { withPgClient } from "../../directory/pg-client.js";
import { pgUnavailable, startPgCluster, type PgCluster } from "../postgres.js";

const why = pgUnavailable();
if (why) console.warn(`idmint tests: ${why}`);

describe.skipIf(why !== undefined)(`a checked-out PostgreSQL client whose connection the server ends${why ? ` (skipped: ${why})` : ""}`, () => {
  let cluster: PgCluster;
  let pool: pg.Pool;
  beforeAll(() => {
    cluster = startPgCluster();
    pool = new pg.Pool({ connectionString: cluster.createDb("clients") });
    pool.on("error", () => undefined);
  });
  afterAll(async () => {
    await pool?.end();
    cluster?.stop();
  });

  it("is an error of the work in hand, not of the process (pg-pool holds no listener on it meanwhile), and is not handed out again", async () => {
    const work = withPgClient(pool, async (client) => {
      const { pid } = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!;
      // 'end' comes after the client's 'error': without withPgClient's listener, that 'error' is unhandled and fails this run.
      const ended = new Promise((resolve) => client.once("end", resolve));
      cluster.sql("clients", `SELECT pg_terminate_backend(${pid})`);
      await ended;
      await client.query("SELECT 1");
    });
    await expect(work).rejects.toThrow();
    expect(pool.totalCount).toBe(0);
    expect(await withPgClient(pool, async (client) => (await client.query<{ one: number }>("SELECT 1 AS one")).rows[0]!.one)).toBe(1);
  });
});
