import yargs, { type Argv } from "yargs";
import { IdmintError, isIdmintError } from "../core/index.js";
import { caCommands } from "./commands/ca.js";
import { demoCommand } from "./commands/demo.js";
import { directoryCommands } from "./commands/directory.js";
import { ledgerCommands } from "./commands/ledger.js";
import { operatorCommands } from "./commands/operator.js";
import { serialsCommands } from "./commands/serials.js";
import { stationCommands } from "./commands/station.js";
import { unitCommands } from "./commands/unit.js";
import { hsmCommands } from "./commands/hsm.js";
import { exportCommands, vouchersCommands } from "./commands/vouchers.js";
import { ReportedFailure, processIo, type GlobalArgs, type Io } from "./io.js";

class UsageError extends IdmintError<"USAGE"> {}

/** One line for the user: the error's own message for ours, a plain "bug" line for anything else. */
function describe(e: unknown, io: Io): { code: string; message: string; exit: number } {
  if (isIdmintError(e)) return { code: e.code, message: e.message, exit: e.exitCode };
  const detail = e instanceof Error ? e.message.split("\n")[0] : String(e);
  if (io.env.IDMINT_DEBUG && e instanceof Error) io.err((e.stack ?? detail) + "\n");
  return { code: "INTERNAL", message: `internal error: ${detail} (this is a bug in idmint; rerun with IDMINT_DEBUG=1 and report it)`, exit: 70 };
}

/** Runs one idmint command line and returns the exit code; only bin/idmint.js exits the process. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const json = argv.includes("--json");
  let parser = yargs(argv)
    .scriptName("idmint")
    .usage("$0 <command> [options]\n\nBirth identities for factory units: IEEE 802.1AR IDevIDs signed in a PKCS#11 HSM.")
    .option("home", { type: "string", describe: "idmint home directory (env IDMINT_HOME, default ./.idmint)", global: true })
    .option("json", { type: "boolean", default: false, describe: "print one JSON document on stdout and nothing else there", global: true })
    .strict()
    .demandCommand(1, "name a command; see idmint --help")
    .recommendCommands()
    .exitProcess(false)
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((msg, err) => {
      if (err) throw err;
      throw new UsageError("usage", "USAGE", `${msg}: see idmint --help`);
    })
    .help()
    .version(false) as unknown as Argv<GlobalArgs>;
  parser = hsmCommands(parser, io);
  parser = caCommands(parser, io);
  parser = serialsCommands(parser, io);
  parser = stationCommands(parser, io);
  parser = unitCommands(parser, io);
  parser = ledgerCommands(parser, io);
  parser = directoryCommands(parser, io);
  parser = operatorCommands(parser, io);
  parser = vouchersCommands(parser, io);
  parser = exportCommands(parser, io);
  parser = demoCommand(parser, io, main);
  let output = "";
  try {
    await parser.parseAsync(argv, {}, (_err: unknown, _argv: unknown, text: string) => {
      output = text;
    });
    if (output) io.out(output + "\n");
    return 0;
  } catch (e) {
    if (e instanceof ReportedFailure) {
      io.err(`idmint: ${e.message}\n`);
      return e.exitCode;
    }
    const d = describe(e, io);
    io.err(`idmint: ${d.message}\n`);
    if (json) io.out(JSON.stringify({ ok: false, error: { code: d.code, message: d.message } }) + "\n");
    return d.exit;
  }
}
