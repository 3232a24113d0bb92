/**
 * The audit ledger's costs, each measured beside a floor in the same run:
 *
 *  1. The station path: one `ledger.append` per entry, each its own IMMEDIATE transaction with
 *     synchronous=FULL, against bare single-row inserts of the same bytes into a table of the
 *     same columns. Both pay one WAL fsync per commit, so the ratio is what the ledger itself
 *     adds (encoding, hashing, the next-index lookup, the serial index).
 *  2. Building a large ledger with `appendMany` in batches, with a signed checkpoint every
 *     CHECKPOINT_EVERY entries so that verify has real signatures and roots to check.
 *  3. `verifyLedger` over the whole ledger, next to a bare scan of the same rows; the scan with
 *     leaf hashing and with leaf hashing plus the tree splits verify's time into its parts.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { openDb, systemClock, type Db } from "../core/index.js";
import type { Signer } from "../hsm/index.js";
import {
  Ledger,
  TreeBuilder,
  encodeEntry,
  hashLeaf,
  stationOrigin,
  verifyLedger,
  entryRows,
  type LedgerEvent,
} from "../ledger/index.js";
import { databaseMb, median, perSecond } from "./measure.js";
import { softKey } from "./soft-key.js";
import type { BenchContext, Benchmark, Figure } from "./types.js";

// Alternating rounds spread disk noise (another process's fsync, a journal flush) over both
// sides instead of letting it land on whichever ran second.
const APPEND_ROUNDS = 5;
// JIT, statement preparation and the first WAL frames are paid before the clock starts.
const APPEND_WARMUP = 50;
const BUILD_BATCH = 10_000;
const CHECKPOINT_EVERY = 100_000;
const VERIFY_RUNS = 3;
const EVENT_RANDOM_BYTES = 48; // 16 for the certificate serial, 32 for the fingerprint

/**
 * certificate.issued events, the station's commonest entry. Random hex (not a counter) so the
 * bodies are as incompressible and as long as real ones.
 */
function makeEvents(first: number, count: number): LedgerEvent[] {
  const rnd = randomBytes(EVENT_RANDOM_BYTES * count);
  const events = new Array<LedgerEvent>(count);
  for (let i = 0; i < count; i++) {
    const o = i * EVENT_RANDOM_BYTES;
    // First hex digit 4-7: a positive 127-bit serial, as pki issues (RFC 5280 §4.1.2.2).
    rnd[o] = (rnd[o]! & 0x3f) | 0x40;
    events[i] = {
      type: "certificate.issued",
      serial: `SN${String(first + i).padStart(6, "0")}`,
      certificateSerial: rnd.toString("hex", o, o + 16),
      certificateFingerprint: rnd.toString("hex", o + 16, o + EVENT_RANDOM_BYTES),
    };
  }
  return events;
}

