import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { BIN, REPO, lineHome, oneLineError, openssl, scratch, type Run } from "../helpers.js";

const s = scratch("upload");
const children = new Set<ChildProcess>();
afterEach(() => {
  for (const c of children) c.kill("SIGKILL");
  children.clear();
});
afterAll(() => s.cleanup());

interface Station {
  home: string;
  cli: (...args: string[]) => Run;
  allocation: string;
}

function station(name: string, count: number): Station {
  const st = lineHome(s.dir, name, count);
  const r = st.cli("directory", "allocations", "add", st.allocation);
  if (r.code !== 0) throw new Error(`directory allocations add: ${r.stderr}`);
  return st;
}

/** Starts `idmint directory serve` as its own process; resolves with its URL once it listens. */
function serve(home: string, port = 0): Promise<{ url: string; port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, [BIN, "--home", home, "directory", "serve", "--port", String(port)], { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  children.add(child);
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(out);
      if (m) resolve({ url: m[1]!, port: Number(m[2]), child });
    });
    child.on("exit", (code) => reject(new Error(`directory exited with ${code}: ${err}`)));
  });
}

function curlAll(url: string, serials: string[], dir: string): Promise<Run> {
  mkdirSync(dir, { recursive: true });
  const args = ["-sS", "--fail", "--max-time", "60"];
  for (const serial of serials) args.push(`${url}/certificates/${serial}.crt`, "-o", join(dir, `${serial}.pem`));
  // Asynchronous: a synchronous spawn would block this process while curl waits.
  return new Promise<Run>((resolve) => {
    const c = spawn("curl", args);
    let stderr = "";
    c.stderr.on("data", (d) => (stderr += d));
    c.on("exit", (code) => resolve({ code: code ?? -1, stdout: "", stderr }));
  });
}

function directoryCount(home: string): number {
  const db = new Database(join(home, "directory.db"), { readonly: true });
  try {
    return db.prepare("SELECT COUNT(*) FROM directory_certificates").pluck().get() as number;
  } finally {
    db.close();
  }
}

describe("station and directory", () => {
  it("500 units provisioned and uploaded; curl fetches every certificate and openssl verifies it", async () => {
    const st = station("five-hundred", 500);
    const dir = await serve(st.home);
    const r = st.cli("station", "run", "--sim", "500", "--slots", "8", "--directory", dir.url, "--json");
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ provisioned: 500, failed: 0, pendingUploads: 0, uploads: { pending: 0, refused: [] } });
    const serials = readdirSync(join(st.home, "certs")).map((f) => f.replace(/\.pem$/, ""));
    expect(serials).toHaveLength(500);
    const fetched = join(s.dir, "fetched");
    const curl = await curlAll(dir.url, serials, fetched);
    expect(curl.code, curl.stderr).toBe(0);
    const v = openssl(["verify", "-CAfile", join(st.home, "pki", "root.pem"), "-untrusted", join(st.home, "pki", "factory-ca.pem"), ...serials.map((x) => join(fetched, `${x}.pem`))]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout.trim().split("\n")).toHaveLength(500);
    const status = JSON.parse(st.cli("serials", "status", "--json").stdout);
    expect(status.uploads).toEqual({ pending: 0, sent: 500, refused: 0 });
  });

  it("a directory killed during an upload burst and restarted: the station retries and the end is complete, exactly once", async () => {
    const st = station("burst", 200);
    // The line runs with no directory at all: certificates wait in the outbox.
    const line = st.cli("station", "run", "--sim", "200", "--slots", "8", "--json");
    expect(line.code, line.stderr).toBe(0);
    expect(JSON.parse(line.stdout).pendingUploads).toBe(200);
    expect(JSON.parse(st.cli("serials", "status", "--json").stdout).uploads).toEqual({ pending: 200, sent: 0, refused: 0 });

    const first = await serve(st.home);
    const upload = spawn(process.execPath, [BIN, "--home", st.home, "station", "upload", "--directory", first.url, "--batch", "10", "--retry-for", "60", "--json"], { cwd: REPO });
    children.add(upload);
    let out = "";
    upload.stdout.on("data", (d) => (out += d));
    const done = new Promise<number>((resolve) => upload.on("exit", (code) => resolve(code ?? -1)));
    // Kill the directory once some batches landed, mid-burst; bring it back on the same port.
    while (directoryCount(st.home) < 30) await new Promise((r) => setTimeout(r, 20));
    first.child.kill("SIGKILL");
    await new Promise((r) => first.child.once("exit", r));
    const killedAt = directoryCount(st.home);
    expect(killedAt).toBeLessThan(200);
    await new Promise((r) => setTimeout(r, 300));
    await serve(st.home, first.port);
    expect(await done).toBe(0);
    expect(JSON.parse(out)).toMatchObject({ pending: 0, refused: [] });

    expect(directoryCount(st.home)).toBe(200);
    const db = new Database(join(st.home, "directory.db"), { readonly: true });
    try {
      expect(db.prepare("SELECT COUNT(DISTINCT serial) FROM directory_certificates").pluck().get()).toBe(200);
      expect(db.prepare("SELECT COUNT(*) FROM directory_conflicts").pluck().get()).toBe(0);
    } finally {
      db.close();
    }
    expect(JSON.parse(st.cli("serials", "status", "--json").stdout).uploads).toEqual({ pending: 0, sent: 200, refused: 0 });
    const v = st.cli("ledger", "verify");
    expect(v.code, v.stderr).toBe(0);
  });

  it("a directory that is down never stops the line, and station upload says what is pending", () => {
    const st = station("down", 5);
    const r = st.cli("station", "run", "--sim", "5", "--slots", "2", "--directory", "http://127.0.0.1:9", "--upload-wait", "0", "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ provisioned: 5, pendingUploads: 5 });
    const u = st.cli("station", "upload", "--directory", "http://127.0.0.1:9", "--retry-for", "1");
    expect(u.code).toBe(7);
    expect(oneLineError(u)).toMatch(/5 certificates are still pending.*station upload again later/);
  });
});
