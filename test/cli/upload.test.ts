import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Home } from "../../core/index.js";
import { x509 } from "../../pki/index.js";
import { BIN, REPO, idmint, idmintInProcess, lineHome, oneLineError, openssl, scratch, type Run } from "../helpers.js";
import { forgeIdevid, postSigned, stationUpload } from "../directory/fixture.js";

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

/** A station with one allocation of `count` serials from SN000001, imported; the directory learns it unless `register` is false. */
function station(name: string, count: number, options: { register?: boolean } = {}): Station {
  const st = lineHome(s.dir, name, count);
  if (options.register !== false) {
    const r = st.cli("directory", "allocations", "add", st.allocation);
    if (r.code !== 0) throw new Error(`directory allocations add: ${r.stderr}`);
  }
  return st;
}

interface Served {
  url: string;
  port: number;
  child: ChildProcess;
  /** The server's access log so far: one JSON object per line. */
  log: () => Array<Record<string, any>>;
}

let servers = 0;

/**
 * Starts `idmint directory serve` as its own process; resolves with its URL once it listens.
 * Its log goes to a file, so what it logged before answering is there once the answer came,
 * even while a synchronous spawn keeps this process from reading a pipe.
 */
function serve(home: string, port = 0): Promise<Served> {
  const logFile = join(s.dir, `directory-${++servers}.log`);
  const fd = openSync(logFile, "w");
  const child = spawn(process.execPath, [BIN, "--home", home, "directory", "serve", "--port", String(port)], {
    cwd: REPO,
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    stdio: ["ignore", "pipe", fd],
  });
  closeSync(fd);
  children.add(child);
  // Whole lines only: the last piece is empty, or a line still being written.
  const log = () => readFileSync(logFile, "utf8").split("\n").slice(0, -1).map((l) => JSON.parse(l) as Record<string, any>);
  return new Promise((resolve, reject) => {
    let out = "";
    const early = (code: number | null) => reject(new Error(`directory exited with ${code}: ${readFileSync(logFile, "utf8")}`));
    child.on("exit", early);
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(out);
      if (m) {
        child.off("exit", early);
        resolve({ url: m[1]!, port: Number(m[2]), child, log });
      }
    });
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

/** curl fetches each serial's certificate as an operator would, and openssl verifies each to the root; returns where they are. */
async function fetchAndVerify(url: string, home: string, serials: string[], name: string): Promise<string> {
  const fetched = join(s.dir, name);
  const curl = await curlAll(url, serials, fetched);
  expect(curl.code, curl.stderr).toBe(0);
  const v = openssl(["verify", "-CAfile", join(home, "pki", "root.pem"), "-untrusted", join(home, "pki", "factory-ca.pem"), ...serials.map((x) => join(fetched, `${x}.pem`))]);
  expect(v.code, v.stderr).toBe(0);
  expect(v.stdout.trim().split("\n")).toHaveLength(serials.length);
  return fetched;
}

/** Requests the directory got to POST /uploads, from its access log. */
function uploadRequests(dir: Served): number {
  return dir.log().filter((l) => l.msg === "incoming request" && l.req?.method === "POST" && l.req?.url === "/uploads").length;
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
    expect(summary).toMatchObject({ provisioned: 500, failed: 0, pendingUploads: 0, uploads: { pending: 0, refused: {} } });
    const serials = readdirSync(join(st.home, "certs")).map((f) => f.replace(/\.pem$/, ""));
    expect(serials).toHaveLength(500);
    await fetchAndVerify(dir.url, st.home, serials, "fetched");
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
    expect(JSON.parse(out)).toMatchObject({ pending: 0, refused: {} });

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

describe("certificates the directory refused", () => {
  it("refused before the directory knew their allocation, one request per batch; after `directory allocations add`, --retry-refused publishes them, exactly once", async () => {
    const st = station("unregistered", 30, { register: false });
    const line = st.cli("station", "run", "--sim", "30", "--slots", "4", "--json");
    expect(line.code, line.stderr).toBe(0);
    const dir = await serve(st.home);

    const first = st.cli("station", "upload", "--directory", dir.url, "--batch", "10", "--json");
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ sent: 0, batches: 3, refused: { SERIAL_UNALLOCATED: 30 }, retried: 0, pending: 0, awaitingAllocation: 30 });
    expect(uploadRequests(dir)).toBe(3);
    expect((await curlAll(dir.url, ["SN000001"], join(s.dir, "none"))).code).not.toBe(0);
    expect(JSON.parse(st.cli("serials", "status", "--json").stdout).uploads).toEqual({ pending: 0, sent: 0, refused: 30 });

    const added = st.cli("directory", "allocations", "add", st.allocation);
    expect(added.code, added.stderr).toBe(0);
    // In this process with a terminal: the progress bar on stderr.
    const retry = await idmintInProcess(["--home", st.home, "station", "upload", "--directory", dir.url, "--batch", "10", "--retry-refused"], { isTty: true });
    expect(retry.code, retry.stderr).toBe(0);
    expect(retry.stderr).toContain("sending again 30 certificates refused before the directory knew their allocation");
    expect(retry.stderr).toMatch(/\[#{30}\] 30\/30 certificates: 30 sent, 0 refused/);
    expect(retry.stdout).toMatch(/^sent 30 certificates in 3 batches; 0 still pending\n {2}30 of them had been refused before/);
    expect(uploadRequests(dir)).toBe(6);

    const serials = Array.from({ length: 30 }, (_, i) => `SN${String(i + 1).padStart(6, "0")}`);
    await fetchAndVerify(dir.url, st.home, serials, "retried");

    // Exactly once: nothing is left to send again, and nothing is sent.
    const again = st.cli("station", "upload", "--directory", dir.url, "--retry-refused", "--json");
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ sent: 0, batches: 0, retried: 0, refused: {}, pending: 0, awaitingAllocation: 0 });
    expect(uploadRequests(dir)).toBe(6);
    expect(directoryCount(st.home)).toBe(30);
    expect(JSON.parse(st.cli("serials", "status", "--json").stdout).uploads).toEqual({ pending: 0, sent: 30, refused: 0 });
    const verified = st.cli("ledger", "verify");
    expect(verified.code, verified.stderr).toBe(0);
  });

  it("a conflicting certificate is refused once and never sent again; unallocated ones go again by themselves once the directory holds more allocations", async () => {
    const st = station("conflict", 12);
    const later = join(s.dir, "conflict-later.json");
    for (const args of [
      ["serials", "allocate", "--order", "PO-2", "--station", "station-1", "--model", "RT-1", "--count", "8", "--prefix", "SN", "--start", "13", "--out", later],
      ["serials", "import", later],
    ]) {
      const r = st.cli(...args);
      expect(r.code, r.stderr).toBe(0);
    }
    const dir = await serve(st.home);
    // The directory already publishes another certificate for SN000003 when the line makes its own.
    const h = new Home(st.home);
    const other = await forgeIdevid(h, "SN000003");
    const { signed } = await stationUpload(h, { previousSize: 0, certificates: [{ serial: "SN000003", certificate: other.toString("pem") }] });
    expect((await postSigned(dir.url, signed)).status).toBe(200);
    const line = st.cli("station", "run", "--sim", "20", "--slots", "4", "--json");
    expect(line.code, line.stderr).toBe(0);
    const posted = uploadRequests(dir);

    // Piped: a line per batch. One request settles the batch: 11 published, 9 refused.
    const first = st.cli("station", "upload", "--directory", dir.url, "--batch", "20");
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain("batch 1: 11 sent, 9 refused (1 CONFLICT, 8 SERIAL_UNALLOCATED); 0 pending\n");
    expect(first.stdout).toContain("refused 1 as CONFLICT: SN000003\n");
    expect(first.stdout).toContain("refused 8 as SERIAL_UNALLOCATED: SN000013, SN000014, SN000015, SN000016, SN000017, and 3 more\n");
    expect(first.stdout).toContain("--retry-refused");
    expect(uploadRequests(dir)).toBe(posted + 1);

    // The directory's allocations did not change: one certificate-free upload asks, nothing is sent again.
    const unchanged = st.cli("station", "upload", "--directory", dir.url, "--json");
    expect(unchanged.code, unchanged.stderr).toBe(0);
    expect(JSON.parse(unchanged.stdout)).toMatchObject({ sent: 0, batches: 1, retried: 0, refused: {}, awaitingAllocation: 8 });
    expect(uploadRequests(dir)).toBe(posted + 2);

    // Once it knows the allocation, a plain upload sends them again by itself.
    const added = st.cli("directory", "allocations", "add", later);
    expect(added.code, added.stderr).toBe(0);
    const auto = st.cli("station", "upload", "--directory", dir.url, "--json");
    expect(auto.code, auto.stderr).toBe(0);
    expect(JSON.parse(auto.stdout)).toMatchObject({ sent: 8, batches: 2, retried: 8, refused: {}, pending: 0, awaitingAllocation: 0 });
    expect(uploadRequests(dir)).toBe(posted + 4);

    // --retry-refused leaves the conflict alone: no request at all.
    const retry = st.cli("station", "upload", "--directory", dir.url, "--retry-refused", "--json");
    expect(retry.code, retry.stderr).toBe(0);
    expect(JSON.parse(retry.stdout)).toMatchObject({ sent: 0, batches: 0, retried: 0 });
    expect(uploadRequests(dir)).toBe(posted + 4);
    expect(dir.log().filter((l) => l.msg?.startsWith("certificate refused") && l.serial === "SN000003")).toHaveLength(1);
    expect(JSON.parse(st.cli("serials", "status", "--json").stdout).uploads).toEqual({ pending: 0, sent: 19, refused: 1 });

    // The directory still publishes the other certificate, and the later serials.
    const later8 = Array.from({ length: 8 }, (_, i) => `SN${String(i + 13).padStart(6, "0")}`);
    const fetched = await fetchAndVerify(dir.url, st.home, ["SN000003", ...later8], "conflict-fetched");
    expect(new x509.X509Certificate(readFileSync(join(fetched, "SN000003.pem"), "utf8")).serialNumber).toBe(other.serialNumber);
  });
});
