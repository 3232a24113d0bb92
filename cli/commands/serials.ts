import type { Argv } from "yargs";
import { CoreError, EXIT_CODES, openDb, readInputFile, readJsonFile, systemRandom, withClaimedOutputs } from "../../core/index.js";
import { openExtract, stationOrigin } from "../../ledger/index.js";
import { reconcileFromTiles } from "../reconcile-tiles.js";
import { SerialsError, VendorRegister, openAllocation, openUsageReport, reconcile, type Allocation, type SerialRange, type SignedDocument } from "../../serials/index.js";
import { UnitStore, withStation } from "../../station/index.js";
import { clockOf, homeOf, hsmOptions, pinnedRoot } from "../context.js";
import { withHsm } from "../../hsm/index.js";
import { ReportedFailure, report, type GlobalArgs, type Io } from "../io.js";

function parseDate(value: string | undefined, option: string, fallback: Date): Date {
  if (value === undefined) return fallback;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new CoreError("OPTION_INVALID", `--${option} ${value} is not a date: write it as 2027-06-30 or 2027-06-30T12:00:00Z`);
  return d;
}

function wholeNumber(value: number | undefined, option: string, min: number, max: number): number {
  if (value === undefined || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new CoreError("OPTION_INVALID", `--${option} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

export function serialsCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("serials", "serial allocations: allocate and sign (vendor), import, consume and report (station)", (y) =>
    y
      .command(
        "allocate",
        "sign an allocation list of serials for one order and station (vendor)",
        (c) =>
          c
            .option("order", { type: "string", demandOption: true, describe: "production order id" })
            .option("station", { type: "string", demandOption: true, describe: "the station that may use these serials" })
            .option("model", { type: "string", demandOption: true, describe: "the product model" })
            .option("count", { type: "number", describe: "how many serials" })
            .option("prefix", { type: "string", describe: "serial prefix, e.g. SN" })
            .option("start", { type: "number", describe: "first serial number" })
            .option("width", { type: "number", default: 6, describe: "digits after the prefix (zero-padded)" })
            .option("from-file", { type: "string", describe: "an explicit list instead of a range: one serial per line" })
            .option("not-before", { type: "string", describe: "start of validity (default: now)" })
            .option("not-after", { type: "string", describe: "end of validity (default: one year from not-before)" })
            .option("claim-codes", { type: "boolean", default: false, describe: "make a random claim code per serial; the list carries only their hashes" })
            .option("claim-codes-out", { type: "string", describe: "where to write serial,code lines (required with --claim-codes)" })
            .option("out", { type: "string", demandOption: true, describe: "where to write the signed list (must not exist)" })
            .example("$0 serials allocate --order PO-7 --station station-1 --model RT-1 --count 1000 --prefix SN --start 42 --out po7.json", "serials SN000042..SN001041 for station-1"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const clock = clockOf(io);
          if (args.claimCodes && !args.claimCodesOut) throw new CoreError("OPTION_INVALID", "--claim-codes needs --claim-codes-out FILE for the codes");
          const notBefore = parseDate(args.notBefore, "not-before", clock.now());
          const notAfter = parseDate(args.notAfter, "not-after", new Date(notBefore.getTime() + 365 * 86_400_000));
          if (notAfter <= notBefore) throw new CoreError("OPTION_INVALID", "--not-after must be later than --not-before");
          let serials: string[] | undefined;
          let range: SerialRange | undefined;
          if (args.fromFile) {
            if (args.count !== undefined || args.prefix !== undefined || args.start !== undefined) {
              throw new CoreError("OPTION_INVALID", "give either --from-file or --count/--prefix/--start, not both");
            }
            serials = readInputFile(args.fromFile, "serial list").toString("utf8").split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
            if (serials.length === 0) throw new CoreError("FILE_UNREADABLE", `${args.fromFile} lists no serials: write one per line`);
          } else {
            if (args.prefix === undefined) throw new CoreError("OPTION_INVALID", "--prefix is required (or give --from-file)");
            range = { prefix: args.prefix, start: wholeNumber(args.start, "start", 0, Number.MAX_SAFE_INTEGER), count: wholeNumber(args.count, "count", 1, 1_000_000), width: wholeNumber(args.width, "width", 1, 18) };
          }
          const certificatePem = readInputFile(home.pkiFile("allocation-signer"), "the allocation signer certificate").toString("utf8");
          const db = openDb(home.root + "/vendor.db");
          try {
            const register = new VendorRegister(db);
            const result = await withClaimedOutputs([["--out", args.out], ["--claim-codes-out", args.claimCodesOut]], ([out, codesOut]) =>
              withHsm(hsmOptions(config, io), (hsm) =>
                register.allocate(
                  { order: args.order, station: args.station, model: args.model, notBefore, notAfter, range, serials, claimCodes: args.claimCodes },
                  hsm.signer(config.keys.allocationSigner),
                  certificatePem,
                  clock,
                  systemRandom,
                  ({ document, claimCodes }) => {
                    out.write(JSON.stringify(document, null, 2) + "\n");
                    if (claimCodes && codesOut) codesOut.write([...claimCodes].map(([s, c]) => `${s},${c}\n`).join(""), 0o600);
                  },
                ),
              ),
            );
            const a = result.document.payload;
            report(io, args, { allocationId: a.allocationId, order: a.order, station: a.station, model: a.model, count: a.count, notBefore: a.notBefore, notAfter: a.notAfter, out: args.out }, () => [
              `allocation ${a.allocationId}: ${a.count} serials for ${a.station} (order ${a.order}, model ${a.model}), valid until ${a.notAfter}`,
              `written to ${args.out}`,
            ]);
          } finally {
            db.close();
          }
        },
      )
      .command(
        "import <file>",
        "verify a signed allocation list and take its serials into this station (station)",
        (c) => c.positional("file", { type: "string", demandOption: true, describe: "the signed allocation list" }).example("$0 serials import po7.json", "import the list for order PO-7"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const clock = clockOf(io);
          const text = readInputFile(args.file as string, "allocation list").toString("utf8");
          let doc: unknown;
          try {
            doc = JSON.parse(text);
          } catch {
            throw new SerialsError("ALLOCATION_INVALID", `${args.file} is not JSON: give the signed list the vendor sent`);
          }
          const { allocation } = await openAllocation(doc, pinnedRoot(home), clock.now());
          const r = await withStation(home, clockOf(io), ({ serials }) => serials.importAllocation(allocation, text, config.station.id));
          report(io, args, { allocationId: allocation.allocationId, imported: r.imported, count: r.count }, () => [
            r.imported ? `imported ${allocation.allocationId}: ${r.count} serials for order ${allocation.order}` : `${allocation.allocationId} was already imported; nothing changed`,
          ]);
        },
      )
      .command(
        "status",
        "counts per allocation: allocated, available, reserved, provisioned, scrapped",
        (c) => c.example("$0 serials status --json", "counts as JSON"),
        async (args) => {
          const home = homeOf(args, io);
          home.readConfig();
          const { rows, uploads } = await withStation(home, clockOf(io), ({ db, serials }) => ({ rows: serials.status(), uploads: new UnitStore(db, clockOf(io)).outbox() }));
          report(io, args, { allocations: rows, uploads }, () => [
            ...(rows.length === 0
              ? ["no allocation imported yet: run idmint serials import FILE"]
              : rows.map((r) => `${r.allocationId} (order ${r.order}, ${r.model}): ${r.allocated} allocated, ${r.provisioned} provisioned, ${r.scrapped} scrapped, ${r.reserved} reserved, ${r.available} remaining`)),
            `uploads to the directory: ${uploads.sent} sent, ${uploads.pending} pending${uploads.refused ? `, ${uploads.refused} refused` : ""}`,
          ]);
        },
      )
      .command(
        "scrap <serial>",
        "scrap a failed unit's serial for good; recorded in the ledger",
        (c) =>
          c
            .positional("serial", { type: "string", demandOption: true })
            .option("reason", { type: "string", demandOption: true, describe: "why the unit was scrapped" })
            .example("$0 serials scrap SN000042 --reason 'failed RF test'", "scrap SN000042"),
        async (args) => {
          const home = homeOf(args, io);
          home.readConfig();
          const row = await withStation(home, clockOf(io), ({ serials }) => serials.scrap(args.serial as string, args.reason));
          report(io, args, { serial: row.serial, state: row.state, reason: args.reason }, () => [`scrapped ${row.serial}: ${args.reason}`]);
        },
      )
      .command(
        "reconcile",
        "what each allocated serial became, and every anomaly (vendor)",
        (c) =>
          c
            .option("allocation", { type: "string", demandOption: true, describe: "the signed allocation list" })
            .option("report", { type: "string", demandOption: true, describe: "the station's signed usage report" })
            .option("root", { type: "string", describe: "the vendor root certificate (default HOME/pki/root.pem)" })
            .option("tiles", { type: "string", describe: "for a report that names its checkpoint: the station's ledger tiles, a folder or a directory URL" })
            .example("$0 serials reconcile --allocation po7.json --report station-1-report.json", "reconcile order PO-7")
            .example("$0 serials reconcile --allocation po7.json --report r.json --tiles https://dir.example/stations/station-1", "the same, reading the ledger as tiles from the directory"),
        async (args) => {
          const home = homeOf(args, io);
          const root = pinnedRoot(home, args.root);
          const at = clockOf(io).now();
          const { allocation } = await openAllocation(readJsonFile(args.allocation, "allocation list") as SignedDocument<Allocation>, root, at);
          const { report: usage, stationId, stationSpki } = await openUsageReport(readJsonFile(args.report, "usage report"), root, at);
          let r;
          if (usage.format === "idmint-usage-report/1") {
            const extract = openExtract(usage.ledger.map((b) => Buffer.from(String(b), "base64")), usage.checkpoint, stationOrigin(stationId), stationSpki);
            r = reconcile(allocation, usage, stationId, { matchesCheckpoint: extract.matchesCheckpoint, size: extract.checkpoint.size, malformed: extract.malformed, entries: extract.entries });
          } else {
            if (!args.tiles) throw new CoreError("OPTION_INVALID", "this report names its checkpoint and leaves the ledger in tiles: give --tiles with the station's tiles folder or URL");
            r = await reconcileFromTiles(allocation, usage, stationId, stationSpki, args.tiles);
          }
          report(io, args, { ok: r.anomalies.length === 0, ...r }, () => [
            `${r.allocationId} at ${r.station}: ${r.allocated} allocated = ${r.provisioned} provisioned + ${r.scrapped} scrapped + ${r.reserved} reserved + ${r.unused} unused (ledger checkpoint size ${r.checkpointSize})`,
            ...(r.anomalies.length === 0 ? ["no anomaly"] : r.anomalies.map((a) => `ANOMALY ${a.kind}: ${a.detail}`)),
          ]);
          if (r.anomalies.length > 0) {
            throw new ReportedFailure(`${r.anomalies.length} anomalies in ${r.allocationId}: investigate before accepting this report`, EXIT_CODES.verify);
          }
        },
      )
      .demandCommand(1, "name a subcommand: allocate, import, status, scrap or reconcile"),
  );
}

