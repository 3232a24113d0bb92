import { parentPort, workerData } from "node:worker_threads";
import { join } from "node:path";
import { fixedClock, openDb, systemClock, toWireError, writeCopy, type WireError } from "../core/index.js";
import { Ledger } from "../ledger/index.js";
import { SerialStore } from "../serials/index.js";
import { applyChange, type UnitChange } from "./changes.js";
import { StationError } from "./errors.js";
import type { FromWriter, ToWriter, WriterOptions } from "./commits.js";
import { UnitStore } from "./store.js";

/*
 * The worker thread behind GroupCommitter: the only writer of the line's changes, on a
 * connection of its own, so that each commit's fsync blocks this thread and not the
 * station's event loop. It also makes the line's copies for people and scripts
 * (HOME/certs/SERIAL.pem), with plain system calls, off the event loop and off the path
 * of any commit's answer.
 */

const options = workerData as WriterOptions;
const clock = options.now ? fixedClock(new Date(options.now)) : systemClock;
const db = openDb(options.dbPath, { busyTimeoutMs: options.busyTimeoutMs });
// A checkpoint every 10,000 WAL pages (~40 MB) rather than SQLite's 1,000: a line rewrites
// the same few pages (the ledger's and the indexes' last leaves) commit after commit, and a
// checkpoint writes each back once however often it changed (bench/README.md).
db.pragma("wal_autocheckpoint = 10000");
// A WAL that outgrew that (a reader held a snapshot through a checkpoint) is cut back to 64 MB
// by the next checkpoint, so a million-unit run's WAL stays bounded, not at its high-water mark.
db.pragma("journal_size_limit = 67108864");
const ledger = new Ledger(db, clock);
const stores = { ledger, serials: new SerialStore(db, ledger, clock), units: new UnitStore(db, clock), owner: options.owner };
const port = parentPort!;

/*
 * Copies: a unit's certificate is copied to certsDir/SERIAL.pem once its "issued" change is
 * committed and answered, while the unit installs it; its "delivered" change is recorded
 * only after that copy was made (same thread, in order), or fails with the copy's error. A
 * unit delivered again after a restart (no "issued" change in this run) is copied just
 * before its delivery is recorded. A crash between copy and record leaves the unit
 * "issued", and its retry copies it again. Both collections hold units in flight only.
 */
const copied = new Set<string>();
const copyFailed = new Map<string, WireError>();

/** Writes certsDir/SERIAL.pem; returns why it could not. */
function copy(serial: string, pem: string): WireError | undefined {
  const path = join(options.certsDir!, `${serial}.pem`);
  try {
    writeCopy(path, pem);
    return undefined;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    return toWireError(new StationError("CERT_COPY", `cannot write ${path} (${why}): make the home's certs directory writable and free some disk space, then run the station again`));
  }
}

/** After a commit has been answered: the copies of the units it issued. */
function copyIssued(changes: readonly UnitChange[], outcomes: ReadonlyArray<{ ok: boolean }>): void {
  changes.forEach((c, i) => {
    if (c.op !== "issued" || !outcomes[i]!.ok) return;
    const failure = copy(c.serial, c.pem);
    if (failure) copyFailed.set(c.serial, failure);
    else copied.add(c.serial);
  });
}

/** Before a commit: why a change in it may not be made (a delivery whose copy failed). */
function refusal(c: UnitChange): WireError | undefined {
  if (c.op === "failed") {
    copied.delete(c.serial);
    copyFailed.delete(c.serial);
    return undefined;
  }
  if (c.op !== "delivered") return undefined;
  const failure = copyFailed.get(c.serial);
  copyFailed.delete(c.serial);
  if (failure) return failure;
  if (copied.delete(c.serial)) return undefined;
  return copy(c.serial, c.pem);
}

// A transaction function called inside another runs as a savepoint (better-sqlite3): one
// unit's refusal rolls back that unit's change alone. Both are made once, not per commit.
const applyOne = db.transaction((change: UnitChange) => applyChange(stores, change));
const commitBatch = db.transaction((changes: readonly UnitChange[], refused: ReadonlyArray<WireError | undefined>) => {
  const outcomes: Extract<FromWriter, { type: "committed" }>["outcomes"] = [];
  changes.forEach((change, i) => {
    const error = refused[i];
    if (error) return outcomes.push({ ok: false, error });
    try {
      applyOne(change);
      outcomes.push({ ok: true });
    } catch (e) {
      outcomes.push({ ok: false, error: toWireError(e) });
    }
  });
  return outcomes;
});

port.on("message", (m: ToWriter) => {
  if (m.type === "close") {
    db.close();
    port.close();
    return;
  }
  const refused = options.certsDir ? m.changes.map(refusal) : [];
  let outcomes: Extract<FromWriter, { type: "committed" }>["outcomes"];
  try {
    outcomes = commitBatch.immediate(m.changes, refused);
  } catch (e) {
    port.postMessage({ type: "failed", id: m.id, error: toWireError(e) } satisfies FromWriter);
    return;
  }
  port.postMessage({ type: "committed", id: m.id, outcomes } satisfies FromWriter);
  if (options.certsDir) copyIssued(m.changes, outcomes);
});
