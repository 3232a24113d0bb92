import type { Argv } from "yargs";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CoreError, EXIT_CODES, IdmintError, type ErrorKind } from "../../core/index.js";
import { report, type GlobalArgs, type Io } from "../io.js";

/** Marks a directory as the demo's own, so a rerun may wipe it and nothing else. */
const MARKER = ".idmint-demo";

function prepareDemoHome(dir: string): void {
  if (existsSync(dir)) {
    if (!existsSync(join(dir, MARKER)) && readdirSync(dir).length > 0) {
      throw new CoreError("HOME_IN_USE", `${dir} exists and is not a demo home: pass --home with a new or empty directory`);
    }
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, MARKER), "made by idmint demo; rerunning the demo replaces this directory\n");
}

type Run = (argv: string[], io: Io) => Promise<number>;

const ROUTER_CONFIG = `! initial configuration of a new router (RFC 8886 example)
hostname edge-router-1
username admin secret 0 change-me-on-first-login
interface ge-0/0/0
 ip address dhcp
ntp server 192.0.2.123
`;

/**
 * Starts \`idmint directory serve\` in its own process (the directory never shares a process with
 * the HSM: pkcs11js calls block the event loop) and resolves with its URL.
 */
function startDirectory(dir: string, env: NodeJS.ProcessEnv): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [process.argv[1]!, "--home", dir, "directory", "serve", "--port", "0", "--json"], { env, stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    child.stdout!.on("data", (d) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl !== -1) resolve({ url: (JSON.parse(out.slice(0, nl)) as { url: string }).url, child });
    });
    child.on("exit", (code) => reject(new IdmintError("unavailable", "DEMO_DIRECTORY", `the demo's directory server did not start (exit ${code}): ${err.trim().split("\n").pop() ?? ""}`)));
  });
}

/**
 * A failed step ends the demo as the step itself ended: its exit code (a missing PKCS#11 module
 * is 4 here too) and, from its --json error document, its error code.
 */
function stepFailure(what: string, exit: number, out: string, err: string): IdmintError {
  const kind = (Object.keys(EXIT_CODES) as ErrorKind[]).find((k) => EXIT_CODES[k] === exit) ?? "internal";
  const last = out.trim().split("\n").pop() ?? "";
  const code = last.startsWith("{") ? (JSON.parse(last) as { error?: { code?: string } }).error?.code : undefined;
  return new IdmintError(kind, code ?? "DEMO_STEP", `demo step "${what}" failed: ${err.trim().replace(/^idmint: /, "")}`);
}

/**
 * `idmint demo`: the whole story on the embedded default, told by running the very commands
 * a user would run, in order, each with --json; one screen of summary at the end.
 */
