import { existsSync } from "node:fs";
import { openDb, readInputFile, type Clock, type Db, type Home, type IdmintConfig } from "../core/index.js";
import { Ledger, LedgerError, stationOrigin } from "../ledger/index.js";
import { parseCertificate } from "../pki/index.js";
import { SerialStore } from "../serials/index.js";

export interface StationStores {
  db: Db;
  ledger: Ledger;
  serials: SerialStore;
}

/** Opens the home's station store (ledger and serials), runs `fn`, and always closes it. */
export async function withStation<T>(home: Home, clock: Clock, fn: (s: StationStores) => Promise<T> | T): Promise<T> {
  const db = openDb(home.stationDbPath);
  try {
    const ledger = new Ledger(db, clock);
    return await fn({ db, ledger, serials: new SerialStore(db, ledger, clock) });
  } finally {
    db.close();
  }
}

/** Opens the home's ledger, runs `fn`, and always closes the store; `mustExist` refuses a home that never issued. */
export async function withLedger<T>(home: Home, clock: Clock, fn: (ledger: Ledger) => Promise<T> | T, options: { mustExist?: boolean } = {}): Promise<T> {
  if (options.mustExist && !existsSync(home.stationDbPath)) {
    throw new LedgerError("NO_LEDGER", `no ledger at ${home.stationDbPath}: nothing has been issued from this home yet`);
  }
  const db = openDb(home.stationDbPath);
  try {
    return await fn(new Ledger(db, clock));
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
