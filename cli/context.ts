import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { CoreError, Home, fixedClock, openDb, removeLeftoverTemporaries, systemClock, systemRandom, type Clock, type Db, type IdmintConfig } from "../core/index.js";
import { Hsm } from "../hsm/index.js";
import { Ledger, LedgerError, stationOrigin } from "../ledger/index.js";
import { IdevidIssuer, parseCertificate, x509 } from "../pki/index.js";
import { SerialStore } from "../serials/index.js";
import { GroupCommitter, type LineContext, type UnitStore } from "../station/index.js";
import type { UnitKeyAlgorithm } from "../link/index.js";
import type { GlobalArgs, Io } from "./io.js";

export function homeOf(args: GlobalArgs, io: Io): Home {
  return Home.resolve(args.home, io.env);
}

/** Opens the HSM a home is configured for, runs `fn`, and always closes it again. */
export async function withHsm<T>(config: IdmintConfig, io: Io, fn: (hsm: Hsm) => Promise<T> | T): Promise<T> {
  const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, env: io.env });
  try {
    return await fn(hsm);
  } finally {
    hsm.close();
  }
}

export function readInputFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "is not readable" : `cannot be read (${code})`;
    throw new CoreError("input", "FILE_UNREADABLE", `${what} ${path} ${why}: give the path of an existing file`, { cause: e });
  }
}

/** Opens the home's station store with its ledger, runs `fn`, and always closes the store. */
export async function withLedger<T>(home: Home, fn: (ledger: Ledger) => Promise<T> | T, options: { mustExist?: boolean } = {}): Promise<T> {
  if (options.mustExist && !existsSync(home.stationDbPath)) {
    throw new LedgerError("state", "NO_LEDGER", `no ledger at ${home.stationDbPath}: nothing has been issued from this home yet`);
  }
  const db = openDb(home.stationDbPath);
  try {
    return await fn(new Ledger(db, systemClock));
  } finally {
    db.close();
  }
}

/** This home's station as the ledger sees it: its log origin, certificate and public key. */
export function stationIdentity(home: Home, config: IdmintConfig): { origin: string; certificatePem: string; spki: Uint8Array } {
  const certificatePem = readInputFile(home.pkiFile("station"), "the station certificate").toString("utf8");
  const cert = parseCertificate(certificatePem, home.pkiFile("station"));
  return { origin: stationOrigin(config.station.id), certificatePem, spki: new Uint8Array(cert.publicKey.rawData) };
}

/** The clock commands use: the system's, or IDMINT_NOW (ISO 8601) so tests can stand at a given time. */
export function clockOf(io: Io): Clock {
  const now = io.env.IDMINT_NOW;
  if (!now) return systemClock;
  const at = new Date(now);
  if (Number.isNaN(at.getTime())) throw new CoreError("usage", "CONFIG_INVALID", `IDMINT_NOW=${now} is not an ISO 8601 time: unset it or fix it`);
  return fixedClock(at);
}

export interface StationStores {
  db: Db;
  ledger: Ledger;
  serials: SerialStore;
}

/** Opens the home's station store (ledger and serials), runs `fn`, and always closes it. */
export async function withStation<T>(home: Home, io: Io, fn: (s: StationStores) => Promise<T> | T): Promise<T> {
  const clock = clockOf(io);
  const db = openDb(home.stationDbPath);
  try {
    const ledger = new Ledger(db, clock);
    return await fn({ db, ledger, serials: new SerialStore(db, ledger, clock) });
  } finally {
    db.close();
  }
}

/** Reads a JSON document the user named, with a one-line error for a missing or non-JSON file. */
export function readJsonFile(path: string, what: string): unknown {
  const text = readInputFile(path, what).toString("utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CoreError("input", "FILE_UNREADABLE", `${what} ${path} is not JSON: give the file idmint wrote`, { cause: e });
  }
}

export function pinnedRoot(home: Home, path?: string): x509.X509Certificate {
  const p = path ?? home.pkiFile("root");
  return parseCertificate(readInputFile(p, "the vendor root certificate"), p);
}

/** Resolves once the process is asked to stop (SIGINT or SIGTERM); `dispose` removes the handlers. */
export function stopSignal(): { stopped: Promise<NodeJS.Signals>; dispose: () => void } {
  let dispose = () => {};
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      dispose();
      resolve(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    dispose = () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    };
  });
  return { stopped, dispose };
}

/** Every command that writes --out refuses to replace a file. */
export function assertNewOutput(path: string): void {
  if (existsSync(path)) throw new CoreError("input", "FILE_EXISTS", `--out ${path} already exists: choose another path or remove it`);
}

/** Reads an input file, refusing one larger than `max` bytes before reading it. */
export function readBoundedInput(path: string, what: string, max: number): Buffer {
  let size = 0;
  try {
    size = statSync(path).size;
  } catch {
    // readInputFile says what is wrong with the path.
  }
  if (size > max) throw new CoreError("input", "FILE_UNREADABLE", `${what} ${path} is ${size} bytes, more than ${max}: give the file itself`);
  return readInputFile(path, what);
}

/**
 * The line's context for this home's station: the writer of its store (a worker thread;
 * `await ctx.commits.close()` when the line is done), the factory CA in the HSM, the profile,
 * and certificates published to HOME/certs/SERIAL.pem. `fixedNow` is IDMINT_NOW, if set.
 */
export function stationLineContext(
  home: Home,
  config: IdmintConfig,
  hsm: Hsm,
  p: { units: UnitStore; keyAlgorithm: UnitKeyAlgorithm; clock: Clock; fixedNow?: string; reached?: LineContext["reached"] },
): LineContext {
  const caPem = readFileSync(home.pkiFile("factory-ca"), "utf8");
  mkdirSync(home.certsDir, { recursive: true });
  // Callers hold the station's run lock: a temporary here is a killed run's half-published copy.
  removeLeftoverTemporaries(home.certsDir);
  return {
    commits: new GroupCommitter({ dbPath: home.stationDbPath, owner: `station:${config.station.id}`, now: p.fixedNow, certsDir: home.certsDir }),
    units: p.units,
    ca: {
      issuer: new IdevidIssuer({
        issuer: { signer: hsm.signer(config.keys.factoryCa), certificate: parseCertificate(caPem, home.pkiFile("factory-ca")) },
        profile: config.profile,
        clock: p.clock,
        random: systemRandom,
      }),
      chainPems: [caPem],
    },
    keyAlgorithm: p.keyAlgorithm,
    random: systemRandom,
    reached: p.reached,
  };
}
