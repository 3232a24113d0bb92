import type { Argv } from "yargs";
import { KEY_ROLES } from "../../core/index.js";
import { initEmbeddedHsm, parsePkcs11Uri, withHsm, type KeyInfo } from "../../hsm/index.js";
import { homeOf, hsmOptions } from "../context.js";
import { report, type GlobalArgs, type Io } from "../io.js";

export function hsmCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("hsm", "the embedded SoftHSM2 default and the tokens idmint uses", (y) =>
    y
      .command(
        "init",
        "create a SoftHSM2 configuration and one token per key role under --home (PIN files mode 0600)",
        (c) =>
          c
            .option("organization", { type: "string", default: "Example Vendor", describe: "subject O of every certificate this home issues" })
            .example("$0 hsm init --home ./.idmint", "make the embedded default HSM for a new home"),
        (args) => {
          const home = homeOf(args, io);
          const r = initEmbeddedHsm(home, { organization: args.organization });
          report(io, args, { home: home.root, module: r.module, softhsmConf: r.softhsmConf, tokens: r.tokens }, () => [
            `initialised ${r.tokens.length} SoftHSM2 tokens in ${home.hsmDir}`,
            `tokens: ${r.tokens.join(", ")}`,
            `next: idmint ca init --home ${home.root}`,
          ]);
        },
      )
      .command(
        "list",
        "list tokens and the keys idmint's roles use (label, id, algorithm, sensitive, extractable)",
        (c) => c.example("$0 hsm list --json", "show every token and key as JSON"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const result = await withHsm(hsmOptions(config, io), (hsm) => {
            const tokens = hsm.tokens().filter((t) => t.initialized);
            const keys: Array<KeyInfo & { role: string }> = [];
            const seen = new Set<string>();
            for (const role of KEY_ROLES) {
              const uri = config.keys[role];
              const token = parsePkcs11Uri(uri).token ?? "";
              if (seen.has(token)) continue;
              seen.add(token);
              for (const k of hsm.listKeys(uri)) keys.push({ role, ...k });
            }
            return { module: config.hsm.module, tokens, keys };
          });
          report(io, args, result, () => [
            `module ${result.module}`,
            ...result.tokens.map((t) => `token ${t.label} (serial ${t.serial})`),
            ...result.keys.map(
              (k) => `  key ${k.label} in ${k.token}: ${k.algorithm}, id ${k.id}, sensitive=${k.sensitive}, extractable=${k.extractable}`,
            ),
          ]);
        },
      )
      .demandCommand(1, "name a subcommand: init or list"),
  );
}
