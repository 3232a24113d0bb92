import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeSync, cpSync, existsSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { sha256Hex } from "../../core/index.js";
import { makeHome, must } from "../directory/fixture.js";
import { idmint, oneLineError, scratch, type Run } from "../helpers.js";

// Issue 16, item 2: a store that is damaged, truncated, not SQLite or emptied is a one-line
// error naming the file and the fix (exit 5), never an internal error or a new, empty history.

const s = scratch("damaged-db");
afterAll(() => s.cleanup());
const home = join(s.dir, "home");
const cli = (...args: string[]): Run => idmint(["--home", home, ...args]);
const stationDb = join(home, "station.db");
const vendorDb = join(home, "vendor.db");
const pristine = join(s.dir, "pristine");

beforeAll(() => {
  makeHome(s.dir, "home");
  const list = join(s.dir, "allocation.json");
  must(cli("serials", "allocate", "--order", "PO-1", "--station", "station-1", "--model", "RT-1", "--count", "40", "--prefix", "SN", "--start", "1", "--out", list), "allocate");
  must(cli("serials", "import", list), "import");
  must(cli("station", "run", "--sim", "10"), "station run");
  // Every store closed and checkpointed: the files alone are the home's state.
  cpSync(home, pristine, { recursive: true });
});

/** The home as the line left it, then `damage` applied to one of its stores. */
function restore(damage: (() => void) | undefined): void {
  rmSync(home, { recursive: true, force: true });
  cpSync(pristine, home, { recursive: true });
  damage?.();
}

/** Overwrites, with 0xFF bytes, the page holding the root of `table` (or index): a page the command reads. */
function overwritePageOf(path: string, table: string): void {
  const db = new Database(path, { readonly: true });
  const { rootpage, pageSize } = db.prepare("SELECT rootpage, (SELECT page_size FROM pragma_page_size) AS pageSize FROM sqlite_schema WHERE name = ?").get(table) as { rootpage: number; pageSize: number };
  db.close();
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, Buffer.alloc(pageSize, 0xff), 0, pageSize, (rootpage - 1) * pageSize);
  } finally {
    closeSync(fd);
  }
}

const damages = {
  "a page it reads overwritten": (path: string, table: string) => overwritePageOf(path, table),
  "emptied (0 bytes)": (path: string) => truncateSync(path, 0),
  "truncated to half": (path: string) => truncateSync(path, Math.floor(readFileSync(path).length / 2)),
  "not SQLite": (path: string) => writeFileSync(path, "station records\n".repeat(500)),
};

const commands: Array<{ name: string; args: string[]; db: string; table: string }> = [
  { name: "ledger verify", args: ["ledger", "verify"], db: stationDb, table: "ledger_entries" },
  { name: "serials status", args: ["serials", "status"], db: stationDb, table: "allocations" },
  { name: "station report", args: ["station", "report", "--out", join(s.dir, "report.json")], db: stationDb, table: "ledger_entries" },
  { name: "station run", args: ["station", "run", "--sim", "2"], db: stationDb, table: "allocations" },
  {
    name: "serials allocate",
    args: ["serials", "allocate", "--order", "PO-2", "--station", "station-1", "--model", "RT-1", "--count", "3", "--prefix", "SN", "--start", "1", "--out", join(s.dir, "again.json")],
    db: vendorDb,
    table: "sqlite_autoindex_vendor_serials_1",
  },
];

function expectRefused(r: Run, db: string): void {
  expect(r.code, r.stderr).toBe(5);
  const line = oneLineError(r);
  expect(line).toContain(db);
  expect(line).toMatch(/restore it from a backup/);
}

describe("a damaged store ends the command with exit 5, one line naming it, and is left as it was", () => {
  for (const c of commands) {
    for (const [kind, damage] of Object.entries(damages)) {
      it(`${c.name}: ${c.db.endsWith("vendor.db") ? "vendor.db" : "station.db"} ${kind}`, () => {
        restore(() => damage(c.db, c.table));
        const before = sha256Hex(readFileSync(c.db));
        const r = cli(...c.args);
        expectRefused(r, c.db);
        expect(sha256Hex(readFileSync(c.db))).toBe(before);
      });
    }
  }

  it("station run: damage only the store writer's thread meets (the seen keys) stops the line with exit 5", () => {
    restore(() => overwritePageOf(stationDb, "seen_keys"));
    const r = cli("station", "run", "--sim", "2", "--json");
    expectRefused(r, stationDb);
  });

  it("a store that is missing in a home that never had one is still made", () => {
    restore(() => rmSync(vendorDb));
    must(cli("serials", "allocate", "--order", "PO-3", "--station", "station-1", "--model", "RT-1", "--count", "2", "--prefix", "NEW", "--start", "1", "--out", join(s.dir, "new.json")), "allocate");
    expect(existsSync(vendorDb)).toBe(true);
  });
});
