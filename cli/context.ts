import { existsSync, readFileSync } from "node:fs";
import { CoreError, Home, openDb, systemClock, type IdmintConfig } from "../core/index.js";
import { Hsm } from "../hsm/index.js";
import { Ledger, LedgerError, stationOrigin } from "../ledger/index.js";
import { parseCertificate } from "../pki/index.js";
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