export function demoCommand(yargs: Argv<GlobalArgs>, io: Io, run: Run): Argv<GlobalArgs> {
  return yargs.command(
    "demo",
    "the whole story on the embedded default: key ceremony, allocation, a simulated line uploading to a local directory, the signed ledger, the usage report, and an operator encrypting a configuration that the unit decrypts",
    (c) =>
      c
        .option("units", { type: "number", default: 100, describe: "how many simulated units to provision" })
        .option("slots", { type: "number", default: 8, describe: "units provisioned at once" })
        .example("$0 demo --home ./demo --units 20", "run the demo in ./demo (replaced on every run)"),
    async (args) => {
      const dir = resolve(args.home ?? io.env.IDMINT_HOME ?? ".idmint-demo");
      if (!Number.isInteger(args.units) || args.units < 1 || args.units > 100_000) {
        throw new CoreError("OPTION_INVALID", `--units ${args.units} is out of range: give a whole number from 1 to 100000`);
      }
      prepareDemoHome(dir);
      const started = Date.now();
      const step = async (what: string, argv: string[]): Promise<any> => {
        let out = "";
        let err = "";
        const code = await run(["--home", dir, ...argv, "--json"], { out: (t) => (out += t), err: (t) => (err += t), isTty: false, env: io.env });
        if (code !== 0) throw stepFailure(what, code, out, err);
        if (!args.json) io.err(`  done: ${what}\n`);
        return out.trim() ? JSON.parse(out) : {};
      };
      let story: any;
      const allocationFile = join(dir, "allocation.json");
      const reportFile = join(dir, "usage-report.json");
      await step("SoftHSM2 tokens (hsm init)", ["hsm", "init"]);
      const ca = await step("key ceremony (ca init)", ["ca", "init"]);
      const allocation = await step(`allocate ${args.units} serials (serials allocate)`, [
        "serials", "allocate", "--order", "DEMO-1", "--station", "station-1", "--model", "Demo Router",
        "--count", String(args.units), "--prefix", "SN", "--start", "1", "--out", allocationFile,
      ]);
      await step("import the allocation (serials import)", ["serials", "import", allocationFile]);
      const directory = await startDirectory(dir, io.env);
      try {
        await step("tell the directory which serials are station-1's (directory allocations add)", ["directory", "allocations", "add", allocationFile]);
        const line = await step(`provision ${args.units} simulated units, uploading as it goes (station run --sim --directory)`, [
          "station", "run", "--sim", String(args.units), "--slots", String(args.slots), "--directory", directory.url,
        ]);
        const checkpoint = await step("sign a ledger checkpoint (ledger checkpoint)", ["ledger", "checkpoint"]);
        const ledger = await step("verify the ledger (ledger verify)", ["ledger", "verify"]);
        await step("usage report (station report)", ["station", "report", "--out", reportFile]);
        const reconciled = await step("reconcile the report (serials reconcile)", ["serials", "reconcile", "--allocation", allocationFile, "--report", reportFile]);
        const serial = "SN000001";
        const fetchedFile = join(dir, "operator", `${serial}.pem`);
        const configFile = join(dir, "operator", "router-config.txt");
        const cmsFile = join(dir, "operator", "router-config.cms");
        const decryptedFile = join(dir, "units", `${serial}-router-config.txt`);
        const keyFile = join(dir, "units", `${serial}-key.pem`);
        mkdirSync(join(dir, "operator"), { recursive: true });
        writeFileSync(configFile, ROUTER_CONFIG);
        const fetched = await step(`operator fetches ${serial}'s certificate by serial (operator fetch)`, [
          "operator", "fetch", "--directory", directory.url, "--serial", serial, "--root", join(dir, "pki", "root.pem"), "--out", fetchedFile,
        ]);
        const encrypted = await step("operator encrypts the router's first configuration to it (operator encrypt)", ["operator", "encrypt", "--cert", fetchedFile, "--in", configFile, "--out", cmsFile]);
        await step("the unit decrypts it with its own key (unit decrypt)", ["unit", "decrypt", "--serial", serial, "--in", cmsFile, "--out", decryptedFile, "--require-encrypted"]);
        const roundTrip = readFileSync(decryptedFile, "utf8") === ROUTER_CONFIG;
        if (!roundTrip) throw new IdmintError("internal", "DEMO_ROUNDTRIP", "the unit decrypted something else than the operator encrypted");
        // The simulated units keep their keys in their flash (units.db): openssl needs a file.
        await step("export the unit's key for openssl (unit export --key)", ["unit", "export", "--serial", serial, "--key", "--out", keyFile]);
        story = { line, checkpoint, ledger, reconciled, serial, fetched, encrypted, cmsFile, decryptedFile, keyFile, directory: directory.url };
      } finally {
        directory.child.kill("SIGTERM");
      }
      const seconds = (Date.now() - started) / 1000;
      const { line, checkpoint, ledger, reconciled } = story;
      const certs = join(dir, "certs");
      report(io, args, { home: dir, rootFingerprint: ca.certificates.root.fingerprint, allocation, ...story, seconds }, () => [
        "",
        `idmint demo: the story of ${args.units} units in ${seconds.toFixed(1)} s, on the embedded default in ${dir}`,
        `  vendor      root ${ca.certificates.root.path}, SHA-256 ${String(ca.certificates.root.fingerprint).slice(0, 16)}…`,
        `  allocation  ${allocation.allocationId}: ${allocation.count} serials for ${allocation.station}`,
        `  line        ${line.provisioned} provisioned, ${line.failed} failed, ${line.unitsPerSecond} units/s over ${args.slots} slots; IDevIDs in ${certs}`,
        `  directory   ${line.provisioned - line.pendingUploads} of ${line.provisioned} certificates uploaded to ${story.directory} with signed checkpoints`,
        `  ledger      ${ledger.entries} entries, checkpoint ${checkpoint.id} (size ${checkpoint.size}) signed by the station key, verified`,
        `  reconciled  ${reconciled.provisioned} provisioned + ${reconciled.unused} unused = ${reconciled.allocated} allocated, ${reconciled.anomalies.length} anomalies`,
        `  operator    fetched ${story.serial} (SHA-256 ${String(story.fetched.fingerprint ?? "").slice(0, 16)}…), encrypted a router configuration to it: ${story.cmsFile}`,
        `  unit        ${story.serial} decrypted it with its own key: ${story.decryptedFile}`,
        `  try         openssl cms -decrypt -binary -inform DER -in ${story.cmsFile} -recip ${join(certs, `${story.serial}.pem`)} -inkey ${story.keyFile}`,
      ]);
    },
  );
}
