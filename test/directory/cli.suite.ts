import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DirectoryClient } from "../../directory/client/index.js";
import { REPO, idmintInProcess, oneLineError, openssl, scratch, type Run } from "../helpers.js";
import { certPem, directoryCli, directoryCommandLine, makeHome, must, stationUpload } from "./fixture.js";

import { testStores, useStore, type StoreKind } from "./stores.js";

/** The directory commands on one store kind (cli.test.ts: SQLite, cli-pg.test.ts: PostgreSQL). */
export function cliSuite(kind: StoreKind): void {
  const s = scratch(`directory-cli-${kind}`);
  const stores = testStores(kind, s.dir);
  const file = (name: string) => join(s.dir, name);
  let vendor: ReturnType<typeof makeHome>;
  let list = "";
  /** The vendor home's commands in this process; directoryCli and vendor.cli run the real binary. */
  const cli = (...args: string[]): Promise<Run> => idmintInProcess(["--home", vendor.home, ...args]);

  beforeAll(async () => {
    vendor = makeHome(s.dir, "vendor");
    useStore(vendor.h, stores.fresh("directory"));
    list = file("po1.json");
    must(await cli("serials", "allocate", "--order", "PO-1", "--station", "station-1", "--model", "RT-1", "--count", "10", "--prefix", "SN", "--start", "1", "--out", list), "allocate");
    must(await cli("serials", "import", list), "import");
  });
  afterAll(() => s.cleanup());

  interface Served {
    child: ChildProcess;
    first: string;
    exit: Promise<{ code: number | null; stdout: string; stderr: string }>;
  }

  /** Starts `idmint directory serve` as its own process and resolves with its first stdout line. */
  function serve(...args: string[]): Promise<Served> {
    const child = spawn(process.execPath, directoryCommandLine(vendor.home, "serve", ...args), { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
    let stdout = "";
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const exit = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
    return new Promise((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      const timer = setTimeout(() => reject(new Error(`no output from directory serve: ${stderr}`)), 20_000);
      lines.on("line", (l) => (stdout += l + "\n"));
      lines.once("line", (first) => {
        clearTimeout(timer);
        resolve({ child, first, exit });
      });
      child.on("close", () => {
        clearTimeout(timer);
        reject(new Error(`directory serve exited early: ${stderr}`));
      });
    });
  }

  /** curl, asynchronously (the test must not block while another process answers). */
  function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn("curl", ["-sS", "--max-time", "20", ...args]);
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  }

  describe("idmint directory allocations add", () => {
    it("registers a verified list; the same list again changes nothing", async () => {
      const r = await cli("directory", "allocations", "add", list, "--json");
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ station: "station-1", added: true, count: 10 });
      const again = await cli("directory", "allocations", "add", list);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toMatch(/was already registered; nothing changed/);
    });

    it("refuses a tampered list, another station's overlapping list, garbage and a missing file with one line", async () => {
      writeFileSync(file("tampered.json"), readFileSync(list, "utf8").replace('"station": "station-1"', '"station": "station-9"'));
      // The real binary once, for its contract: the exit code and one "idmint: ..." line, no stack trace.
      const tampered = directoryCli(vendor.home, "allocations", "add", file("tampered.json"));
      expect(tampered.code).toBe(6);
      expect(oneLineError(tampered)).toMatch(/does not verify/);

      // A second register (the vendor's was lost) hands SN000005.. to station-2 as well.
      rmSync(join(vendor.home, "vendor.db"));
      const overlap = file("overlap.json");
      must(await cli("serials", "allocate", "--order", "PO-2", "--station", "station-2", "--model", "RT-1", "--count", "3", "--prefix", "SN", "--start", "5", "--out", overlap), "allocate");
      const r = await cli("directory", "allocations", "add", overlap);
      expect(r.code).toBe(5);
      expect(oneLineError(r)).toMatch(/serial SN000005 of alloc-.* already belongs to alloc-.* \(station station-1\)/);

      writeFileSync(file("garbage.json"), "{nope");
      expect(oneLineError(await cli("directory", "allocations", "add", file("garbage.json")))).toMatch(/is not JSON/);
      const missing = await cli("directory", "allocations", "add", file("absent.json"));
      expect(missing.code).toBe(3);
      expect(oneLineError(missing)).toMatch(/does not exist/);
    });
  });

  describe("idmint directory serve", () => {
    it("serves the store in its own process: a station uploads, curl fetches, openssl verifies; SIGTERM stops it", async () => {
      must(vendor.cli("station", "run", "--sim", "2", "--slots", "2"), "station run");
      const server = await serve("--port", "0");
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(server.first);
      expect(m, server.first).not.toBeNull();
      const url = m![1]!;

      const { signed } = await stationUpload(vendor.h, { previousSize: 0, certificates: ["SN000001", "SN000002"].map((serial) => ({ serial, certificate: certPem(vendor.h, serial) })) });
      const receipt = await new DirectoryClient(url).upload(signed);
      expect(receipt.published).toEqual(["SN000001", "SN000002"]);
      const fetched = await curl(["-o", file("SN000002.crt"), "-w", "%{http_code} %{content_type}", `${url}/certificates/SN000002.crt`]);
      expect(fetched.stdout).toBe("200 application/pem-certificate-chain");
      const v = openssl(["verify", "-CAfile", vendor.h.pkiFile("root"), "-untrusted", vendor.h.pkiFile("factory-ca"), file("SN000002.crt")]);
      expect(v.code, v.stderr).toBe(0);

      server.child.kill("SIGTERM");
      const done = await server.exit;
      expect(done.code).toBe(0);
      expect(done.stdout).toMatch(/stopped \(SIGTERM\)/);
      // The log on stderr is JSON lines, with the accepted upload.
      expect(done.stderr.trim().split("\n").every((l) => l.startsWith("{"))).toBe(true);
      expect(done.stderr).toMatch(/"msg":"upload accepted"/);
    });

    it("serves HTTPS with --tls-cert/--tls-key and prints one JSON line with --json", async () => {
      const made = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", file("tls.key"), "-out", file("tls.pem"), "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1"]);
      expect(made.code, made.stderr).toBe(0);
      const server = await serve("--port", "0", "--tls-cert", file("tls.pem"), "--tls-key", file("tls.key"), "--json", "--log-level", "warn");
      const ready = JSON.parse(server.first) as { url: string; port: number; db: string };
      expect(ready.url).toBe(`https://127.0.0.1:${ready.port}`);
      expect(ready.db).toMatch(kind === "postgres" ? /^postgres:\/\// : /\.db$/);
      const r = await curl(["--cacert", file("tls.pem"), "-w", "\n%{http_code}", `${ready.url}/certificates/SN000001.crt`]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().split("\n").pop()).toBe("200");
      server.child.kill("SIGINT");
      const done = await server.exit;
      expect(done.code).toBe(0);
      expect(done.stdout.trim().split("\n")).toHaveLength(1);
    });

    it("refuses bad options, a busy port and a certificate that is no factory CA with one line", async () => {
      const half = await cli("directory", "serve", "--port", "0", "--tls-cert", file("tls.pem"));
      expect(half.code).toBe(2);
      expect(oneLineError(half)).toMatch(/--tls-cert and --tls-key go together/);
      const port = await cli("directory", "serve", "--port", "70000");
      expect(port.code).toBe(2);
      oneLineError(port);

      const unreachable = await cli("directory", "serve", "--port", "0", "--store", "postgres://idmint@127.0.0.1:1/directory");
      expect(unreachable.code).toBe(7);
      expect(oneLineError(unreachable)).toMatch(/the directory database is unavailable .*ECONNREFUSED.*: retry later/);
      const unknown = await cli("directory", "serve", "--port", "0", "--store", "mysql://db/directory");
      expect(unknown.code).toBe(2);
      expect(oneLineError(unknown)).toMatch(/a mysql: store is not one the directory keeps: give postgres:/);

      const notCa = await cli("directory", "serve", "--port", "0", "--factory-ca", vendor.h.pkiFile("station"));
      expect(notCa.code).toBe(6);
      expect(oneLineError(notCa)).toMatch(/is not a factory CA/);

      const busy: Server = createServer();
      await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
      try {
        const taken = (busy.address() as { port: number }).port;
        const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, directoryCommandLine(vendor.home, "serve", "--port", String(taken)), { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
          let stderr = "";
          child.stderr.on("data", (d) => (stderr += d));
          child.on("close", (code) => resolve({ code, stderr }));
        });
        expect(r.code).toBe(7);
        expect(oneLineError({ code: r.code ?? -1, stdout: "", stderr: r.stderr })).toMatch(/address is in use/);
      } finally {
        busy.close();
      }
    });

    it("has --help with an example on each command", async () => {
      for (const cmd of [["serve"], ["allocations", "add"], ["conflicts"]]) {
        const r = await cli("directory", ...cmd, "--help");
        expect(r.code).toBe(0);
        expect(r.stdout, cmd.join(" ")).toMatch(/Examples:\n\s+idmint directory /);
      }
    });
  });
}
