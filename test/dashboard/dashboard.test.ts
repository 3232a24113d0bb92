import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { CHROMIUM, NO_CHROMIUM, openBrowser } from "../fixtures/browser.js";
import { Home } from "../../core/index.js";
import { P11KIT_MISSING, startP11KitServer } from "../fixtures/p11kit.js";
import { BIN, REPO, idmint, idmintBounded, lineHome, oneLineError, scratch, type Run } from "../helpers.js";

const s = scratch("dashboard");
// The page changes once a second: a poll gives it several.
const POLL = { timeout: 15_000 };
afterAll(() => {
  if (!process.env.IDMINT_TEST_OUTPUT) s.cleanup();
});
// Screenshots of the page: under the scratch dir (printed), or kept in IDMINT_TEST_OUTPUT.
const out = process.env.IDMINT_TEST_OUTPUT ?? join(s.dir, "screenshots");
if (!CHROMIUM) console.warn(NO_CHROMIUM);

/** `idmint station dashboard --port 0` for a home, as an operator starts it: its URL and pid. */
function serveDashboard(home: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [BIN, "--home", home, "station", "dashboard", "--port", "0", "--json"], { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (t: string) => (stderr += t));
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding("utf8").on("data", (t: string) => {
      stdout += t;
      if (stdout.includes("\n")) resolve({ url: (JSON.parse(stdout) as { url: string }).url, child });
    });
    child.on("close", (code) => reject(new Error(`station dashboard ended (${code}): ${stderr}`)));
  });
}

async function status(url: string): Promise<{ live?: { upload: { since: string; state: string } } }> {
  return (await fetch(`${url}/api/status`)).json() as Promise<{ live?: { upload: { since: string; state: string } } }>;
}

function text(page: Page, selector: string): Promise<string> {
  return page.locator(selector).innerText();
}

/** A port nothing listens on any more: a directory server that was stopped. */
async function stoppedServerPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function bytesOf(path: string): string {
  return existsSync(path) ? createHash("sha256").update(readFileSync(path)).digest("hex") : "absent";
}

