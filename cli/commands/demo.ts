import type { Argv } from "yargs";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CoreError, IdmintError } from "../../core/index.js";
import { report, type GlobalArgs, type Io } from "../io.js";

/** Marks a directory as the demo's own, so a rerun may wipe it and nothing else. */
const MARKER = ".idmint-demo";

function prepareDemoHome(dir: string): void {
  if (existsSync(dir)) {
    if (!existsSync(join(dir, MARKER)) && readdirSync(dir).length > 0) {
      throw new CoreError("state", "FILE_EXISTS", `${dir} exists and is not a demo home: pass --home with a new or empty directory`);
    }
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, MARKER), "made by idmint demo; rerunning the demo replaces this directory\n");
}

type Run = (argv: string[], io: Io) => Promise<number>;

/**
 * `idmint demo`: the whole story on the embedded default, told by running the very commands
 * a user would run, in order, each with --json; one screen of summary at the end.
 */
export function demoCommand(yargs: Argv<GlobalArgs>, io: Io, run: Run): Argv<GlobalArgs> {
  return yargs.command(
    "demo",
    "the whole story on the embedded default: HSM tokens, key ceremony, allocation, a simulated line, the signed ledger, the usage report",
    (c) =>
      c
        .option("units", { type: "number", default: 100, describe: "how many simulated units to provision" })
        .option("slots", { type: "number", default: 8, describe: "units provisioned at once" })
        .example("$0 demo --home ./demo --units 20", "run the demo in ./demo (replaced on every run)"),
    async (args) => {
      const dir = resolve(args.home ?? io.env.IDMINT_HOME ?? ".idmint-demo");
      if (!Number.isInteger(args.units) || args.units < 1 || args.units > 100_000) {
        throw new CoreError("usage", "CONFIG_INVALID", `--units ${args.units} is out of range: give a whole number from 1 to 100000`);
      }
      prepareDemoHome(dir);
      const started = Date.now();
      const step = async (what: string, argv: string[]): Promise<any> => {
        let out = "";
        let err = "";
        const code = await run(["--home", dir, ...argv, "--json"], { out: (t) => (out += t), err: (t) => (err += t), isTty: false, env: io.env });
        if (code !== 0) throw new IdmintError("state", "DEMO_STEP", `demo step "${what}" failed: ${err.trim().replace(/^idmint: /, "")}`);
        if (!args.json) io.err(`  done: ${what}\n`);
        return out.trim() ? JSON.parse(out) : {};
      };
      const allocationFile = join(dir, "allocation.json");
      const reportFile = join(dir, "usage-report.json");
      await step("SoftHSM2 tokens (hsm init)", ["hsm", "init"]);
      const ca = await step("key ceremony (ca init)", ["ca", "init"]);
      const allocation = await step(`allocate ${args.units} serials (serials allocate)`, [
        "serials", "allocate", "--order", "DEMO-1", "--station", "station-1", "--model", "Demo Router",
        "--count", String(args.units), "--prefix", "SN", "--start", "1", "--out", allocationFile,
      ]);
      await step("import the allocation (serials import)", ["serials", "import", allocationFile]);
      const line = await step(`provision ${args.units} simulated units (station run --sim)`, ["station", "run", "--sim", String(args.units), "--slots", String(args.slots)]);
      const checkpoint = await step("sign a ledger checkpoint (ledger checkpoint)", ["ledger", "checkpoint"]);
      const ledger = await step("verify the ledger (ledger verify)", ["ledger", "verify"]);
      await step("usage report (station report)", ["station", "report", "--out", reportFile]);
      const reconciled = await step("reconcile the report (serials reconcile)", ["serials", "reconcile", "--allocation", allocationFile, "--report", reportFile]);
      const seconds = (Date.now() - started) / 1000;
      const certs = join(dir, "certs");
      report(io, args, { home: dir, rootFingerprint: ca.certificates.root.fingerprint, allocation, line, checkpoint: { id: checkpoint.id, size: checkpoint.size }, ledger, reconciled, seconds }, () => [
        "",
        `idmint demo: the story of ${args.units} units in ${seconds.toFixed(1)} s, on the embedded default in ${dir}`,
        `  vendor      root ${ca.certificates.root.path}, SHA-256 ${String(ca.certificates.root.fingerprint).slice(0, 16)}…`,
        `  allocation  ${allocation.allocationId}: ${allocation.count} serials for ${allocation.station}`,
        `  line        ${line.provisioned} provisioned, ${line.failed} failed, ${line.unitsPerSecond} units/s over ${args.slots} slots`,
        `  IDevIDs     ${certs}/SN*.pem`,
        `  ledger      ${ledger.entries} entries, checkpoint ${checkpoint.id} (size ${checkpoint.size}) signed by the station key, verified`,
        `  reconciled  ${reconciled.provisioned} provisioned + ${reconciled.unused} unused = ${reconciled.allocated} allocated, ${reconciled.anomalies.length} anomalies`,
        `  try         openssl verify -CAfile ${join(dir, "pki", "root.pem")} -untrusted ${join(dir, "pki", "factory-ca.pem")} ${join(certs, "SN000001.pem")}`,
      ]);
    },
  );
}
