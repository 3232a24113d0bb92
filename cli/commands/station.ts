import type { Argv } from "yargs";
import { CoreError, EXIT_CODES, withClaimedOutputs } from "../../core/index.js";
import { startDashboard, startDashboardProcess, type DashboardProcess } from "../../dashboard/index.js";
import { withHsm } from "../../hsm/index.js";
import { signDocument, type UsageReport, type UsageReportV2 } from "../../serials/index.js";
import { writeTiles } from "../../ledger/index.js";
import { parseFaultSpec } from "../../sim/index.js";
import { DEFAULT_HSM_WAIT_S, DEFAULT_STOP_RULES, STEPS, buildTiledUsageReport, buildUsageReport, runStation, stationIdentity, stationUploader, withStation, UnitStore, type LineContext, type Step, type UnitOutcome } from "../../station/index.js";
import { clockOf, homeOf, hsmOptions, readCmpSecret, stopSignal } from "../context.js";
import { ReportedFailure, report, type GlobalArgs, type Io } from "../io.js";
import { showHsmStatus } from "../hsm-status.js";
import { progress } from "../progress.js";
import { uploadLines, uploadProgress } from "../uploads.js";

/**
 * IDMINT_TEST_CRASH_AT=STEP:N kills the station with SIGKILL when the Nth unit reaches STEP:
 * the crash tests' way to stop it anywhere on the hot path. Not for production use.
 */
function crashHook(io: Io): LineContext["reached"] {
  const spec = io.env.IDMINT_TEST_CRASH_AT;
  if (!spec) return undefined;
  const [step, nth] = spec.split(":");
  if (!STEPS.includes(step as Step) || !/^\d+$/.test(nth ?? "")) {
    throw new CoreError("OPTION_INVALID", `IDMINT_TEST_CRASH_AT=${spec} is not STEP:N with STEP one of ${STEPS.join(", ")}`);
  }
  let seen = 0;
  return (reached) => {
    if (reached === step && ++seen === Number(nth)) process.kill(process.pid, "SIGKILL");
  };
}

function parseFixture(value: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535) throw new CoreError("OPTION_INVALID", `--fixture ${value} is not HOST:PORT: write it as 127.0.0.1:7000`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

function unitLine(o: UnitOutcome): string {
  const serial = (o.serial ?? "(no serial)").padEnd(10);
  if (o.status === "provisioned") return `${serial} provisioned${o.resumed ? " (resumed)" : ""} ${o.certificateFingerprint?.slice(0, 16) ?? ""}`;
  return `${serial} FAILED ${o.code}: ${o.reason}`;
}

// A report carrying its ledger costs about 1.65 KB a unit and is parsed whole: past this many
// entries (some 20 MB) the report must name its checkpoint and hand the ledger over as tiles.
const WHOLE_LEDGER_LIMIT = 50_000;

function dashboardPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CoreError("OPTION_INVALID", `the dashboard port ${String(port)} is not a TCP port: give 0-65535`);
}