function timed(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

/** Each measurement on its own connection, so none inherits another's SQLite page cache. */
function withDb<T>(path: string, fn: (db: Db) => T): T {
  const db = openDb(path);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

interface BareRow {
  idx: number;
  body: Buffer;
  leafHash: Uint8Array;
  type: string;
  serial: string;
}

async function measureAppend(ctx: BenchContext, count: number): Promise<Figure[]> {
  // Separate files, so the two never share a WAL or its checkpoints.
  const ledgerDb = openDb(join(ctx.dir, "append-ledger.db"));
  const bareDb = openDb(join(ctx.dir, "append-bare.db"));
  try {
    const ledger = new Ledger(ledgerDb, systemClock);
    // The columns of ledger_entries but not its serial index: that index is part of what the
    // ledger costs, so the baseline leaves it out.
    bareDb.exec("CREATE TABLE bare_entries (idx INTEGER PRIMARY KEY, body BLOB NOT NULL, leaf_hash BLOB NOT NULL, type TEXT NOT NULL, serial TEXT)");
    const insert = bareDb.prepare("INSERT INTO bare_entries (idx, body, leaf_hash, type, serial) VALUES (?, ?, ?, ?, ?)");
    const insertOne = bareDb.transaction((r: BareRow) => insert.run(r.idx, r.body, r.leafHash, r.type, r.serial));

    // The bare rows are the bytes the ledger writes for the same events at the same indexes
    // (same index width, same ISO time length, a real 32-byte leaf hash), encoded beforehand so
    // the baseline is only SQLite.
    const bareRows = (events: readonly LedgerEvent[], first: number): BareRow[] => {
      const time = systemClock.now().toISOString();
      return events.map((event, i) => {
        const body = encodeEntry({ index: first + i, time, event });
        return { idx: first + i, body, leafHash: hashLeaf(body), type: event.type, serial: (event as { serial: string }).serial };
      });
    };

    const warm = makeEvents(0, APPEND_WARMUP);
    for (const e of warm) ledger.append(e);
    for (const r of bareRows(warm, 0)) insertOne.immediate(r);

    const events = makeEvents(APPEND_WARMUP, count);
    const rows = bareRows(events, APPEND_WARMUP);
    const perRound = Math.ceil(count / APPEND_ROUNDS);
    let ledgerMs = 0;
    let bareMs = 0;
    for (let round = 0, start = 0; start < count; round++, start += perRound) {
      const end = Math.min(count, start + perRound);
      const runLedger = () => {
        ledgerMs += timed(() => {
          for (let i = start; i < end; i++) ledger.append(events[i]!);
        });
      };
      const runBare = () => {
        bareMs += timed(() => {
          for (let i = start; i < end; i++) insertOne.immediate(rows[i]!);
        });
      };
      if (round % 2 === 0) {
        runLedger();
        runBare();
      } else {
        runBare();
        runLedger();
      }
      ctx.log(`append round ${round + 1}: ${end}/${count} entries each`);
    }
    if (ledger.size() !== APPEND_WARMUP + count) throw new Error(`the append ledger holds ${ledger.size()} entries, expected ${APPEND_WARMUP + count}`);

    return [
      { key: "append.entries", label: "append, one transaction each: entries per side", value: count, unit: "entries" },
      { key: "append.ledger_per_s", label: "append, one transaction each: ledger.append", value: perSecond(count, ledgerMs), unit: "entries/s" },
      { key: "append.bare_per_s", label: "append, one transaction each: bare INSERT", value: perSecond(count, bareMs), unit: "entries/s" },
      { key: "append.ledger_us", label: "append, one transaction each: ledger.append latency", value: (ledgerMs * 1000) / count, unit: "µs/entry", digits: 1 },
      { key: "append.bare_us", label: "append, one transaction each: bare INSERT latency", value: (bareMs * 1000) / count, unit: "µs/entry", digits: 1 },
      { key: "append.ratio", label: "append: ledger time / bare time", value: ledgerMs / bareMs, unit: "x", digits: 2, target: { op: "<=", value: 2 } },
    ];
  } finally {
    ledgerDb.close();
    bareDb.close();
  }
}

interface Built {
  checkpoints: number;
  figures: Figure[];
}

async function buildLedger(ctx: BenchContext, path: string, total: number, signer: Signer, origin: string): Promise<Built> {
  const db = openDb(path);
  try {
    const ledger = new Ledger(db, systemClock);
    let size = 0;
    let appendMs = 0;
    let checkpointMs = 0;
    let checkpoints = 0;
    const wallStart = performance.now();
    while (size < total) {
      // Batches stop at each checkpoint boundary, so checkpoints land on exact multiples and the
      // last one covers the whole ledger whatever `total` is.
      const nextCheckpoint = Math.min(total, (Math.floor(size / CHECKPOINT_EVERY) + 1) * CHECKPOINT_EVERY);
      const events = makeEvents(size, Math.min(BUILD_BATCH, nextCheckpoint - size));
      appendMs += timed(() => ledger.appendMany(events));
      size += events.length;
      if (size === nextCheckpoint) {
        const t = performance.now();
        await ledger.checkpoint(signer, origin);
        checkpointMs += performance.now() - t;
        checkpoints++;
        ctx.log(`build: ${size}/${total} entries, checkpoint ${checkpoints}`);
      }
    }
    const wallMs = performance.now() - wallStart;
    return {
      checkpoints,
      figures: [
        { key: "build.entries", label: "build: entries", value: total, unit: "entries" },
        { key: "build.batch", label: "build: entries per appendMany transaction", value: BUILD_BATCH, unit: "entries" },
        { key: "build.append_per_s", label: "build: appendMany (append time only)", value: perSecond(total, appendMs), unit: "entries/s" },
        { key: "build.checkpoints", label: "build: signed checkpoints", value: checkpoints, unit: "" },
        { key: "build.checkpoint_ms", label: "build: checkpoint, mean", value: checkpointMs / checkpoints, unit: "ms", digits: 1 },
        { key: "build.wall_s", label: "build: wall time (with event generation)", value: wallMs / 1000, unit: "s", digits: 1 },
      ],
    };
  } finally {
    db.close();
  }
}

function measureVerify(ctx: BenchContext, path: string, total: number, checkpoints: number, origin: string, spki: Uint8Array): Figure[] {
  const verifyMs: number[] = [];
  const scanMs: number[] = [];
  const treeMs: number[] = [];
  // Verify's own read, so the floor is exactly the rows verify has to read, read the same way.
  const rowsOf = (db: Db) => entryRows(db);
  const expectRows = (what: string, n: number) => {
    if (n !== total) throw new Error(`${what} read ${n} entries, expected ${total}`);
  };
  let verifiedRoot = "";
  let treeRoot = "";

  // The three measurements take turns within each run so that drift (page cache, CPU clock,
  // other load) touches each equally; the median of the runs is reported.
  for (let run = 1; run <= VERIFY_RUNS; run++) {
    withDb(path, (db) => {
      verifyMs.push(
        timed(() => {
          const report = verifyLedger(db, { origin, spki });
          expectRows("verify", report.entries);
          if (report.checkpoints !== checkpoints || report.uncovered !== 0) {
            throw new Error(`verify saw ${report.checkpoints} checkpoints with ${report.uncovered} entries uncovered, expected ${checkpoints} covering all`);
          }
          verifiedRoot = report.latestCheckpoint?.root ?? "";
        }),
      );
    });
    withDb(path, (db) => {
      scanMs.push(
        timed(() => {
          let n = 0;
          for (const _row of rowsOf(db)) n++;
          expectRows("scan", n);
        }),
      );
    });
    withDb(path, (db) => {
      treeMs.push(
        timed(() => {
          const tree = new TreeBuilder();
          for (const [, body] of rowsOf(db)) tree.addLeafData(body);
          expectRows("scan + tree", tree.size);
          treeRoot = Buffer.from(tree.root()).toString("base64");
        }),
      );
    });
    ctx.log(`verify run ${run}/${VERIFY_RUNS}: verify ${verifyMs.at(-1)!.toFixed(0)} ms, scan ${scanMs.at(-1)!.toFixed(0)} ms`);
  }
  // The decomposition is only meaningful if it computed the tree verify checked.
  if (treeRoot !== verifiedRoot) throw new Error(`the scan's tree root ${treeRoot} differs from the latest checkpoint's ${verifiedRoot}`);

  const verify = median(verifyMs);
  const scan = median(scanMs);
  const tree = median(treeMs);
  const share = (ms: number) => (100 * ms) / verify;
  return [
    { key: "verify.per_s", label: `verify: full ledger (median of ${VERIFY_RUNS})`, value: perSecond(total, verify), unit: "entries/s", target: { op: ">=", value: 200_000 } },
    { key: "verify.ms", label: "verify: time, median", value: verify, unit: "ms", digits: 1 },
    { key: "verify.ms_min", label: "verify: time, fastest run", value: Math.min(...verifyMs), unit: "ms", digits: 1 },
    { key: "verify.ms_max", label: "verify: time, slowest run", value: Math.max(...verifyMs), unit: "ms", digits: 1 },
    { key: "scan.per_s", label: "floor: bare SELECT scan of the same rows", value: perSecond(total, scan), unit: "entries/s" },
    { key: "scan.ms", label: "floor: scan time, median", value: scan, unit: "ms", digits: 1 },
    { key: "verify.share_scan_pct", label: "verify share: reading rows (scan)", value: share(scan), unit: "%", digits: 1 },
    { key: "verify.share_tree_pct", label: "verify share: leaf and tree hashing (TreeBuilder)", value: share(tree - scan), unit: "%", digits: 1 },
    { key: "verify.share_other_pct", label: "verify share: rest (index/hash checks, checkpoints)", value: share(verify - tree), unit: "%", digits: 1 },
  ];
}

export const ledgerBenchmark: Benchmark = {
  name: "ledger",
  async run(ctx) {
    const appendCount = ctx.param("BENCH_LEDGER_APPENDS", 3000);
    const total = ctx.param("BENCH_LEDGER_ENTRIES", 1_000_000);
    // A key in this process: the HSM's signing latency is not what this measures, and verify
    // only needs real signatures under a known SPKI.
    const signer = softKey("P-256").signer;
    const origin = stationOrigin("bench");
    const path = join(ctx.dir, "ledger.db");

    ctx.log(`append: ${appendCount} entries one transaction each, ledger vs bare, ${APPEND_ROUNDS} alternating rounds`);
    const append = await measureAppend(ctx, appendCount);
    ctx.log(`build: ${total} entries in appendMany batches of ${BUILD_BATCH}, a checkpoint every ${CHECKPOINT_EVERY}`);
    const built = await buildLedger(ctx, path, total, signer, origin);
    const size: Figure = { key: "build.store_mb", label: "build: database + WAL on disk", value: databaseMb(path), unit: "MB", digits: 1 };
    ctx.log(`verify: ${VERIFY_RUNS} runs over ${total} entries, each on a fresh connection`);
    const verify = measureVerify(ctx, path, total, built.checkpoints, origin, signer.publicKeySpki);
    return [...append, ...built.figures, size, ...verify];
  },
};
