import type { Argv } from "yargs";
import { EXIT_CODES, KEY_ROLES } from "../../core/index.js";
import { CHECK_ROLES, checkHsm, initEmbeddedHsm, parsePkcs11Uri, withHsm, type CheckReport, type CheckRole, type KeyInfo } from "../../hsm/index.js";
import { homeOf, hsmOptions } from "../context.js";
import { ReportedFailure, report, type GlobalArgs, type Io } from "../io.js";

/** `hsm check`'s table: one row per role, a failed role's row names its error instead of the key. */
function checkTable(r: CheckReport): string[] {
  const rows = r.roles.map((c) => {
    if (!c.ok) return [c.role, "FAILED", c.token ?? "-", `${c.error?.code ?? "ERROR"}: ${c.error?.message ?? ""}`];
    const took = `${c.roundTripMs} ms${c.operation === "login" ? " (login)" : ""}`;
    return [c.role, "ok", c.token ?? "-", c.key ?? "(no fixed key)", c.algorithm ?? "-", c.mechanism ?? "-", took];
  });
  const header = ["role", "result", "token", "key", "algorithm", "mechanism", "round trip"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.filter((row) => row.length > i + 1).map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i < cells.length - 1 ? cell.padEnd(widths[i]!) : cell)).join("  ");
  return [`module ${r.module}`, line(header), ...rows.map(line)];
}

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
            // A token may hold more than one role's key (the MASA's beside the allocation signer's): a key is named by its label.
            const roles = [...KEY_ROLES, "masa" as const].flatMap((role) => (config.keys[role] === undefined ? [] : [{ role, uri: config.keys[role], parsed: parsePkcs11Uri(config.keys[role]) }]));
            for (const { role, uri, parsed } of roles) {
              const token = parsed.token ?? "";
              if (seen.has(token)) continue;
              seen.add(token);
              for (const k of hsm.listKeys(uri)) keys.push({ role: roles.find((r) => r.parsed.token === parsed.token && r.parsed.object === k.label)?.role ?? role, ...k });
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
      .command(
        "check",
        "open each role's key, sign a test message once and verify it, timing the HSM's round trip: a slow or missing HSM shows before the shift",
        (c) =>
          c
            .option("role", { type: "string", array: true, choices: CHECK_ROLES, default: [] as string[], describe: "check only this role (repeatable); default every role the home has" })
            .example("$0 hsm check", "one line per role: token, key, algorithm, mechanism and the sign's round trip")
            .example("$0 hsm check --role factory-ca --json", "only the factory CA's key, as JSON"),
        async (args) => {
          const config = homeOf(args, io).readConfig();
          const r = await checkHsm(config, hsmOptions(config, io), args.role as CheckRole[]);
          report(io, args, r, () => checkTable(r));
          const failed = r.roles.filter((c) => !c.ok);
          if (failed.length > 0) {
            const first = failed[0]!;
            const exit = first.error?.kind ? EXIT_CODES[first.error.kind] : EXIT_CODES.internal;
            const others = failed.length > 1 ? `; also ${failed.slice(1).map((c) => c.role).join(", ")} (see the table)` : "";
            throw new ReportedFailure(`${failed.length} of ${r.roles.length} keys failed the check: ${first.role}: ${first.error?.message}${others}`, exit);
          }
        },
      )
      .demandCommand(1, "name a subcommand: init, list or check"),
  );
}
