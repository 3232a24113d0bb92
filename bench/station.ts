/**
 * The factory line's throughput, each figure beside floors measured in the same process and run:
 *
 *  1. Setup: a real SoftHSM home (`initEmbeddedHsm`), the key ceremony (`initCa`, as `idmint ca
 *     init`), and one allocation big enough for every unit below, imported directly into the
 *     station's SerialStore (import takes an already-verified Allocation, so no signature).
 *  2. The line exactly as `station run --sim` wires it (run lock, the unit simulator in a process
 *     of its own with an explicit serial list and the soft keystore, TcpFixture, a LineContext
 *     whose CA signer is the factory CA key in SoftHSM, runLine in this process), at K=1 and at
 *     K=8 slots.
 *  3. Floor (a): the bare work of a unit, units one after another: a P-256 keygen, a CSR-sized
 *     signature with that key, a factory CA signature through pkcs11js/SoftHSM (`Hsm.signer`),
 *     one synchronous=FULL SQLite commit; in three slices around the line runs, the median
 *     slice being the floor.
 *  4. Floor (b): the OpenSSL CLI in one bash loop, per unit `ecparam -genkey`, `req -new` and
 *     `x509 -req` (the recipe of RFC 8886 Appendix A).
 *  5. Ratios of the line to both floors.
 *  6. A long run at K=8 for flatness: the station process's RSS, throughput of the first and
 *     last tenth, and the factory-ca and station tokens' objects and open sessions before and
 *     after (the simulator process holds no session on them: it keeps unit keys in software).
 */
import pkcs11js from "pkcs11js";
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { spawnSync } from "node:child_process";
import { initCa } from "../cli/commands/ca.js";
import { stationLineContext, withStation } from "../cli/context.js";
import type { Io } from "../cli/io.js";
import { Home, openDb, systemClock, type IdmintConfig } from "../core/index.js";
import { Hsm, Pkcs11Module, ckr, initEmbeddedHsm, parsePkcs11Uri, readPin } from "../hsm/index.js";
import type { Allocation } from "../serials/index.js";
import { UnitStore, acquireRunLock, runLine, type LineSummary } from "../station/index.js";
import type { TimedStage } from "../station/pipeline.js";
import { SIM_HOST, TcpFixture, startSimulatorProcess } from "../units/index.js";
import type { BenchContext, Benchmark, Figure } from "./run.js";

const STATION_ID = "station-1";
// JIT, the first certificate build and the first WAL frames are paid before any clock starts.
const WARMUP_UNITS = 32;
const FLOOR_WARMUP = 20;
// What `station run` uses unless told otherwise.
const UNIT_TIMEOUT_MS = 10_000;
const SLOW_MS = 5_000;
const STAGES: readonly TimedStage[] = ["hello", "genkey", "check", "intent", "sign", "store", "install", "total"];
// CK_ULONG values at or above this are CK_UNAVAILABLE_INFORMATION / CK_EFFECTIVELY_INFINITE.
const UNAVAILABLE = 2 ** 32 - 2;
// SoftHSM hands out session handles 1, 2, ... (the lowest free one first), so its open sessions
// are found by asking C_GetSessionInfo about handles from 1 up to well past the highest open one.
const SESSION_PROBE_GAP = 64;
const SESSION_PROBE_LIMIT = 1_000_000;
const MB = 1024 * 1024;
// USER_HZ: the unit of /proc/PID/stat's CPU times on Linux.
const CLOCK_TICKS_PER_S = 100;

const quietIo: Io = { out: () => {}, err: () => {}, isTty: false, env: process.env };

function perSecond(count: number, ms: number): number {
  return (count * 1000) / ms;
}

// ---------------------------------------------------------------------------------------------
// Setup

interface Setup {
  home: Home;
  config: IdmintConfig;
  figures: Figure[];
}

