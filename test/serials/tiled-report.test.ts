import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Home } from "../../core/index.js";
import { Hsm } from "../../hsm/index.js";
import { signDocument, type UsageReportV2 } from "../../serials/index.js";
import { idmintInProcess, lineHome, oneLineError, run, scratch, type Run } from "../helpers.js";
import { must } from "../directory/fixture.js";
import { startDirectory } from "../../directory/index.js";
import { parseCertificate } from "../../pki/index.js";

const s = scratch("tiled-report");
const file = (name: string) => join(s.dir, name);
let line: ReturnType<typeof lineHome>;
let other: ReturnType<typeof lineHome>;

beforeAll(() => {
  line = lineHome(s.dir, "line", 10);
  other = lineHome(s.dir, "other", 10);
  for (const l of [line, other]) must(l.cli("station", "run", "--sim", "4", "--slots", "2"), "station run");
  must(line.cli("serials", "scrap", "SN000007", "--reason", "failed RF test"), "scrap");
  must(line.cli("station", "report", "--out", file("report.json"), "--tiles", file("tiles")), "station report");
  must(other.cli("station", "report", "--out", file("other-report.json"), "--tiles", file("other-tiles")), "station report (other)");
}, 180_000);
afterAll(() => s.cleanup());

const reconcile = (report: string, tiles: string): Run => line.cli("serials", "reconcile", "--allocation", line.allocation, "--report", report, "--tiles", tiles, "--json");

/** The report's fates by serial (its lines `SERIAL FATE`). */
function fatesOf(report: UsageReportV2): Record<string, string> {
  return Object.fromEntries(report.allocations[0]!.fates.split("\n").map((l) => l.split(" ") as [string, string]));
}

/** A copy of the tiles folder with one change. */
function tilesWith(name: string, change: (dir: string) => void): string {
  const dir = file(name);
  run("cp", ["-r", file("tiles"), dir]);
  change(dir);
  return dir;
}

