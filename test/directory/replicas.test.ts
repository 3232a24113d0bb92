import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import type { Home } from "../../core/index.js";
import { parseStoreLocation } from "../../directory/index.js";
import { idmint, openssl, scratch, type Run } from "../helpers.js";
import { directoryCli, forgeIdevid, makeHome, must, postSigned, stationUpload, withLedger } from "./fixture.js";
import { addStation, freePort, idmintAsync, roundRobin, startReplica, type Replica } from "./replicas.js";
import { onStore, testStores, useStore } from "./stores.js";

/** Units per station: small in `npm test`; IDMINT_REPLICA_UNITS=5000 runs the full size. */
const UNITS = Number(process.env.IDMINT_REPLICA_UNITS ?? 300);
const MORE = 100;

onStore("postgres", () => {
  const s = scratch("directory-replicas");
  const stores = testStores("postgres", s.dir);
  let vendor: ReturnType<typeof makeHome>;
  let station2: Home;
  let location: string;
  let db: pg.Client;
  const ports: number[] = [];
  const replicas: Replica[] = [];
  const cli2 = (...args: string[]): Run => idmint(["--home", station2.root, ...args]);
  const count = async (sql: string, values: unknown[] = []) => Number((await db.query<{ n: string }>(sql, values)).rows[0]!.n);
  const published = () => count("SELECT COUNT(*) AS n FROM directory_certificates");

  beforeAll(async () => {
    vendor = makeHome(s.dir, "vendor");
    location = stores.fresh("replicas");
    useStore(vendor.h, location);
    station2 = await addStation(vendor.h, s.dir, "station-2");
    for (const [station, prefix, importer] of [["station-1", "SN", vendor.cli], ["station-2", "SB", cli2]] as const) {
      const list = join(s.dir, `${station}.json`);
      must(vendor.cli("serials", "allocate", "--order", `PO-${station}`, "--station", station, "--model", "RT-1", "--count", String(UNITS + MORE + 1), "--prefix", prefix, "--start", "1", "--out", list), "allocate");
      must(directoryCli(vendor.home, "allocations", "add", list), "directory allocations add");
      must(importer("serials", "import", list), "serials import");
    }
    must(vendor.cli("station", "run", "--sim", String(UNITS), "--slots", "4"), "station-1 run");
    must(cli2("station", "run", "--sim", String(UNITS), "--slots", "4"), "station-2 run");
    db = new pg.Client({ connectionString: (parseStoreLocation(location) as { url: string }).url });
    for (let i = 0; i < 2; i++) {
      ports.push(await freePort());
      replicas.push(await startReplica(vendor.home, ports[i]!));
    }
    await db.connect();
  }, 900_000);
  afterAll(async () => {
    await db?.end();
    for (const r of replicas) if (r.child.exitCode === null) r.child.kill("SIGKILL");
    await Promise.all(replicas.map((r) => r.exit));
    s.cleanup();
  });

  async function pem(url: string, serial: string): Promise<string> {
    const res = await fetch(`${url}/certificates/${serial}.pem`);
    if (res.status !== 200) throw new Error(`${url} ${serial}: ${res.status}`);
    return res.text();
  }

  /** Every certificate of both stations' outboxes, from both replicas: the same bytes, and openssl verifies each against the root. */
  async function everyCertificateFromBoth(serials: string[]): Promise<void> {
    const files: string[] = [];
    for (const serial of serials) {
      const [a, b] = await Promise.all(replicas.map((r) => pem(r.url, serial)));
      expect(b, serial).toBe(a);
      const f = join(s.dir, `fetched-${serial}.pem`);
      writeFileSync(f, a!);
      files.push(f);
    }
    const v = openssl(["verify", "-CAfile", vendor.h.pkiFile("root"), "-untrusted", vendor.h.pkiFile("factory-ca"), ...files]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout.trim().split("\n")).toHaveLength(serials.length);
  }

  /** Each checkpoint the directory holds for a station is one the station signed (same size, same root): one chain, no fork. */
  async function checkpointsConsistent(h: Home, station: string): Promise<void> {
    const held = (await db.query<{ size: string; root: Buffer }>("SELECT size, root FROM directory_checkpoints WHERE station = $1 ORDER BY size", [station])).rows;
    const signed = new Map((await withLedger(h, (l) => l.checkpoints())).map((c) => [c.size, Buffer.from(c.root).toString("hex")]));
    expect(held.length).toBeGreaterThan(0);
    for (const c of held) expect(signed.get(Number(c.size)), `${station} checkpoint ${c.size}`).toBe(c.root.toString("hex"));
  }

  /**
   * Both stations upload everything pending through a round-robin front over the replicas,
   * 10 certificates a request; once `after` more are published, `disrupt` runs (with the
   * front to hold requests). Both uploads must end with nothing pending and nothing refused.
   */
  async function burst(after: number, disrupt: (front: { pause: () => void; resume: () => void }) => Promise<void>): Promise<void> {
    const front = await roundRobin(() => replicas.map((r) => r.url));
    try {
      const before = await published();
      const upload = (home: string) => idmintAsync(["--home", home, "station", "upload", "--directory", front.url, "--batch", "10", "--retry-for", "120", "--json"]);
      const runs = Promise.all([upload(vendor.home), upload(station2.root)]);
      let ended = false;
      void runs.then(() => (ended = true));
      // An upload that fails early ends the wait too: its exit code and stderr are checked below.
      while (!ended && (await published()) < before + after) await new Promise((r) => setTimeout(r, 20));
      const midBurst = !ended;
      if (midBurst) await disrupt(front);
      for (const r of await runs) {
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout)).toMatchObject({ pending: 0, refused: {} });
      }
      expect(midBurst, "the uploads ended before the disruption").toBe(true);
    } finally {
      await front.close();
    }
  }

  const serials = (prefix: string, from: number, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${String(from + i).padStart(6, "0")}`);

  it("a race of two different certificates for one serial through two replicas at once: one published, the other kept as a conflict", async () => {
    const serial = `SN${String(UNITS + MORE + 1).padStart(6, "0")}`;
    // Two certificates for one serial, each recorded in the station's ledger (its last entry when made).
    const forged: Array<{ cert: Awaited<ReturnType<typeof forgeIdevid>>; index: number }> = [];
    for (let i = 0; i < 2; i++) forged.push({ cert: await forgeIdevid(vendor.h, serial), index: await withLedger(vendor.h, (l) => l.size() - 1) });
    const [x, y] = forged.map((f) => f.cert);
    const uploads = await Promise.all(forged.map(async (f) => (await stationUpload(vendor.h, { previousSize: 0, certificates: [{ serial, certificate: f.cert.toString("pem"), index: f.index }] })).signed));
    // Crafted: the station's commit lock is held here until both replicas have verified their
    // upload against the same (empty) state and wait to commit, so the two commits truly race.
    const lock = "SELECT pg_advisory_lock(hashtextextended('directory.station/station-1', 0))";
    await db.query(lock);
    const posted = uploads.map((u, i) => postSigned(replicas[i]!.url, u));
    while ((await count("SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")) < 2) await new Promise((r) => setTimeout(r, 10));
    await db.query(lock.replace("pg_advisory_lock", "pg_advisory_unlock"));
    const answers = await Promise.all(posted);
    expect(answers.map((a) => a.status).sort(), JSON.stringify(answers)).toEqual([200, 207]);
    const winner = answers.findIndex((a) => a.status === 200);
    expect(answers[winner]!.json).toMatchObject({ published: [serial] });
    expect(answers[1 - winner]!.json).toMatchObject({ published: [], refused: [{ serial, code: "CONFLICT" }] });
    const fromBoth = await Promise.all(replicas.map((r) => pem(r.url, serial)));
    for (const p of fromBoth) expect(p.startsWith([x, y][winner]!.toString("pem").trim())).toBe(true);
    const listed = JSON.parse(must(directoryCli(vendor.home, "conflicts", "--serial", serial, "--json"), "conflicts").stdout) as { conflicts: Array<{ refusedFingerprint: string }> };
    expect(listed.conflicts).toHaveLength(1);
    expect(await count("SELECT COUNT(*) AS n FROM directory_certificates WHERE serial = $1", [serial])).toBe(1);
  });

  it(`two stations upload ${UNITS} units each through alternating replicas, one SIGKILLed and restarted mid-burst: each published exactly once, from both, verified`, async () => {
    await burst(UNITS, async (front) => {
      // Mid-burst by construction: new requests wait at the front while replica 0 dies and comes back.
      front.pause();
      replicas[0]!.child.kill("SIGKILL");
      await replicas[0]!.exit;
      replicas[0] = await startReplica(vendor.home, ports[0]!);
      front.resume();
    });
    expect(await published()).toBe(2 * UNITS + 1);
    expect(await count("SELECT COUNT(DISTINCT serial) AS n FROM directory_certificates")).toBe(2 * UNITS + 1);
    await everyCertificateFromBoth([...serials("SN", 1, UNITS), ...serials("SB", 1, UNITS)]);
    await checkpointsConsistent(vendor.h, "station-1");
    await checkpointsConsistent(station2, "station-2");
  }, 900_000);

  it("PostgreSQL stopped for 10 s under load: both replicas answer 503 with Retry-After, stations retry, nothing is lost, the replicas recover by themselves", async () => {
    must(vendor.cli("station", "run", "--sim", String(MORE), "--slots", "4"), "station-1 run");
    must(cli2("station", "run", "--sim", String(MORE), "--slots", "4"), "station-2 run");
    const cluster = stores.cluster()!;
    const pids = replicas.map((r) => r.child.pid);
    const probe = (url: string) => fetch(`${url}/certificates/SN000001`);
    await burst(MORE / 2, async (front) => {
      front.pause();
      await db.end();
      cluster.stopServer();
      front.resume();
      for (const r of replicas) {
        const res = await probe(r.url);
        expect(res.status).toBe(503);
        expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
        expect(await res.json()).toMatchObject({ ok: false, error: { code: "UNAVAILABLE" } });
      }
      await new Promise((r) => setTimeout(r, 10_000));
      cluster.startServer();
    });
    // The same processes, never restarted, serve from the database again.
    expect(replicas.map((r) => r.child.pid)).toEqual(pids);
    for (const r of replicas) expect((await probe(r.url)).status).toBe(200);
    db = new pg.Client({ connectionString: (parseStoreLocation(location) as { url: string }).url });
    await db.connect();
    expect(await published()).toBe(2 * (UNITS + MORE) + 1);
    await everyCertificateFromBoth([...serials("SN", UNITS + 1, MORE), ...serials("SB", UNITS + 1, MORE)]);
    await checkpointsConsistent(vendor.h, "station-1");
    await checkpointsConsistent(station2, "station-2");
  }, 900_000);
});
