import { parentPort, workerData } from "node:worker_threads";
import { join } from "node:path";
import { IdmintError, fixedClock, openDb, systemClock, toWireError, writeCopy, type WireError } from "../core/index.js";
import { Ledger } from "../ledger/index.js";
import { SerialStore } from "../serials/index.js";
import { applyChange, type UnitChange } from "./changes.js";
import type { FromWriter, ToWriter, WriterOptions } from "./commits.js";
import { UnitStore } from "./store.js";

/*
 * The worker thread behind GroupCommitter: the only writer of the line's changes, on a
 * connection of its own, so that each commit's fsync blocks this thread and not the
 * station's event loop. It also makes the line's copies for people and scripts
 * (HOME/certs/SERIAL.pem), with plain system calls off the event loop.
 */

const options = workerData as WriterOptions;
const clock = options.now ? fixedClock(new Date(options.now)) : systemClock;
const db = openDb(options.dbPath, { busyTimeoutMs: options.busyTimeoutMs });
const ledger = new Ledger(db, clock);
const stores = { ledger, serials: new SerialStore(db, ledger, clock), units: new UnitStore(db, clock), owner: options.owner };
const port = parentPort!;

/**
 * A delivered unit's certificate is copied to certsDir/SERIAL.pem before its delivery is
 * recorded: a crash in between leaves the unit "issued", and its retry copies it again.
 * Returns why the copy failed; the delivery is then not recorded (the unit fails with it).
 */
function copyFailure(change: UnitChange): WireError | undefined {
  if (change.op !== "delivered" || !options.certsDir) return undefined;
  const path = join(options.certsDir, `${change.serial}.pem`);
  try {
    writeCopy(path, change.pem);
    return undefined;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    return toWireError(new IdmintError("state", "CERT_COPY", `cannot write ${path} (${why}): make the home's certs directory writable and free some disk space, then run the station again`));
  }
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
      outcomes.push({ ok: true, value: applyOne(change) });
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
  // Copies are made before the transaction, which they would only hold open longer.
  const refused = m.changes.map(copyFailure);
  let outcomes: Extract<FromWriter, { type: "committed" }>["outcomes"];
  try {
    outcomes = commitBatch.immediate(m.changes, refused);
  } catch (e) {
    port.postMessage({ type: "failed", id: m.id, error: toWireError(e) } satisfies FromWriter);
    return;
  }
  port.postMessage({ type: "committed", id: m.id, outcomes } satisfies FromWriter);
});