/** The access mode (O_RDONLY 0, O_WRONLY 1, O_RDWR 2) of each file `pid` holds open whose path ends with `suffix`. */
function openModes(pid: number, suffix: string): number[] {
  return readdirSync(`/proc/${pid}/fd`)
    .filter((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`).endsWith(suffix))
    .map((fd) => parseInt(/flags:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))![1]!, 8) & 3);
}

let line: { home: string; cli: (...args: string[]) => Run };
beforeAll(() => {
  line = lineHome(s.dir, "line", 2_400);
});

describe.skipIf(!CHROMIUM)("the line's dashboard in Chromium", () => {
  let dashboard: { url: string; child: ChildProcess };
  let browser: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    mkdirSync(out, { recursive: true });
    [dashboard, browser] = await Promise.all([serveDashboard(line.home), openBrowser(s.dir)]);
    page = await browser.newPage();
    await page.goto(dashboard.url);
  });
  afterAll(async () => {
    await browser?.close();
    dashboard?.child.kill("SIGTERM");
    console.log(`dashboard screenshots: ${out}`);
  });

  it("302 units, two faulty and one slow, while the page is open: 300 provisioned without a reload, both failures with reasons, the slow unit's slot with its step and time, serials left as serials status says", async () => {
    await expect.poll(() => text(page, "#line-state"), POLL).toBe("no run yet");
    let navigations = 0;
    page.on("framenavigated", () => navigations++);
    const faults = ["SN000040=bad-csr-signature", "SN000041=wrong-serial", "SN000150=slow"];
    const run = idmintBounded(["--home", line.home, "station", "run", "--sim", "302", "--slots", "8", "--slow-ms", "2500", ...faults.flatMap((f) => ["--fault", f]), "--json"], { limitMs: 60_000 });

    // The slow unit waits 2.5 s for each answer: its slot shows it in a step, with the time it has taken.
    const slow = page.locator(".slot", { has: page.locator(".serial", { hasText: "SN000150" }) });
    await slow.waitFor({ timeout: 30_000 });
    expect(["genkey", "install"]).toContain(await slow.locator(".activity").innerText());
    expect(await slow.locator(".elapsed").innerText()).toMatch(/^\d+ s$/);
    await page.screenshot({ path: join(out, "slow-unit.png"), fullPage: true });

    await page.waitForFunction(() => document.getElementById("provisioned")?.textContent === "300", undefined, { timeout: 30_000 });
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ units: 302, provisioned: 300, failed: 2 });
    await expect.poll(() => text(page, "#line-state"), POLL).toBe("stopped");

    const reasons = await page.locator("#failures-by-reason tr").allInnerTexts();
    expect(reasons.map((t) => t.split("\t")[0]).sort()).toEqual(["CSR_SERIAL_MISMATCH", "CSR_SIGNATURE"]);
    const latest = await page.locator("#failures-list tr").allInnerTexts();
    expect(latest.find((t) => t.startsWith("SN000040"))).toMatch(/CSR_SIGNATURE\t\S.+/);
    expect(latest.find((t) => t.startsWith("SN000041"))).toMatch(/CSR_SERIAL_MISMATCH\t\S.+/);
    expect(await text(page, "#failed")).toBe("2");

    const st = line.cli("serials", "status", "--json");
    const left = (JSON.parse(st.stdout) as { allocations: Array<{ available: number }> }).allocations[0]!.available;
    expect(left).toBe(2_100);
    // The page writes numbers as people read them: 1,100.
    await expect.poll(() => text(page, "#left"), POLL).toBe(left.toLocaleString("en-US"));
    await expect.poll(() => text(page, "#allocations tbody tr td:nth-child(5)"), POLL).toBe(left.toLocaleString("en-US"));
    await page.screenshot({ path: join(out, "line-end.png"), fullPage: true });
    expect(navigations).toBe(0);
  });

  it("a stopped directory: the upload backlog and the unreachable directory are on the page, marked for a person", async () => {
    const port = await stoppedServerPort();
    // The first run had no directory: its 300 certificates wait in the outbox too.
    const run = idmintBounded(["--home", line.home, "station", "run", "--sim", "20", "--directory", `http://127.0.0.1:${port}`, "--upload-wait", "2", "--json"], { limitMs: 60_000 });
    await page.waitForFunction(() => document.getElementById("upload-backlog")?.textContent === "320" && document.getElementById("upload-note")?.textContent?.startsWith("directory unreachable"), undefined, { timeout: 30_000 });
    const shownAt = Date.now();
    expect(await page.locator("#tile-upload").getAttribute("class")).toContain("needs-person");
    const waitingSince = Date.parse((await status(dashboard.url)).live!.upload.since);
    console.log(`the unreachable directory was on the page ${((shownAt - waitingSince) / 1000).toFixed(2)} s after the uploader first failed`);
    await page.screenshot({ path: join(out, "directory-stopped.png"), fullPage: true });
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ provisioned: 20, pendingUploads: 320 });
  });

  it("the dashboard cannot write the station's store: it holds station.db and its WAL read-only, and serving leaves their bytes as they were", async () => {
    const db = join(line.home, "station.db");
    const before = [bytesOf(db), bytesOf(`${db}-wal`)];
    for (let i = 0; i < 5; i++) expect((await fetch(`${dashboard.url}/api/status`)).status).toBe(200);
    const pid = dashboard.child.pid!;
    // The kernel refuses writes to the store's file; SQLite opens the WAL read-write even for a
    // read-only connection (it may replay it), and refuses that connection every write itself.
    expect(openModes(pid, "/station.db")).toEqual([0]);
    expect([bytesOf(db), bytesOf(`${db}-wal`)]).toEqual(before);
  });

  it("station run --dashboard: a dashboard killed mid-run ends alone; the line goes on to the end and leaves nothing running", async () => {
    let killed = 0;
    // This run's units are SN000321-SN000350 (the earlier runs took the serials before them).
    // Piped, the line writes a line per unit on stdout: the dashboard is killed once the first unit is through.
    const run = await idmintBounded(["--home", line.home, "station", "run", "--sim", "30", "--dashboard", "0", "--fault", "SN000350=slow", "--slow-ms", "1500"], {
      limitMs: 60_000,
      onOutput: (stdout, stderr) => {
        const m = /dashboard on http:\/\/127\.0\.0\.1:\d+ \(pid (\d+)\)/.exec(stderr);
        if (m && !killed && /^SN0003\d\d +provisioned/m.test(stdout)) process.kill((killed = Number(m[1])), "SIGKILL");
      },
    });
    expect(killed).toBeGreaterThan(0);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^30 units in .*: 30 provisioned, 0 failed$/m);
    expect(run.stderr).toContain(`the dashboard process (pid ${killed}) ended (signal SIGKILL); the line goes on without it`);
    expect(run.leftovers).toEqual([]);
  });

  it.skipIf(P11KIT_MISSING !== undefined)("the HSM cut mid-run: the page shows it out, then back with the outage counted; no unit fails for it", async () => {
    const home = new Home(line.home);
    const config = home.readConfig();
    let server = await startP11KitServer(s.dir, home.softhsmConfPath, "dashboard-hsm");
    // The line's HSM behind p11-kit, as a network HSM: what the page shows is the signing pool's word.
    home.writeConfig({ ...config, hsm: { module: server.module } });
    try {
      const run = idmintBounded(["--home", line.home, "station", "run", "--sim", "2000", "--slots", "8", "--json"], { env: server.env, limitMs: 120_000 });
      // This run's units (the page still shows the last run's until this one starts), some of them
      // signed; the page is a second behind the line, and 2,000 units leave time to cut mid-run.
      await page.waitForFunction(
        () =>
          document.getElementById("provisioned-of")?.textContent === "of 2,000 this run" &&
          document.getElementById("hsm-state")?.textContent === "ok" &&
          Number(document.getElementById("provisioned")?.textContent?.replace(/,/g, "")) >= 20,
        undefined,
        { timeout: 30_000 },
      );
      await server.stop();
      const cut = Date.now();
      await page.waitForFunction(() => document.getElementById("hsm-state")?.textContent === "out", undefined, { timeout: 30_000 });
      console.log(`the HSM cut was on the page ${((Date.now() - cut) / 1000).toFixed(2)} s later`);
      expect(await page.locator("#tile-hsm").getAttribute("class")).toContain("needs-person");
      await page.screenshot({ path: join(out, "hsm-out.png"), fullPage: true });

      server = await startP11KitServer(s.dir, home.softhsmConfPath, "dashboard-hsm");
      await page.waitForFunction(() => document.getElementById("hsm-state")?.textContent === "ok" && /1 outages/.test(document.getElementById("hsm-note")?.textContent ?? ""), undefined, { timeout: 60_000 });
      const r = await run;
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ provisioned: 2000, failed: 0, hsm: { outages: 1 } });
    } finally {
      await server.stop();
      home.writeConfig(config);
    }
  });
});

