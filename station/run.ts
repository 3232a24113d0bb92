import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { removeLeftoverTemporaries, systemRandom, type Clock, type Home, type IdmintConfig } from "../core/index.js";
import { DirectoryClient } from "../directory/client/index.js";
import { withHsm, type Hsm, type HsmOutageStats, type HsmStatus, type Signer } from "../hsm/index.js";
import { MergedFixture, TcpFixture, cmp, type KeyRequest, type UnitFixture, type UnitKeyAlgorithm } from "../link/index.js";
import { IdevidIssuer, parseCertificate } from "../pki/index.js";
import type { AllocationStatus } from "../serials/index.js";
import { SIM_HOST, startSimulatorProcess, type FaultSpec, type SimKeystoreOptions, type SimulatorProcess } from "../sim/index.js";
import { GroupCommitter } from "./commits.js";
import { StationError } from "./errors.js";
import { stationIdentity, withStation, type StationStores } from "./home.js";
import { runLine, type LineSummary } from "./line.js";
import { LiveLine, liveStatePath } from "./live.js";
import { acquireRunLock } from "./lock.js";
import type { LineContext, UnitOutcome } from "./pipeline.js";
import type { StopRules } from "./stop.js";
import { UnitStore } from "./store.js";
import { Uploader, type UploaderDeps, type UploadResult } from "./uploader.js";

/** Where the line's units come from: simulated units in a process of their own, or a real fixture. */
export type UnitSource =
  | { sim: { count: number; keystore: "soft" | "pkcs11"; faults: FaultSpec[]; slowMs: number } }
  | { fixture: { host: string; port: number } };

export interface StationRunOptions {
  home: Home;
  config: IdmintConfig;
  /** The environment the HSM module and the simulator see (PIN sources may name variables in it). */
  env: NodeJS.ProcessEnv;
  clock: Clock;
  /** IDMINT_NOW, if set: the store writer stamps its changes with it. */
  fixedNow?: string;
  /** Units the station drives; with `cmp`, may be absent (the units come to the station). */
  source?: UnitSource;
  /** Units that enrol themselves over CMP (RFC 9483) on this HTTP endpoint, until `until` settles. */
  cmp?: { host: string; port: number; secret: Uint8Array; until?: Promise<unknown>; onListening?(url: string): void };
  slots: number;
  keyAlgorithm: UnitKeyAlgorithm;
  timeoutMs: number;
  /** Upload to this directory in the background, then for `waitMs` once the line is done. */
  directory?: { url: string; waitMs: number };
  reached?: LineContext["reached"];
  /** When a line that only fails gives up (see stop.ts). */
  stop?: Partial<StopRules>;
  /** How long the line waits for an HSM that went away before it stops (HSM_UNREACHABLE); DEFAULT_HSM_WAIT_S when absent. */
  hsmWaitMs?: number;
  /** The HSM went away, or came back: the line's units wait meanwhile. */
  onHsmStatus?(status: HsmStatus): void;
  /** Once the line starts: how many units it will see, if known, and the simulator's pid, if any. */
  onStart?(line: { total?: number; simulatorPid?: number }): void;
  onUnit?(outcome: UnitOutcome): void;
  /** Where each unit's certificate is copied as SERIAL.pem (HOME/certs by default); false for no copies. */
  certsDir?: string | false;
}

export interface StationRunResult {
  summary: LineSummary;
  /** The HSM's signing sessions and its outages during the run. */
  hsm: HsmOutageStats;
  uploads?: UploadResult | { error: string };
  allocations: AllocationStatus[];
  pendingUploads: number;
}

/** A failover or a restarted appliance takes a minute or two; a shift lead notices five minutes of a stopped line. */
export const DEFAULT_HSM_WAIT_S = 300;

const UPLOAD_BATCH = 200;
const UPLOAD_INTERVAL_MS = 2_000;

/** The station's uploader for this home: the station key signs checkpoints and uploads. */
export function stationUploader(p: {
  home: Home;
  config: IdmintConfig;
  clock: Clock;
  stores: StationStores;
  signer: Signer;
  directory: string;
  batchSize: number;
  onEvent?: UploaderDeps["onEvent"];
}): Uploader {
  const station = stationIdentity(p.home, p.config);
  return new Uploader(
    {
      db: p.stores.db,
      ledger: p.stores.ledger,
      units: new UnitStore(p.stores.db, p.clock),
      client: new DirectoryClient(p.directory),
      stationId: p.config.station.id,
      stationCertificatePem: station.certificatePem,
      signer: p.signer,
      origin: station.origin,
      onEvent: p.onEvent,
    },
    { batchSize: p.batchSize },
  );
}