export function stationCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("station", "the factory station: run the line, hand in the usage report", (y) =>
    y
      .command(
        "report",
        "a usage report signed by the station key: each serial's fate and the ledger checkpoint that proves it",
        (c) =>
          c
            .option("out", { type: "string", demandOption: true, describe: "where to write the report (must not exist)" })
            .option("tiles", { type: "string", describe: "a report that stays small: each fate names its ledger entry, and the ledger goes as C2SP tiles into this folder (`ledger tiles`)" })
            .example("$0 station report --out station-1-report.json --tiles ./tiles/station-1", "hand in this station's report with its ledger as tiles")
            .example("$0 station report --out station-1-report.json", "one file carrying the whole ledger (small stations)"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const station = stationIdentity(home, config);
          // The --out is claimed before the checkpoint is signed and recorded.
          const doc = await withClaimedOutputs([["--out", args.out]], async ([out]) => {
            const signed = await withStation(home, clockOf(io), ({ db, ledger, serials }) =>
              withHsm(hsmOptions(config, io), async (hsm) => {
                const signer = hsm.signer(config.keys.station);
                if (!args.tiles && ledger.size() > WHOLE_LEDGER_LIMIT) {
                  throw new CoreError("OPTION_INVALID", `the ledger holds ${ledger.size()} entries, too many to carry inside one report (at most ${WHOLE_LEDGER_LIMIT}): add --tiles DIR`);
                }
                const checkpoint = await ledger.checkpoint(signer, station.origin);
                const built = { store: serials, ledger, checkpoint, stationId: config.station.id, clock: clockOf(io) };
                const unconfirmed = new UnitStore(db, clockOf(io)).unconfirmed();
                if (!args.tiles) return { document: await signDocument<UsageReport | UsageReportV2>(buildUsageReport(built), signer, station.certificatePem), unconfirmed };
                writeTiles({ outDir: args.tiles, origin: station.origin, stationSpki: station.spki, checkpointNote: checkpoint.note, bodies: (from, to) => ledger.bodies(from, to) });
                return { document: await signDocument<UsageReport | UsageReportV2>(buildTiledUsageReport(built), signer, station.certificatePem), unconfirmed };
              }),
            );
            out.write(JSON.stringify(signed.document) + "\n");
            return { payload: signed.document.payload, unconfirmed: signed.unconfirmed };
          });
          const { unconfirmed } = doc;
          const counts = doc.payload.allocations.map((a) => ("fates" in a ? (a.fates.match(/ provisioned@/g) ?? []).length : Object.values(a.serials).filter((f) => f.state === "provisioned").length)).reduce((x, y) => x + y, 0);
          const ledgerEntries = "ledger" in doc.payload ? doc.payload.ledger.length : undefined;
          report(io, args, { out: args.out, format: doc.payload.format, allocations: doc.payload.allocations.length, provisioned: counts, unconfirmed, ...(ledgerEntries === undefined ? { tiles: args.tiles } : { ledgerEntries }) }, () => [
            `usage report for ${config.station.id}: ${doc.payload.allocations.length} allocations, ${counts} provisioned, ${ledgerEntries === undefined ? `ledger as tiles in ${args.tiles}` : `${ledgerEntries} ledger entries`}`,
            ...(unconfirmed.length ? [`${unconfirmed.length} unconfirmed (issued, the unit never acknowledged it, e.g. no CMP certConf): ${unconfirmed.slice(0, 10).join(", ")}${unconfirmed.length > 10 ? ", ..." : ""}`] : []),
            `written to ${args.out}`,
          ]);
        },
      )
      .command(
        "run",
        "provision units until the fixture has no more: K slots at once; resumes after a crash",
        (c) =>
          c
            .option("sim", { type: "number", describe: "start a simulated fixture with this many units (the next serials not yet delivered)" })
            .option("fixture", { type: "string", describe: "a real fixture's unit link, HOST:PORT" })
            .option("slots", { type: "number", default: 8, describe: "units provisioned at once" })
            .option("keystore", { choices: ["soft", "pkcs11"] as const, default: "soft" as const, describe: "--sim: where the simulated units keep their keys" })
            .option("fault", { type: "string", array: true, default: [] as string[], describe: "--sim: SERIAL=KIND (bad-csr-signature, wrong-serial, duplicate-key, disconnect, garbage, slow)" })
            .option("slow-ms", { type: "number", default: 5_000, describe: "--sim: how long a unit with the slow fault takes to answer" })
            .option("alg", { choices: ["EC-P256", "RSA-2048"] as const, default: "EC-P256" as const, describe: "the key the units generate" })
            .option("timeout-ms", { type: "number", default: 10_000, describe: "how long a unit may take to answer one request" })
            .option("directory", { type: "string", describe: "upload certificates to this directory server in the background" })
            .option("upload-wait", { type: "number", default: 10, describe: "--directory: seconds to keep trying the last uploads once the line is done" })
            .option("stop-after-failures", { type: "number", default: DEFAULT_STOP_RULES.failuresInARow, describe: "end the run (exit 7) once this many units in a row failed" })
            .option("stop-after-serial-failures", { type: "number", default: DEFAULT_STOP_RULES.serialFailures, describe: "end the run (exit 7) once one serial failed this many times" })
            .option("hsm-wait", { type: "number", default: DEFAULT_HSM_WAIT_S, describe: "seconds the line waits for an HSM that went away (its units wait, none fails) before it stops (exit 4)" })
            .option("dashboard", { type: "number", describe: "also serve the line's dashboard on this port, in a process of its own (see station dashboard)" })
            .option("dashboard-listen", { type: "string", default: "127.0.0.1", describe: "--dashboard: the address it listens on" })
            .option("cmp", { type: "number", describe: "also let units enrol themselves over CMP (RFC 9483, e.g. openssl cmp) on this HTTP port (0: any); runs until SIGINT/SIGTERM" })
            .option("cmp-secret-file", { type: "string", describe: "--cmp: the line's bootstrap secret (PasswordBasedMac), the file's first line" })
            .option("cmp-listen", { type: "string", default: "127.0.0.1", describe: "--cmp: the address it listens on" })
            .option("certs-dir", { type: "string", describe: "where each unit's certificate is copied as SERIAL.pem (default HOME/certs)" })
            .option("cert-files", { type: "boolean", default: true, describe: "copy each certificate to a file; --no-cert-files for very long runs (they stay in station.db and go to the directory)" })
            .example("$0 station run --sim 200 --slots 8", "provision 200 simulated units, 8 at a time")
            .example("$0 station run --cmp 8080 --cmp-secret-file line.secret", "units enrol with openssl cmp -server 127.0.0.1:8080/pkix/ until Ctrl-C")
            .example("$0 station run --fixture 10.0.0.5:7000 --dashboard 8080", "the line, with its page on http://127.0.0.1:8080")
            .example("$0 station run --fixture 10.0.0.5:7000", "provision the units behind a real fixture")
            .example("$0 station run --fixture 10.0.0.5:7000 --directory https://dir.example --no-cert-files", "a million-unit order: no file per unit"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          if (args.sim !== undefined && args.fixture !== undefined) throw new CoreError("OPTION_INVALID", "give one of --sim N or --fixture HOST:PORT, not both");
          if (args.sim === undefined && args.fixture === undefined && args.cmp === undefined) throw new CoreError("OPTION_INVALID", "give --sim N, --fixture HOST:PORT or --cmp PORT");
          if (args.cmp !== undefined && (!Number.isInteger(args.cmp) || args.cmp < 0 || args.cmp > 65535)) throw new CoreError("OPTION_INVALID", `--cmp ${String(args.cmp)} is not a TCP port: give 0-65535`);
          const cmpSecret = args.cmp === undefined ? undefined : readCmpSecret("--cmp", args.cmpSecretFile);
          if (!Number.isInteger(args.slots) || args.slots < 1 || args.slots > 64) throw new CoreError("OPTION_INVALID", "--slots must be a whole number from 1 to 64");
          if (!Number.isInteger(args.timeoutMs) || args.timeoutMs < 100) throw new CoreError("OPTION_INVALID", "--timeout-ms must be a whole number of at least 100");
          if (![args.stopAfterFailures, args.stopAfterSerialFailures].every((n) => Number.isInteger(n) && n >= 1)) throw new CoreError("OPTION_INVALID", "--stop-after-failures and --stop-after-serial-failures must be whole numbers of at least 1");
          if (!(args.hsmWait >= 0 && args.hsmWait <= 86_400)) throw new CoreError("OPTION_INVALID", "--hsm-wait must be a number of seconds from 0 to 86400");
          if (args.sim !== undefined && (!Number.isInteger(args.sim) || args.sim < 1 || args.sim > 1_000_000)) throw new CoreError("OPTION_INVALID", "--sim must be a whole number from 1 to 1000000");
          const target = args.fixture ? parseFixture(args.fixture) : undefined;
          const faults = args.fault.map((f) => parseFaultSpec(f));
          const reached = crashHook(io);
          if (args.dashboard !== undefined) dashboardPort(args.dashboard);
          let bar: ReturnType<typeof progress> | undefined;
          // Started first, so its page shows the whole run; a dashboard that dies later ends only itself.
          const dashboard: DashboardProcess | undefined = args.dashboard === undefined ? undefined : await startDashboardProcess({ home: home.root, port: args.dashboard, host: args.dashboardListen });
          if (dashboard) {
            io.err(`dashboard on ${dashboard.url} (pid ${dashboard.pid})\n`);
            void dashboard.crashed.then((how) => io.err(`${how}; the line goes on without it\n`));
          }
          const stopping = cmpSecret ? stopSignal() : undefined;
          const run = await runStation({
            home,
            config,
            env: io.env,
            clock: clockOf(io),
            fixedNow: io.env.IDMINT_NOW,
            source: target ? { fixture: target } : args.sim !== undefined ? { sim: { count: args.sim, keystore: args.keystore, faults, slowMs: args.slowMs } } : undefined,
            cmp: cmpSecret && { host: args.cmpListen, port: args.cmp!, secret: cmpSecret, until: stopping!.stopped, onListening: (url) => io.err(`CMP endpoint on ${url}\n`) },
            slots: args.slots,
            keyAlgorithm: args.alg,
            timeoutMs: args.timeoutMs,
            directory: args.directory ? { url: args.directory, waitMs: Math.max(0, args.uploadWait) * 1000 } : undefined,
            reached,
            certsDir: args.certFiles ? (args.certsDir ?? home.certsDir) : false,
            stop: { failuresInARow: args.stopAfterFailures, serialFailures: args.stopAfterSerialFailures },
            hsmWaitMs: args.hsmWait * 1000,
            onHsmStatus: (status) => showHsmStatus(io, args.json, status, bar),
            onStart: ({ total }) => (bar = progress(io, { total, json: args.json, label: "units" })),
            onUnit: (o) => bar?.tick(o.status === "provisioned", unitLine(o)),
          }).finally(async () => {
            stopping?.dispose();
            bar?.done();
            await dashboard?.close();
          });
          const { summary, uploads } = run;
          const summaryUploads = uploads && "error" in uploads ? { error: uploads.error } : uploads;
          const hsm = { sessions: run.hsm.sessions, outages: run.hsm.outages, outageSeconds: Number((run.hsm.outageMs / 1000).toFixed(1)), signaturesRetried: run.hsm.signaturesRetried };
          report(io, args, { ...summary, hsm, allocations: run.allocations, pendingUploads: run.pendingUploads, ...(summaryUploads ? { uploads: summaryUploads } : {}) }, () => [
            `${summary.units} units in ${summary.seconds.toFixed(1)} s (${summary.unitsPerSecond} units/s): ${summary.provisioned} provisioned${summary.resumed ? ` (${summary.resumed} resumed)` : ""}, ${summary.failed} failed`,
            ...Object.entries(summary.failures).map(([code, n]) => `  ${n} failed with ${code}`),
            ...(hsm.outages > 0 ? [`  the HSM was unreachable ${hsm.outages} times, ${hsm.outageSeconds} s in all; the units waited (${hsm.signaturesRetried} signatures asked for again)`] : []),
            `${args.certFiles ? `certificates in ${args.certsDir ?? home.certsDir}` : "certificates in station.db (no files)"}; ${run.pendingUploads} waiting for upload`,
            ...(summaryUploads && "error" in summaryUploads ? [`upload stopped: ${summaryUploads.error}`] : summaryUploads ? uploadLines(summaryUploads) : []),
          ]);
        },
      )
      .command(
        "dashboard",
        "the line's live page and its JSON API (/api/status, /api/events), read-only on the station's state; stops on SIGINT/SIGTERM",
        (c) =>
          c
            .option("port", { type: "number", demandOption: true, describe: "TCP port (0: any free port; the URL printed says which)" })
            .option("listen", { type: "string", default: "127.0.0.1", describe: "address to listen on (0.0.0.0 to show it on the line's network)" })
            .example("$0 station dashboard --port 8080", "the page on http://127.0.0.1:8080, for the line running in this home (or its last run)"),
        async (args) => {
          const home = homeOf(args, io);
          home.readConfig();
          dashboardPort(args.port);
          // Handlers first, so a signal during start-up still stops the server cleanly.
          const { stopped, dispose } = stopSignal();
          try {
            const d = await startDashboard({ home, port: args.port, host: args.listen });
            io.out(args.json ? JSON.stringify({ url: d.url, port: d.port }) + "\n" : `dashboard on ${d.url}\n`);
            const signal = await stopped;
            await d.close();
            if (!args.json) io.out(`stopped (${signal})\n`);
          } finally {
            dispose();
          }
        },
      )
      .command(
        "upload",
        "push the certificates waiting in the outbox to the directory, with a fresh signed checkpoint",
        (c) =>
          c
            .option("directory", { type: "string", demandOption: true, describe: "the directory server's URL" })
            .option("batch", { type: "number", default: 200, describe: "certificates per upload" })
            .option("retry-for", { type: "number", default: 60, describe: "seconds to keep retrying while the directory is unreachable" })
            .option("retry-refused", {
              type: "boolean",
              default: false,
              describe: "send again now every certificate the directory refused as not allocated (SERIAL_UNALLOCATED), e.g. after `directory allocations add`",
            })
            .example("$0 station upload --directory https://dir.example", "upload everything pending")
            .example("$0 station upload --directory https://dir.example --retry-refused", "send again what was refused as unallocated")
            .epilogue(
              "A certificate refused as not allocated goes again by itself, without --retry-refused, once the directory says it holds more allocation lists " +
                "than when it refused it: only a new list can change its answer, and every answer says how many it holds (with nothing else to send, one " +
                "upload per run asks), so a directory whose answer cannot have changed is not asked again and again. --retry-refused is for when the count " +
                "cannot tell (e.g. a directory restored from a backup). Every other refusal is final and never sent again: another certificate published " +
                "for the serial (CONFLICT, see `idmint directory conflicts`), another station's serial, a broken chain, profile, ledger entry or proof.",
            ),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          if (!Number.isInteger(args.batch) || args.batch < 1 || args.batch > 1000) throw new CoreError("OPTION_INVALID", "--batch must be a whole number from 1 to 1000");
          if (!(args.retryFor >= 0)) throw new CoreError("OPTION_INVALID", "--retry-for must be a number of seconds");
          const clock = clockOf(io);
          const shown = uploadProgress(io, args.json);
          const r = await withStation(home, clock, (stores) =>
            withHsm(hsmOptions(config, io), async (hsm) => {
              try {
                const signer = hsm.signer(config.keys.station);
                return await stationUploader({ home, config, clock, stores, signer, directory: args.directory, batchSize: args.batch, onEvent: shown.onEvent }).flush(args.retryFor * 1000, {
                  retryRefused: args.retryRefused,
                });
              } finally {
                shown.done();
              }
            }),
          );
          report(io, args, r, () => uploadLines(r));
          if (r.pending > 0) throw new ReportedFailure(`${r.pending} certificates are still pending (${r.lastError ?? "directory unreachable"}): run idmint station upload again later`, EXIT_CODES.unavailable);
        },
      )
      .demandCommand(1, "name a subcommand: run, dashboard, upload or report"),
  );
}