describe("the dashboard's process and API, without a browser", () => {
  it("a port in use: station dashboard and station run --dashboard both end at once with one line (exit 7); the run provisions nothing", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = String((taken.address() as AddressInfo).port);
    try {
      const before = line.cli("serials", "status", "--json").stdout;
      const dash = idmint(["--home", line.home, "station", "dashboard", "--port", port]);
      expect(dash.code).toBe(7);
      expect(oneLineError(dash)).toBe(`idmint: cannot listen on 127.0.0.1:${port}: the address is in use; choose another --listen or --port`);
      const run = idmint(["--home", line.home, "station", "run", "--sim", "5", "--dashboard", port]);
      expect(run.code).toBe(7);
      expect(oneLineError(run)).toContain(`cannot listen on 127.0.0.1:${port}`);
      expect(line.cli("serials", "status", "--json").stdout).toBe(before);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it("a line killed mid-run: /api/status says it stopped without closing, and how to resume", async () => {
    const killed = idmint(["--home", line.home, "station", "run", "--sim", "10", "--slots", "2"], { env: { IDMINT_TEST_CRASH_AT: "signed:3" } });
    expect(killed.code).toBe(-1);
    const dashboard = await serveDashboard(line.home);
    try {
      const st = (await (await fetch(`${dashboard.url}/api/status`)).json()) as { line: string; lineError: string };
      expect(st.line).toBe("stopped");
      expect(st.lineError).toMatch(/^the line \(pid \d+\) stopped without closing at .*: it was killed or crashed; run it again to resume$/);
    } finally {
      dashboard.child.kill("SIGTERM");
    }
  });
});
