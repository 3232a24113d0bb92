import type { Argv, CommandModule } from "yargs";
import { CoreError } from "../core/index.js";
import { migrateSqliteToPg, parseStoreLocation } from "../directory/index.js";
import { homeOf } from "./context.js";
import { directoryStoreOf } from "./directory-store.js";
import { report, type GlobalArgs, type Io } from "./io.js";

/** `idmint directory migrate`: an SQLite directory into an empty PostgreSQL one, verified before it commits. */
export function directoryMigrateCommand(io: Io): CommandModule<GlobalArgs, GlobalArgs & { from: string; to?: string }> {
  return {
    command: "migrate",
    describe: "copy an SQLite directory (certificates, checkpoints, allocations, conflicts) into an empty PostgreSQL one; counts and checkpoint chains are compared before it commits",
    builder: (c: Argv<GlobalArgs>) =>
      c
        .option("from", { type: "string", demandOption: true, describe: "the SQLite store: sqlite:PATH" })
        .option("to", { type: "string", describe: "the PostgreSQL database, postgres://USER@HOST/DB (default: env IDMINT_DIRECTORY_DB or idmint.json directory.store)" })
        .example("$0 directory migrate --from sqlite:.idmint/directory.db --to postgres://idmint@db1/directory", "move the embedded directory onto PostgreSQL") as Argv<GlobalArgs & { from: string; to?: string }>,
    handler: async (args) => {
      const home = homeOf(args, io);
      const from = parseStoreLocation(args.from);
      const to = directoryStoreOf(home, io, { store: args.to });
      if (from.kind !== "sqlite" || to.kind !== "postgres") {
        throw new CoreError("OPTION_INVALID", "directory migrate moves an SQLite store into PostgreSQL: give --from sqlite:PATH and --to postgres://… (or IDMINT_DIRECTORY_DB)");
      }
      const r = await migrateSqliteToPg(from.path, to.url);
      report(io, args, r, () => [
        `migrated ${from.path} to ${r.to}, verified:`,
        ...Object.entries(r.rows).map(([table, n]) => `  ${table.replace("directory_", "").padEnd(13)} ${n}`),
        `  checkpoint chains of ${r.stations} stations identical`,
      ]);
    },
  };
}
