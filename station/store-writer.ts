import { parentPort, workerData } from "node:worker_threads";
import { fixedClock, openDb, systemClock, toWireError } from "../core/index.js";
import { Ledger } from "../ledger/index.js";
import { SerialStore } from "../serials/index.js";
import { applyChange, type UnitChange } from "./changes.js";
import type { FromWriter, ToWriter, WriterOptions } from "./commits.js";
import { UnitStore } from "./store.js";

/*
 * The worker thread behind GroupCommitter: the only writer of the line's changes, on a
 * connection of its own, so that each commit's fsync blocks this thread and not the
 * station's event loop.
 */

const options = workerData as WriterOptions;
const clock = options.now ? fixedClock(new Date(options.now)) : systemClock;
const db = openDb(options.dbPath, { busyTimeoutMs: options.busyTimeoutMs });
const ledger = new Ledger(db, clock);
const stores = { ledger, serials: new SerialStore(db, ledger, clock), units: new UnitStore(db, clock), owner: options.owner };
const port = parentPort!;

// A transaction function called inside another runs as a savepoint (better-sqlite3): one
// unit's refusal rolls back that unit's change alone. Both are made once, not per commit.
const applyOne = db.transaction((change: UnitChange) => applyChange(stores, change));
const commitBatch = db.transaction((changes: readonly UnitChange[]) => {
  const outcomes: Extract<FromWriter, { type: "committed" }>["outcomes"] = [];
  for (const change of changes) {
    try {
      outcomes.push({ ok: true, value: applyOne(change) });
    } catch (e) {
      outcomes.push({ ok: false, error: toWireError(e) });
    }
  }
  return outcomes;
});

port.on("message", (m: ToWriter) => {
  if (m.type === "close") {
    db.close();
    port.close();
    return;
  }
  let outcomes: Extract<FromWriter, { type: "committed" }>["outcomes"];
  try {
    outcomes = commitBatch.immediate(m.changes);
  } catch (e) {
    port.postMessage({ type: "failed", id: m.id, error: toWireError(e) } satisfies FromWriter);
    return;
  }
  port.postMessage({ type: "committed", id: m.id, outcomes } satisfies FromWriter);
});