function unitTokenUri(config: IdmintConfig): string {
  if (!config.simulator?.unitTokenUri) {
    throw new StationError("NO_UNIT_TOKEN", "this home has no token for simulated secure elements (simulator.unitTokenUri in idmint.json): use --keystore soft");
  }
  return config.simulator.unitTokenUri;
}

/** The simulated units: the in-flight serials this station resumes first, then the next ones not yet delivered. */
async function startSimulator(o: StationRunOptions, sim: Extract<UnitSource, { sim: unknown }>["sim"], stores: StationStores, units: UnitStore): Promise<SimulatorProcess> {
  const { home, config } = o;
  const keystore: SimKeystoreOptions =
    sim.keystore === "pkcs11" ? { kind: "pkcs11", module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, tokenUri: unitTokenUri(config), env: o.env } : { kind: "soft" };
  const resuming = units.inFlight();
  const fresh = stores.serials.nextAvailable(Math.max(0, sim.count - resuming.length));
  const line = [...resuming, ...fresh].slice(0, sim.count);
  if (line.length === 0) throw new StationError("NOTHING_TO_DO", "no serial is left to provision: import a new allocation (idmint serials import FILE)");
  return startSimulatorProcess({
    unitsDir: home.unitsDir,
    root: readFileSync(home.pkiFile("root")),
    serials: line,
    model: stores.serials.modelOf(line[0]!) ?? "unit",
    hwType: config.profile.hwTypeOid,
    keystore,
    faults: sim.faults,
    slowMs: sim.slowMs,
  });
}

/**
 * `station run`: the whole line's wiring, shared by the CLI and the bench. Everything that
 * can be refused (the run lock, the HSM's keys, the simulator's options) is settled before
 * the store writer starts, and every part opened is closed again on every path, errors
 * included, so a refused run ends at once with nothing left running.
 */
export async function runStation(o: StationRunOptions): Promise<StationRunResult> {
  const { home, config } = o;
  const release = acquireRunLock(join(home.root, "station.lock"));
  // Under the lock: only the running line publishes the live state (the dashboard's).
  const live = new LiveLine({ path: liveStatePath(home), station: config.station.id, slots: o.slots, directory: o.directory?.url });
  let failure: unknown;
  try {
    const run = await withStation(home, o.clock, (stores) =>
      withHsm({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, env: o.env }, (hsm) => runWithStores(o, stores, hsm, live)),
    );
    const counts = await withStation(home, o.clock, ({ db, serials }) => ({ allocations: serials.status(), pendingUploads: new UnitStore(db, o.clock).pendingUploads() }));
    return { ...run, ...counts };
  } catch (e) {
    failure = e;
    throw e;
  } finally {
    await live.close(failure);
    release();
  }
}

async function runWithStores(o: StationRunOptions, stores: StationStores, hsm: Hsm, live: LiveLine): Promise<Pick<StationRunResult, "summary" | "uploads" | "hsm">> {
  const { config } = o;
  // The keys first: a wrong PIN or a missing token is refused before anything else starts.
  const signing = await hsm.lineSigning(o.directory ? [config.keys.factoryCa, config.keys.station] : [config.keys.factoryCa], {
    sessions: config.hsm.sessions ?? o.slots,
    sessionsAsked: config.hsm.sessions !== undefined,
    waitMs: o.hsmWaitMs ?? DEFAULT_HSM_WAIT_S * 1000,
    onStatus: (status) => {
      live.hsmStatus(status);
      o.onHsmStatus?.(status);
    },
  });
  try {
    return { ...(await runWithSigners(o, stores, live, signing.signers[0]!, signing.signers[1])), hsm: signing.stats() };
  } finally {
    await signing.close();
  }
}