async function setUp(ctx: BenchContext, serialCount: number): Promise<Setup> {
  const home = new Home(join(ctx.dir, "home"));
  const t0 = performance.now();
  initEmbeddedHsm(home);
  const t1 = performance.now();
  await initCa(home, home.readConfig(), STATION_ID, quietIo);
  const t2 = performance.now();
  const config = home.readConfig();

  const now = Date.now();
  const width = Math.max(8, String(serialCount).length);
  const allocation: Allocation = {
    format: "idmint-allocation/1",
    allocationId: "bench-allocation-1",
    order: "BENCH-1",
    station: config.station.id,
    model: "Bench Router",
    notBefore: new Date(now - 86_400_000).toISOString(),
    notAfter: new Date(now + 365 * 86_400_000).toISOString(),
    count: serialCount,
    ranges: [{ prefix: "SN", start: 1, count: serialCount, width }],
    createdAt: new Date(now).toISOString(),
  };
  const imported = await withStation(home, quietIo, ({ serials }) => serials.importAllocation(allocation, JSON.stringify(allocation), config.station.id));
  const t3 = performance.now();
  if (!imported.imported || imported.count !== serialCount) throw new Error(`the allocation import took ${imported.count} serials, expected ${serialCount}`);
  ctx.log(`setup: SoftHSM home ${(t1 - t0).toFixed(0)} ms, ceremony ${(t2 - t1).toFixed(0)} ms, ${serialCount} serials imported in ${(t3 - t2).toFixed(0)} ms`);
  return {
    home,
    config,
    figures: [
      { key: "setup.hsm_init_ms", label: "setup: initEmbeddedHsm (5 SoftHSM tokens)", value: t1 - t0, unit: "ms", digits: 0 },
      { key: "setup.ceremony_ms", label: "setup: initCa (key ceremony, 4 certificates)", value: t2 - t1, unit: "ms", digits: 0 },
      { key: "setup.serials", label: "setup: serials imported (importAllocation)", value: serialCount, unit: "serials" },
      { key: "setup.import_ms", label: "setup: importAllocation", value: t3 - t2, unit: "ms", digits: 0 },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// The HSM's tokens as PKCS#11 sees them: objects and open sessions

interface TokenCounts {
  tokenObjects: number;
  sessionObjects: number;
  /** Sessions this process has open on the token, found by C_GetSessionInfo over SoftHSM's handles. */
  openSessions: number;
  /** C_GetTokenInfo's ulSessionCount; undefined when the module does not say (SoftHSM does not). */
  reportedSessions: number | undefined;
}

/**
 * Looks into tokens through a module user and a session of its own (logged in with the token's
 * PIN from its pin file), so it sees the same objects and sessions as the line's Hsm in this
 * process, session objects included, without reaching into Hsm's private state.
 */
class TokenInspector {
  private readonly module: Pkcs11Module;
  private readonly sessions = new Map<string, { slot: Buffer; session: Buffer }>();

  constructor(config: IdmintConfig, keyUris: Record<string, string>) {
    if (config.hsm.softhsmConf) process.env.SOFTHSM2_CONF = config.hsm.softhsmConf;
    this.module = Pkcs11Module.acquire(config.hsm.module);
    try {
      for (const [name, uriText] of Object.entries(keyUris)) {
        const uri = parsePkcs11Uri(uriText);
        const found = this.module.findSlot({ label: uri.token });
        if (!found) throw new Error(`no token ${uri.token} in ${config.hsm.module}`);
        const session = this.p11.C_OpenSession(found.slot, pkcs11js.CKF_SERIAL_SESSION);
        this.sessions.set(name, { slot: found.slot, session });
        try {
          this.p11.C_Login(session, pkcs11js.CKU_USER, readPin(uri.pinSource, name));
        } catch (e) {
          // Another Hsm in this process logged in first: the login is per token, so it counts.
          if (ckr(e)?.name !== "CKR_USER_ALREADY_LOGGED_IN") throw e;
        }
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private get p11(): pkcs11js.PKCS11 {
    return this.module.p11;
  }

  /** The slots that have any session open in this process, by the handles SoftHSM gives out (1, 2, ...). */
  private openSessionSlots(): string[] {
    const slots: string[] = [];
    const handle = Buffer.alloc(8);
    for (let h = 1, highest = 0; h <= SESSION_PROBE_LIMIT && h <= highest + SESSION_PROBE_GAP; h++) {
      handle.writeBigUInt64LE(BigInt(h));
      try {
        slots.push(this.p11.C_GetSessionInfo(handle).slotID.toString("hex"));
        highest = h;
      } catch {
        // CKR_SESSION_HANDLE_INVALID: a free handle.
      }
    }
    return slots;
  }

  count(name: string): TokenCounts {
    const s = this.sessions.get(name);
    if (!s) throw new Error(`no token ${name} in this inspector`);
    let tokenObjects = 0;
    let sessionObjects = 0;
    this.p11.C_FindObjectsInit(s.session, []);
    try {
      for (let hs = this.p11.C_FindObjects(s.session, 64); hs.length > 0; hs = this.p11.C_FindObjects(s.session, 64)) {
        for (const h of hs) {
          const [attr] = this.p11.C_GetAttributeValue(s.session, h, [{ type: pkcs11js.CKA_TOKEN }]);
          if ((attr!.value as Buffer)[0] === 1) tokenObjects++;
          else sessionObjects++;
        }
      }
    } finally {
      this.p11.C_FindObjectsFinal(s.session);
    }
    const slotHex = s.slot.toString("hex");
    // Our own inspection session is not the line's: leave it out.
    const openSessions = this.openSessionSlots().filter((slot) => slot === slotHex).length - 1;
    const reported = this.p11.C_GetTokenInfo(s.slot).sessionCount;
    return { tokenObjects, sessionObjects, openSessions, reportedSessions: reported >= UNAVAILABLE ? undefined : reported - 1 };
  }

  close(): void {
    for (const { session } of this.sessions.values()) {
      try {
        this.p11.C_CloseSession(session);
      } catch {
        // Closed is closed.
      }
    }
    this.sessions.clear();
    this.module.release();
  }
}

// ---------------------------------------------------------------------------------------------
// The line, as `station run --sim` wires it

interface LineHooks {
  /** Called with the line's HSM open and its CA signer made, before the first unit. */
  beforeUnits?(): void;
  /** Called after the last unit, with the line's HSM and simulator still open. */
  afterUnits?(): void;
  onUnit?(): void;
}

/** One `station run --sim COUNT --slots SLOTS` (soft keystore, EC-P256 units, no faults): the station in this process, the units in their own. */
/** CPU time (user + system) a process has used so far, from /proc (Linux), in ms. */
function processCpuMs(pid: number): number {
  // Fields 14 and 15 of /proc/PID/stat, counted after the parenthesised command name.
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "").split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
}

interface SimLineResult extends LineSummary {
  /**
   * The units after the first `warmup` of the run (all of them without a warm-up): how many,
   * their throughput, and the CPU per unit of the station's process and of the simulator's,
   * in ms (which side is the limit).
   */
  measured: { units: number; perS: number; stationCpuMsPerUnit: number; simulatorCpuMsPerUnit: number };
}

/**
 * The line for `count` units; with `warmup`, its first `warmup` units are the run's warm-up
 * (the simulator process, the writer thread and their JIT start cold with every run) and
 * `measured` covers the units after them, in the same run.
 */
async function runSimLine(home: Home, config: IdmintConfig, count: number, slots: number, hooks: LineHooks = {}, warmup = 0): Promise<SimLineResult> {
  const release = acquireRunLock(join(home.root, "station.lock"));
  try {
    return await withStation(home, quietIo, async (stores) => {
      const { db, serials } = stores;
      const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, env: process.env });
      try {
        const units = new UnitStore(db, systemClock);
        const resuming = units.inFlight();
        const fresh = serials.nextAvailable(Math.max(0, count - resuming.length));
        const line = [...resuming, ...fresh].slice(0, count);
        if (line.length < count) throw new Error(`only ${line.length} serials are left for a line of ${count}: the allocation is too small`);
        const sim = await startSimulatorProcess({
          unitsDir: home.unitsDir,
          root: readFileSync(home.pkiFile("root")),
          serials: line,
          model: serials.modelOf(line[0]!) ?? "unit",
          hwType: config.profile.hwTypeOid,
          keystore: { kind: "soft" },
          faults: [],
          slowMs: SLOW_MS,
        });
        const fixture = new TcpFixture(SIM_HOST, sim.port, { timeoutMs: UNIT_TIMEOUT_MS });
        const ctx = stationLineContext(home, config, hsm, { units, keyAlgorithm: "EC-P256", clock: systemClock });
        try {
          hooks.beforeUnits?.();
          const mark = () => ({ at: performance.now(), station: processCpuMs(process.pid), simulator: processCpuMs(sim.pid) });
          let from = mark();
          let ended = 0;
          const summary = await runLine({
            fixture,
            slots,
            ctx,
            onUnit: () => {
              if (++ended === warmup) from = mark();
              hooks.onUnit?.();
            },
          });
          const to = mark();
          hooks.afterUnits?.();
          if (summary.units !== count || summary.provisioned !== count) {
            throw new Error(`the line provisioned ${summary.provisioned} of ${count} units (${summary.units} seen): failures ${JSON.stringify(summary.failures)}`);
          }
          const measured = count - warmup;
          return {
            ...summary,
            measured: {
              units: measured,
              perS: perSecond(measured, to.at - from.at),
              stationCpuMsPerUnit: (to.station - from.station) / measured,
              simulatorCpuMsPerUnit: (to.simulator - from.simulator) / measured,
            },
          };
        } finally {
          await ctx.commits.close();
          await fixture.close();
          await sim.close();
        }
      } finally {
        hsm.close();
      }
    });
  } finally {
    release();
  }
}

function lineFigures(prefix: string, what: string, summary: SimLineResult): Figure[] {
  const warmup = summary.units - summary.measured.units;
  const after = warmup > 0 ? ` (the ${summary.measured.units} units after the run's first ${warmup})` : "";
  const figures: Figure[] = [
    { key: `${prefix}.units`, label: `${what}: units`, value: summary.units, unit: "units" },
    { key: `${prefix}.per_s`, label: `${what}: throughput${after}`, value: summary.measured.perS, unit: "units/s", digits: 1 },
    ...(warmup > 0 ? [{ key: `${prefix}.whole_run_per_s`, label: `${what}: throughput of the whole run, its start included`, value: summary.units / summary.seconds, unit: "units/s", digits: 1 }] : []),
    { key: `${prefix}.seconds`, label: `${what}: wall time`, value: summary.seconds, unit: "s", digits: 1 },
    { key: `${prefix}.commits_per_unit`, label: `${what}: SQLite commits per unit`, value: summary.commits / Math.max(summary.units, 1), unit: "commits", digits: 2 },
    { key: `${prefix}.changes_per_commit`, label: `${what}: unit state changes per commit (group commit)`, value: summary.changesPerCommit, unit: "changes", digits: 2 },
    { key: `${prefix}.station_cpu_ms`, label: `${what}: station process CPU per unit${after}`, value: summary.measured.stationCpuMsPerUnit, unit: "ms", digits: 3 },
    { key: `${prefix}.simulator_cpu_ms`, label: `${what}: simulator process CPU per unit${after}`, value: summary.measured.simulatorCpuMsPerUnit, unit: "ms", digits: 3 },
  ];
  for (const stage of STAGES) {
    const s = summary.stages[stage];
    if (!s) continue;
    figures.push(
      { key: `${prefix}.${stage}_p50_ms`, label: `${what}: stage ${stage}, p50`, value: s.p50, unit: "ms", digits: 2 },
      { key: `${prefix}.${stage}_p99_ms`, label: `${what}: stage ${stage}, p99`, value: s.p99, unit: "ms", digits: 2 },
    );
  }
  return figures;
}

// ---------------------------------------------------------------------------------------------
// Floor (a): the bare work of a unit, in this process, one unit after another

interface FloorSlice {
  units: number;
  perS: number;
  /** µs per unit of each part. */
  us: { keygen: number; unitSign: number; caSign: number; commit: number };
}

/** One slice of floor (a): `count` units of bare work into a database of its own. */
async function floorBareSlice(ctx: BenchContext, config: IdmintConfig, count: number, slice: number): Promise<FloorSlice> {
  const db = openDb(join(ctx.dir, `floor-a-${slice}.db`));
  const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, env: process.env });
  try {
    db.exec("CREATE TABLE issued (serial TEXT PRIMARY KEY, certificate BLOB NOT NULL)");
    const insert = db.prepare("INSERT INTO issued (serial, certificate) VALUES (?, ?)");
    const commit = db.transaction((serial: string, cert: Buffer) => insert.run(serial, cert));
    const ca = hsm.signer(config.keys.factoryCa);
    // A CSR's CertificationRequestInfo is ~300 bytes, a certificate's TBSCertificate ~400; an
    // IDevID in PEM is ~900 bytes, which is what the row holds.
    const csrInfo = randomBytes(300);
    const tbs = randomBytes(400);
    const row = randomBytes(900);
    const parts = { keygen: 0, unitSign: 0, caSign: 0, commit: 0 };
    const unit = async (i: number, timed: boolean) => {
      csrInfo.writeUInt32BE(i, 0);
      tbs.writeUInt32BE(i, 0);
      let t = performance.now();
      const lap = (part: keyof typeof parts) => {
        const now = performance.now();
        if (timed) parts[part] += now - t;
        t = now;
      };
      const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      lap("keygen");
      sign("sha256", csrInfo, privateKey);
      lap("unitSign");
      await ca.sign(tbs);
      lap("caSign");
      commit.immediate(`SN${String(i).padStart(8, "0")}`, row);
      lap("commit");
    };
    for (let i = 0; i < FLOOR_WARMUP; i++) await unit(i, false);
    const t0 = performance.now();
    for (let i = FLOOR_WARMUP; i < FLOOR_WARMUP + count; i++) await unit(i, true);
    const ms = performance.now() - t0;
    const perS = perSecond(count, ms);
    const us = (part: keyof typeof parts) => (parts[part] * 1000) / count;
    ctx.log(`floor (a), slice ${slice}: ${count} units in ${ms.toFixed(0)} ms, ${perS.toFixed(0)} units/s (commit ${us("commit").toFixed(0)} µs)`);
    return { units: count, perS, us: { keygen: us("keygen"), unitSign: us("unitSign"), caSign: us("caSign"), commit: us("commit") } };
  } finally {
    hsm.close();
    db.close();
  }
}

/**
 * Floor (a) over its slices: the median slice is the floor. Its commit is an fsync, whose
 * latency on these machines swings by 2x from one minute to the next (270 to 660 µs seen
 * within ten minutes), so one slice of a second would make the ratio a draw of the disk.
 */
function floorBare(slices: readonly FloorSlice[]): { perS: number; figures: Figure[] } {
  const sorted = [...slices].sort((x, y) => x.perS - y.perS);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return {
    perS: median.perS,
    figures: [
      { key: "floor_a.units", label: "floor (a) bare work: units per slice", value: median.units, unit: "units" },
      { key: "floor_a.slices", label: "floor (a) bare work: slices (before K=1, after K=1, after K=8)", value: slices.length, unit: "slices" },
      { key: "floor_a.per_s", label: "floor (a) bare work: throughput, median slice", value: median.perS, unit: "units/s", digits: 1 },
      { key: "floor_a.per_s_min", label: "floor (a) bare work: slowest slice", value: sorted[0]!.perS, unit: "units/s", digits: 1 },
      { key: "floor_a.per_s_max", label: "floor (a) bare work: fastest slice", value: sorted[sorted.length - 1]!.perS, unit: "units/s", digits: 1 },
      { key: "floor_a.keygen_us", label: "floor (a), median slice: P-256 keygen (node:crypto)", value: median.us.keygen, unit: "µs/unit", digits: 1 },
      { key: "floor_a.unit_sign_us", label: "floor (a), median slice: unit signs 300 B (node:crypto)", value: median.us.unitSign, unit: "µs/unit", digits: 1 },
      { key: "floor_a.ca_sign_us", label: "floor (a), median slice: CA signs 400 B (pkcs11js, SoftHSM)", value: median.us.caSign, unit: "µs/unit", digits: 1 },
      { key: "floor_a.commit_us", label: "floor (a), median slice: one-row commit (WAL, synchronous=FULL)", value: median.us.commit, unit: "µs/unit", digits: 1 },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Floor (b): the OpenSSL CLI, one bash loop

const OPENSSL_LOOP = `#!/usr/bin/env bash
# Per unit, what RFC 8886 Appendix A does with the OpenSSL CLI: a key, a CSR, a certificate.
set -euo pipefail
cd "$1"
for ((i = 1; i <= $2; i++)); do
  printf -v serial 'SN%08d' "$i"
  openssl ecparam -genkey -name prime256v1 -out k.pem
  openssl req -new -key k.pem -subj "/serialNumber=$serial" -out r.csr
  openssl x509 -req -in r.csr -CA ca.pem -CAkey ca.key -set_serial "$i" -days 3650 -out c.pem
done
`;

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", maxBuffer: 64 * MB });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr.trim().split("\n").slice(-3).join(" / ")}`);
  return r.stdout;
}

function floorOpenssl(ctx: BenchContext, count: number): { perS: number; figures: Figure[] } {
  const dir = join(ctx.dir, "openssl");
  mkdirSync(dir, { recursive: true });
  // A P-256 CA like the factory CA, made before the clock starts.
  sh("openssl", ["ecparam", "-genkey", "-name", "prime256v1", "-out", "ca.key"], dir);
  sh("openssl", ["req", "-x509", "-new", "-key", "ca.key", "-subj", "/O=Bench Vendor/CN=Bench Factory CA", "-days", "3650", "-out", "ca.pem"], dir);
  const script = join(dir, "loop.sh");
  writeFileSync(script, OPENSSL_LOOP, { mode: 0o700 });
  const t0 = performance.now();
  sh("bash", [script, dir, String(count)], dir);
  const ms = performance.now() - t0;
  // The loop really issued: the last certificate chains to the CA and names the last serial.
  sh("openssl", ["verify", "-CAfile", "ca.pem", "c.pem"], dir);
  const subject = sh("openssl", ["x509", "-in", "c.pem", "-noout", "-subject"], dir);
  const lastSerial = `SN${String(count).padStart(8, "0")}`;
  if (!subject.includes(lastSerial)) throw new Error(`the OpenSSL loop's last certificate names ${subject.trim()}, not ${lastSerial}`);
  const perS = perSecond(count, ms);
  ctx.log(`floor (b): ${count} units in ${ms.toFixed(0)} ms, ${perS.toFixed(1)} units/s`);
  return {
    perS,
    figures: [
      { key: "floor_b.units", label: "floor (b) OpenSSL CLI loop: units", value: count, unit: "units" },
      { key: "floor_b.per_s", label: "floor (b) OpenSSL CLI loop: throughput", value: perS, unit: "units/s", digits: 1 },
      { key: "floor_b.ms_per_unit", label: "floor (b): per unit (3 openssl processes)", value: ms / count, unit: "ms/unit", digits: 1 },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// The long run

function memory(): { rssMb: number; heapMb: number } {
  const m = process.memoryUsage();
  return { rssMb: m.rss / MB, heapMb: m.heapUsed / MB };
}

/** RSS after a full GC when the process was started with --expose-gc; as is otherwise. */
function settledMemory(): { rssMb: number; heapMb: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  return memory();
}

async function longRun(ctx: BenchContext, setup: Setup, count: number, slots: number): Promise<Figure[]> {
  const gcAvailable = typeof (globalThis as { gc?: unknown }).gc === "function";
  const inspector = new TokenInspector(setup.config, { "factory-ca": setup.config.keys.factoryCa, station: setup.config.keys.station });
  try {
    const counts: Record<"before" | "after" | "closed", Record<string, TokenCounts>> = { before: {}, after: {}, closed: {} };
    const snapshot = (when: "before" | "after" | "closed") => {
      for (const token of ["factory-ca", "station"]) counts[when][token] = inspector.count(token);
    };
    const memStart = settledMemory();
    // Progress, and the moment each unit ended, for the rate of the first and the last tenth.
    const ends = new Float64Array(count);
    let done = 0;
    let lastLog = performance.now();
    let started = 0;
    const summary = await runSimLine(setup.home, setup.config, count, slots, {
      beforeUnits: () => {
        snapshot("before");
        started = performance.now();
      },
      afterUnits: () => snapshot("after"),
      onUnit: () => {
        const now = performance.now();
        ends[done++] = now;
        if (now - lastLog > 10_000) {
          lastLog = now;
          ctx.log(`long run: ${done}/${count} units, ${perSecond(done, now - started).toFixed(0)} units/s so far, RSS ${memory().rssMb.toFixed(0)} MB`);
        }
      },
    });
    // The line's Hsm is closed by now: every session it opened should be gone with it.
    snapshot("closed");
    const memEnd = settledMemory();
    const tenth = Math.max(1, Math.floor(count / 10));
    const firstTenth = perSecond(tenth, ends[tenth - 1]! - started);
    const lastTenth = perSecond(tenth, ends[count - 1]! - ends[count - 1 - tenth]!);
    if (count >= 10) {
      const tenths = Array.from({ length: 10 }, (_, i) => perSecond(tenth, ends[(i + 1) * tenth - 1]! - (i === 0 ? started : ends[i * tenth - 1]!)).toFixed(0));
      ctx.log(`long run: units/s by tenth of the run: ${tenths.join(" ")}`);
    }
    ctx.log(`long run: ${count} units in ${summary.seconds.toFixed(1)} s (${(summary.units / summary.seconds).toFixed(1)} units/s); RSS ${memStart.rssMb.toFixed(0)} -> ${memEnd.rssMb.toFixed(0)} MB${gcAvailable ? " after gc()" : " (no gc(): run node with --expose-gc for settled figures)"}`);
    for (const token of ["factory-ca", "station"]) {
      const b = counts.before[token]!;
      const a = counts.after[token]!;
      const c = counts.closed[token]!;
      ctx.log(
        `long run: token ${token}: token objects ${b.tokenObjects} -> ${a.tokenObjects}, session objects ${b.sessionObjects} -> ${a.sessionObjects}, ` +
          `open sessions ${b.openSessions} -> ${a.openSessions} (${c.openSessions} once the line's Hsm closed), ` +
          `C_GetTokenInfo ulSessionCount ${b.reportedSessions ?? "unavailable"} -> ${a.reportedSessions ?? "unavailable"}`,
      );
    }
    const tokenFigures = (["factory-ca", "station"] as const).flatMap((token) =>
      (["before", "after"] as const).flatMap((when): Figure[] => {
        const c = counts[when][token]!;
        const fig: Figure[] = [
          { key: `long.${token}.objects_${when}`, label: `long run: ${token} token objects, ${when}`, value: c.tokenObjects, unit: "objects" },
          { key: `long.${token}.session_objects_${when}`, label: `long run: ${token} session objects, ${when}`, value: c.sessionObjects, unit: "objects" },
          { key: `long.${token}.sessions_${when}`, label: `long run: ${token} open sessions (C_GetSessionInfo), ${when}`, value: c.openSessions, unit: "sessions" },
        ];
        if (c.reportedSessions !== undefined) {
          fig.push({ key: `long.${token}.token_info_sessions_${when}`, label: `long run: ${token} ulSessionCount, ${when}`, value: c.reportedSessions, unit: "sessions" });
        }
        return fig;
      }),
    );
    for (const token of ["factory-ca", "station"] as const) {
      const c = counts.closed[token]!;
      tokenFigures.push({ key: `long.${token}.sessions_closed`, label: `long run: ${token} open sessions, line's Hsm closed`, value: c.openSessions, unit: "sessions" });
    }
    return [
      ...lineFigures("long", `long run, K=${slots}`, summary),
      { key: "long.first_tenth_per_s", label: "long run: throughput, first tenth", value: firstTenth, unit: "units/s", digits: 1 },
      { key: "long.last_tenth_per_s", label: "long run: throughput, last tenth", value: lastTenth, unit: "units/s", digits: 1 },
      { key: "long.last_over_first", label: "long run: last tenth / first tenth", value: lastTenth / firstTenth, unit: "x", digits: 2 },
      { key: "long.gc", label: "long run: RSS taken after gc() (1) or without (0)", value: gcAvailable ? 1 : 0, unit: "" },
      { key: "long.rss_start_mb", label: "long run: RSS at start", value: memStart.rssMb, unit: "MB", digits: 1 },
      { key: "long.rss_end_mb", label: "long run: RSS at end", value: memEnd.rssMb, unit: "MB", digits: 1 },
      { key: "long.heap_start_mb", label: "long run: JS heap in use at start", value: memStart.heapMb, unit: "MB", digits: 1 },
      { key: "long.heap_end_mb", label: "long run: JS heap in use at end", value: memEnd.heapMb, unit: "MB", digits: 1 },
      ...tokenFigures,
    ];
  } finally {
    inspector.close();
  }
}

// ---------------------------------------------------------------------------------------------

export const stationBenchmark: Benchmark = {
  name: "station",
  async run(ctx) {
    const units = ctx.param("BENCH_STATION_UNITS", 1000);
    const opensslUnits = ctx.param("BENCH_STATION_OPENSSL_UNITS", 100);
    const longUnits = ctx.param("BENCH_STATION_LONG_UNITS", 20_000);
    // A fresh K=8 run did 326, 518, 618, then 650-690 units/s per thousand units: steady from the third thousand on.
    const warmup = ctx.param("BENCH_STATION_RUN_WARMUP", 3000);
    if (spawnSync("openssl", ["version"]).status !== 0) throw new Error("the openssl CLI is not on PATH: floor (b) needs it");

    const setup = await setUp(ctx, WARMUP_UNITS + 2 * (warmup + units) + longUnits);
    const { home, config } = setup;

    ctx.log(`line warm-up: ${WARMUP_UNITS} units at K=8 (not measured)`);
    await runSimLine(home, config, WARMUP_UNITS, 8);

    // Floor (a) in slices around the line runs, so that the floor and the line meet the same disk.
    const slices: FloorSlice[] = [];
    ctx.log(`floor (a): ${units} units of bare work, three times`);
    slices.push(await floorBareSlice(ctx, config, units, 1));
    ctx.log(`line K=1: ${warmup} warm-up units, then ${units} measured`);
    const k1 = await runSimLine(home, config, warmup + units, 1, {}, warmup);
    ctx.log(`line K=1: ${k1.measured.perS.toFixed(1)} units/s (whole run ${(k1.units / k1.seconds).toFixed(1)})`);
    slices.push(await floorBareSlice(ctx, config, units, 2));
    ctx.log(`line K=8: ${warmup} warm-up units, then ${units} measured`);
    const k8 = await runSimLine(home, config, warmup + units, 8, {}, warmup);
    ctx.log(`line K=8: ${k8.measured.perS.toFixed(1)} units/s (whole run ${(k8.units / k8.seconds).toFixed(1)})`);
    slices.push(await floorBareSlice(ctx, config, units, 3));
    const a = floorBare(slices);
    ctx.log(`floor (a): median slice ${a.perS.toFixed(0)} units/s`);
    ctx.log(`floor (b): ${opensslUnits} units through the OpenSSL CLI`);
    const b = floorOpenssl(ctx, opensslUnits);

    const k1PerS = k1.measured.perS;
    const k8PerS = k8.measured.perS;
    const ratios: Figure[] = [
      { key: "ratio.k8_over_bare", label: "line K=8 / floor (a) bare work", value: k8PerS / a.perS, unit: "x", digits: 3, target: { op: ">=", value: 0.5 } },
      { key: "ratio.k8_over_openssl", label: "line K=8 / floor (b) OpenSSL CLI", value: k8PerS / b.perS, unit: "x", digits: 2, target: { op: ">=", value: 20 } },
      { key: "ratio.k1_over_bare", label: "line K=1 / floor (a) bare work", value: k1PerS / a.perS, unit: "x", digits: 3 },
      { key: "ratio.k1_over_openssl", label: "line K=1 / floor (b) OpenSSL CLI", value: k1PerS / b.perS, unit: "x", digits: 2 },
      { key: "ratio.k8_over_k1", label: "line K=8 / line K=1", value: k8PerS / k1PerS, unit: "x", digits: 2 },
    ];

    ctx.log(`long run: ${longUnits} units at K=8`);
    const long = await longRun(ctx, setup, longUnits, 8);

    return [...setup.figures, ...lineFigures("k1", "line K=1", k1), ...lineFigures("k8", "line K=8", k8), ...a.figures, ...b.figures, ...ratios, ...long];
  },
};
