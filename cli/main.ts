import yargs, { type Argv } from "yargs";
import { IdmintError, isIdmintError } from "../core/index.js";
import { ReportedFailure, processIo, type GlobalArgs, type Io } from "./io.js";

class UsageError extends IdmintError<"USAGE"> {}

type CommandGroup = (yargs: Argv<GlobalArgs>, io: Io) => Argv<GlobalArgs>;

/**
 * Each top-level command's module, in the order help lists them. Only the one a command line
 * names is loaded: a command pays at start-up for the libraries it uses, not for the directory
 * server's or the CMS stack's (every station, script and test spawns the binary).
 */
const COMMANDS: Record<string, () => Promise<CommandGroup>> = {
  hsm: async () => (await import("./commands/hsm.js")).hsmCommands,
  ca: async () => (await import("./commands/ca.js")).caCommands,
  serials: async () => (await import("./commands/serials.js")).serialsCommands,
  station: async () => (await import("./commands/station.js")).stationCommands,
  unit: async () => (await import("./commands/unit.js")).unitCommands,
  ledger: async () => (await import("./commands/ledger.js")).ledgerCommands,
  directory: async () => (await import("./commands/directory.js")).directoryCommands,
  operator: async () => (await import("./commands/operator.js")).operatorCommands,
  vouchers: async () => (await import("./commands/vouchers.js")).vouchersCommands,
  export: async () => (await import("./commands/vouchers.js")).exportCommands,
  demo: async () => {
    const { demoCommand } = await import("./commands/demo.js");
    return (yargs, io) => demoCommand(yargs, io, main);
  },
};

/** The top-level command a command line names: its first word that is no option and not --home's value. */
function commandOf(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === "--") return undefined;
    if (word === "--home") i++;
    else if (!word.startsWith("-")) return word;
  }
  return undefined;
}

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
  let output = "";
  try {
    // A line that names no known command (help, a typo) gets them all, for the full help and suggestions.
    const named = commandOf(argv);
    const groups = named !== undefined && Object.hasOwn(COMMANDS, named) ? [COMMANDS[named]!] : Object.values(COMMANDS);
    for (const group of await Promise.all(groups.map((load) => load()))) parser = group(parser, io);
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