describe("usage reports that name their checkpoint, reconciled from tiles", () => {
  it("carries each fate with the ledger entry proving it, and reconciles with no anomaly", () => {
    const doc = JSON.parse(readFileSync(file("report.json"), "utf8")) as { payload: UsageReportV2 };
    expect(doc.payload.format).toBe("idmint-usage-report/2");
    expect(doc.payload).not.toHaveProperty("ledger");
    const fates = fatesOf(doc.payload);
    expect(fates["SN000001"]).toMatch(/^provisioned@\d+$/);
    expect(fates["SN000007"]).toMatch(/^scrapped@\d+$/);
    expect(fates["SN000010"]).toBe("unused");
    const r = reconcile(file("report.json"), file("tiles"));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, allocated: 10, provisioned: 4, scrapped: 1, unused: 5, anomalies: [] });
  });

  it("refuses tiles with one byte changed, in a hash tile or an entry bundle", () => {
    const flip = (path: string) => (dir: string) => {
      const f = join(dir, path);
      const bytes = readFileSync(f);
      bytes[bytes.length - 5] = bytes[bytes.length - 5]! ^ 0x01;
      writeFileSync(f, bytes);
    };
    const size = Number(readFileSync(join(file("tiles"), "checkpoint"), "utf8").split("\n")[1]);
    for (const path of [`tile/0/000.p/${size}`, `tile/entries/000.p/${size}`]) {
      const r = reconcile(file("report.json"), tilesWith(`flip-${path.replace(/\W/g, "-")}`, flip(path)));
      expect(r.code, path).toBe(6);
      expect(oneLineError(r)).toMatch(/altered or belong to another log/);
    }
  });

  it("refuses another station's tiles, whole or one bundle swapped in", () => {
    const whole = reconcile(file("report.json"), file("other-tiles"));
    expect(whole.code).toBe(6);
    expect(oneLineError(whole)).toMatch(/altered or belong to another log/);
    const size = (dir: string) => Number(readFileSync(join(dir, "checkpoint"), "utf8").split("\n")[1]);
    const theirs = readFileSync(join(file("other-tiles"), `tile/entries/000.p/${size(file("other-tiles"))}`));
    const swapped = tilesWith("swapped", (dir) => writeFileSync(join(dir, `tile/entries/000.p/${size(dir)}`), theirs));
    const r = reconcile(file("report.json"), swapped);
    expect(r.code).toBe(6);
    expect(oneLineError(r)).toMatch(/altered or belong to another log/);
  });

  it("catches a station that signs a report naming the wrong entry or the wrong fate", async () => {
    const doc = JSON.parse(readFileSync(file("report.json"), "utf8")) as { payload: UsageReportV2 };
    const fates = fatesOf(doc.payload);
    const at = Number(fates["SN000001"]!.split("@")[1]);
    fates["SN000001"] = `provisioned@${at - 1}`;
    fates["SN000002"] = "unused";
    doc.payload.allocations[0]!.fates = Object.entries(fates).map(([serial, fate]) => `${serial} ${fate}`).join("\n");
    const home = new Home(line.home);
    const config = home.readConfig();
    const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
    try {
      writeFileSync(file("lie.json"), JSON.stringify(await signDocument(doc.payload, hsm.signer(config.keys.station), readFileSync(home.pkiFile("station"), "utf8"))));
    } finally {
      hsm.close();
    }
    const r = reconcile(file("lie.json"), file("tiles"));
    expect(r.code).toBe(6);
    expect(JSON.parse(r.stdout).anomalies).toEqual([
      { kind: "report-disagrees", serial: "SN000001", detail: `the report proves SN000001 provisioned by ledger entry ${at - 1}, but entry ${at} made it so` },
      { kind: "report-disagrees", serial: "SN000002", detail: "the report says SN000002 is unused, its ledger says provisioned" },
    ]);
  });

  it("asks for --tiles when the report leaves its ledger in tiles, and keeps the one-file report small stations hand in", () => {
    const r = line.cli("serials", "reconcile", "--allocation", line.allocation, "--report", file("report.json"));
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toMatch(/give --tiles/);
    must(line.cli("station", "report", "--out", file("whole.json")), "station report (whole)");
    const whole = line.cli("serials", "reconcile", "--allocation", line.allocation, "--report", file("whole.json"), "--json");
    expect(whole.code, whole.stderr).toBe(0);
    expect(statSync(file("whole.json")).size).toBeGreaterThan(statSync(file("report.json")).size);
  });

  it("reconciles from the directory, which serves each station's tiles beside their checkpoint, the tiles cacheable for good", async () => {
    const served = file("served");
    run("mkdir", ["-p", served]);
    run("cp", ["-r", file("tiles"), join(served, "station-1")]);
    const home = new Home(line.home);
    const dir = await startDirectory({
      dbPath: file("directory.db"),
      root: parseCertificate(readFileSync(home.pkiFile("root"), "utf8"), "root"),
      factoryCas: [parseCertificate(readFileSync(home.pkiFile("factory-ca"), "utf8"), "factory-ca")],
      port: 0,
      tilesDir: served,
    });
    try {
      const prefix = `${dir.url}/stations/station-1/tiles`;
      const size = Number(readFileSync(join(file("tiles"), "checkpoint"), "utf8").split("\n")[1]);
      const tile = await fetch(`${prefix}/tile/0/000.p/${size}`);
      expect(tile.status).toBe(200);
      expect(tile.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      expect(Buffer.from(await tile.arrayBuffer()).equals(readFileSync(join(file("tiles"), `tile/0/000.p/${size}`)))).toBe(true);
      const checkpoint = await fetch(`${prefix}/checkpoint`);
      expect(checkpoint.headers.get("cache-control")).toBe("no-cache");
      expect(await checkpoint.text()).toBe(readFileSync(join(file("tiles"), "checkpoint"), "utf8"));
      for (const bad of ["tile/0/../../x", "tile/0/0", "tile/64/000", "tile/0/000.p/256"]) expect((await fetch(`${prefix}/${bad}`)).status, bad).toBe(404);
      expect((await fetch(`${dir.url}/stations/station-2/tiles/tile/0/000`)).status).toBe(404);

      // In this process: a spawned, synchronously awaited one would block the server it reads from.
      const r = await idmintInProcess(["--home", line.home, "serials", "reconcile", "--allocation", line.allocation, "--report", file("report.json"), "--tiles", prefix, "--json"]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, provisioned: 4, anomalies: [] });
    } finally {
      await dir.close();
    }
  });
});