async function runWithSigners(o: StationRunOptions, stores: StationStores, live: LiveLine, caSigner: Signer, stationSigner: Signer | undefined): Promise<Pick<StationRunResult, "summary" | "uploads">> {
  const { home, config } = o;
  const caPem = readFileSync(home.pkiFile("factory-ca"), "utf8");
  const issuer = new IdevidIssuer({ issuer: { signer: caSigner, certificate: parseCertificate(caPem, home.pkiFile("factory-ca")) }, profile: config.profile, clock: o.clock, random: systemRandom });
  const certsDir = o.certsDir === false ? undefined : (o.certsDir ?? home.certsDir);
  if (certsDir) {
    mkdirSync(certsDir, { recursive: true });
    // The caller holds the station's run lock: a temporary here is a killed run's half-published copy.
    removeLeftoverTemporaries(certsDir);
  }
  const units = new UnitStore(stores.db, o.clock);
  const uploader = (signer: Signer) => stationUploader({ home, config, clock: o.clock, stores, signer, directory: o.directory!.url, batchSize: UPLOAD_BATCH, onEvent: (e) => live.upload(e) });

  let sim: SimulatorProcess | undefined;
  // Every fixture opened, closed on every path (each close is idempotent).
  const parts: UnitFixture<KeyRequest>[] = [];
  let commits: GroupCommitter | undefined;
  const closeParts = () => closeAll([() => commits?.close(), ...parts.map((part) => () => part.close()), () => sim?.close()]);
  let summary: LineSummary;
  try {
    if (o.source && "sim" in o.source) {
      sim = await startSimulator(o, o.source.sim, stores, units);
      parts.push(new TcpFixture(SIM_HOST, sim.port, { timeoutMs: o.timeoutMs }));
    } else if (o.source) {
      parts.push(new TcpFixture(o.source.fixture.host, o.source.fixture.port, { timeoutMs: o.timeoutMs }));
    }
    if (o.cmp) parts.push(await startCmp(o, o.cmp));
    const fixture = parts.length === 1 ? parts[0]! : new MergedFixture(parts);
    commits = new GroupCommitter({ dbPath: home.stationDbPath, owner: `station:${config.station.id}`, now: o.fixedNow, certsDir });
    const ctx: LineContext = { commits, units, ca: { issuer, chainPems: [caPem] }, keyAlgorithm: o.keyAlgorithm, random: systemRandom, reached: o.reached };
    // Units enrolling over CMP come as they come: no total is known then.
    const total = o.cmp ? undefined : sim?.count;
    o.onStart?.({ total, simulatorPid: sim?.pid });
    live.started(total);
    // The directory is fed in the background; it being down never stops the line.
    const background = stationSigner ? uploader(stationSigner) : undefined;
    const uploading = background?.runInBackground(UPLOAD_INTERVAL_MS, () => undefined);
    try {
      const onUnit = (u: UnitOutcome) => {
        live.unit(u);
        o.onUnit?.(u);
      };
      summary = await runLine({ fixture, slots: o.slots, ctx, onUnit, stop: o.stop, watch: live });
    } finally {
      background?.stop();
      await uploading;
    }
  } catch (e) {
    // The line's own failure is what the user must see, not a part that also failed to close.
    await closeParts().catch(() => undefined);
    throw e;
  }
  await closeParts();
  if (!stationSigner) return { summary };
  const uploads = await uploader(stationSigner)
    .flush(Math.max(0, o.directory!.waitMs))
    .catch((e: Error) => ({ error: e.message }));
  return { summary, uploads };
}

/** The CMP endpoint (link/cmp): it takes units until `until` settles, then the line ends once their enrolments are done. */
async function startCmp(o: StationRunOptions, c: NonNullable<StationRunOptions["cmp"]>): Promise<cmp.CmpFixture> {
  const endpoint = await cmp.CmpFixture.listen({
    host: c.host,
    port: c.port,
    secret: c.secret,
    name: `CN=${o.config.station.id}`,
    rootPem: readFileSync(o.home.pkiFile("root"), "utf8"),
    timeoutMs: o.timeoutMs,
  });
  void c.until?.then(() => endpoint.stop());
  const host = c.host.includes(":") ? `[${c.host}]` : c.host;
  c.onListening?.(`http://${host}:${endpoint.port}/.well-known/cmp`);
  return endpoint;
}

/** Closes each part in turn even if one fails; the first failure is thrown once all are closed. */
async function closeAll(closers: Array<() => Promise<void> | undefined>): Promise<void> {
  let first: unknown;
  for (const close of closers) {
    try {
      await close();
    } catch (e) {
      first ??= e;
    }
  }
  if (first !== undefined) throw first;
}
