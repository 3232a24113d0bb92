import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import Database from "better-sqlite3";
import { openDb, type Db } from "../../core/index.js";
import { GroupCommitter } from "../../station/index.js";
import { scratch } from "../helpers.js";

const s = scratch("group-commit");
let db: Db;
let path: string;
let n = 0;

beforeEach(() => {
  path = join(s.dir, `store-${n++}.db`);
  db = openDb(path);
  db.exec("CREATE TABLE t (k TEXT PRIMARY KEY)");
});

afterEach(() => db.close());
afterAll(() => s.cleanup());

/** What another connection sees: only committed rows. */
function committed(): string[] {
  const other = new Database(path, { readonly: true });
  try {
    return other.prepare("SELECT k FROM t ORDER BY k").pluck().all() as string[];
  } finally {
    other.close();
  }
}

describe("GroupCommitter", () => {
  it("commits the changes asked for in one turn together, each settling only once it is committed", async () => {
    const commits = new GroupCommitter(db);
    const insert = db.prepare("INSERT INTO t (k) VALUES (?)");
    const seen: string[][] = [];
    const all = ["a", "b", "c"].map((k) => commits.commit(() => insert.run(k)).then(() => seen.push(committed())));
    expect(committed()).toEqual([]);
    await Promise.all(all);
    expect(seen).toEqual([["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"]]);
    expect(commits.stats).toEqual({ commits: 1, changes: 3 });
  });

  it("rolls back a refused change alone: the others in its group commit", async () => {
    const commits = new GroupCommitter(db);
    const insert = db.prepare("INSERT INTO t (k) VALUES (?)");
    const results = await Promise.allSettled([
      commits.commit(() => insert.run("x")),
      commits.commit(() => {
        insert.run("half-done");
        insert.run("x");
      }),
      commits.commit(() => {
        insert.run("y");
        return "kept";
      }),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((results[1] as PromiseRejectedResult).reason.code).toBe("SQLITE_CONSTRAINT_PRIMARYKEY");
    expect((results[2] as PromiseFulfilledResult<string>).value).toBe("kept");
    expect(committed()).toEqual(["x", "y"]);
  });

  it("rejects every change of a group whose commit fails, and commits none of them", async () => {
    const commits = new GroupCommitter(db);
    const insert = db.prepare("INSERT INTO t (k) VALUES (?)");
    // Another connection holds the write lock past the busy timeout: BEGIN IMMEDIATE fails.
    const other = new Database(path, { timeout: 0 });
    other.exec("BEGIN IMMEDIATE");
    db.pragma("busy_timeout = 0");
    try {
      const results = await Promise.allSettled([commits.commit(() => insert.run("p")), commits.commit(() => insert.run("q"))]);
      expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
      expect((results[0] as PromiseRejectedResult).reason.code).toBe("SQLITE_BUSY");
    } finally {
      other.exec("ROLLBACK");
      other.close();
    }
    expect(committed()).toEqual([]);
    await commits.commit(() => insert.run("r"));
    expect(committed()).toEqual(["r"]);
  });
});
