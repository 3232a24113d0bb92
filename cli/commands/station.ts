import type { Argv } from "yargs";
import { existsSync } from "node:fs";
import { CoreError, writeFileAtomic } from "../../core/index.js";
import { signDocument } from "../../serials/index.js";
import { buildUsageReport } from "../../station/index.js";
import { clockOf, homeOf, stationIdentity, withHsm, withStation } from "../context.js";
import { report, type GlobalArgs, type Io } from "../io.js";

export function stationCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("station", "the factory station: usage report", (y) =>
    y
      .command(
        "report",
        "a usage report signed by the station key: each serial's fate and the ledger checkpoint that proves it",
        (c) =>
          c
            .option("out", { type: "string", demandOption: true, describe: "where to write the report (must not exist)" })
            .example("$0 station report --out station-1-report.json", "hand in this station's report"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          if (existsSync(args.out)) throw new CoreError("input", "FILE_EXISTS", `--out ${args.out} already exists: choose another path or remove it`);
          const station = stationIdentity(home, config);
          const doc = await withStation(home, io, ({ ledger, serials }) =>
            withHsm(config, io, async (hsm) => {
              const signer = hsm.signer(config.keys.station);
              const checkpoint = await ledger.checkpoint(signer, station.origin);
              const usage = buildUsageReport({ store: serials, ledger, checkpoint, stationId: config.station.id, clock: clockOf(io) });
              return signDocument(usage, signer, station.certificatePem);
            }),
          );
          writeFileAtomic(args.out, JSON.stringify(doc, null, 2) + "\n");
          const counts = doc.payload.allocations.map((a) => Object.values(a.serials).filter((f) => f.state === "provisioned").length).reduce((x, y) => x + y, 0);
          report(io, args, { out: args.out, allocations: doc.payload.allocations.length, provisioned: counts, ledgerEntries: doc.payload.ledger.length }, () => [
            `usage report for ${config.station.id}: ${doc.payload.allocations.length} allocations, ${counts} provisioned, ${doc.payload.ledger.length} ledger entries`,
            `written to ${args.out}`,
          ]);
        },
      )
      .demandCommand(1, "name a subcommand: report"),
  );
}
