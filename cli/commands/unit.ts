import type { Argv } from "yargs";
import { existsSync } from "node:fs";
import { assertFileWithinLimit } from "../../cms/index.js";
import { CoreError, DEFAULT_HW_TYPE_OID, assertNewOutput, readInputFile, writeOutputFile, type IdmintConfig } from "../../core/index.js";
import { findSoftHsmModule } from "../../hsm/index.js";
import { decryptForUnit, exportUnitPart, unitsDbPath, type UnitPart } from "../../device/index.js";
import { SimError, UNIT_FAULTS, UnitSimulator, enrolOverCmp, parseFaultSpec, type SimKeystoreOptions } from "../../sim/index.js";
import { homeOf, readCmpSecret, stopSignal, unitTokenOf } from "../context.js";
import { bootstrapCommand } from "./unit-bootstrap.js";
import { report, type GlobalArgs, type Io } from "../io.js";

export function unitCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("unit", "the unit side of the line: simulated units behind a TCP fixture, their side of RFC 8886 (decrypt) and of SZTP (bootstrap), and their keys and certificates as files (export)", (y) =>
    bootstrapCommand(y, io)
      .command(
        "sim",
        "serve simulated units on 127.0.0.1 until SIGINT/SIGTERM: each TCP connection is the next unit, in serial order; after the last, connections are told NO_MORE_UNITS",
        (c) =>
          c
            .option("port", { type: "number", describe: "--link tcp: TCP port on 127.0.0.1; 0 picks a free one (printed when ready)" })
            .option("link", { choices: ["tcp", "cmp"] as const, default: "tcp" as const, describe: "tcp: serve the units to a station's fixture slots; cmp: the units enrol themselves at --station over CMP (p10cr), then the command ends" })
            .option("station", { type: "string", describe: "--link cmp: the station's CMP endpoint, e.g. http://127.0.0.1:8080/.well-known/cmp" })
            .option("cmp-secret-file", { type: "string", describe: "--link cmp: the line's CMP secret (the file's first line)" })
            .option("concurrency", { type: "number", default: 8, describe: "--link cmp: units enrolling at once" })
            .option("timeout-ms", { type: "number", default: 30_000, describe: "--link cmp: how long a unit waits for each answer" })
            .option("count", { type: "number", demandOption: true, describe: "how many units the line holds (1-1000000)" })
            .option("prefix", { type: "string", demandOption: true, describe: "serial prefix (A-Z a-z 0-9 . -), e.g. SN" })
            .option("start", { type: "number", demandOption: true, describe: "number of the first serial" })
            .option("width", { type: "number", default: 6, describe: "digits of the serial's number part: SN000042 has width 6" })
            .option("model", { type: "string", default: "Simulated Unit", describe: "model the units report in hello" })
            .option("firmware", { type: "string", default: "idmint-sim 1", describe: "firmware version the units report in hello" })
            .option("hw-type", { type: "string", describe: `hwType OID the units report (default: profile.hwTypeOid of the home, else ${DEFAULT_HW_TYPE_OID})` })
            .option("keystore", { choices: ["soft", "pkcs11"] as const, default: "soft" as const, describe: "where unit keys live: soft = in the units' flash, HOME/units/units.db (0600); pkcs11 = a token as the units' secure element" })
            .option("pkcs11-token", { type: "string", describe: "with --keystore pkcs11: the token, as a PKCS#11 URI with pin-source, e.g. pkcs11:token=unit-se?pin-source=file:/path/pin (default: simulator.unitTokenUri of the home)" })
            .option("pkcs11-module", { type: "string", describe: "with --keystore pkcs11: the PKCS#11 module (default: hsm.module of the home, else SoftHSM2)" })
            .option("fault", { type: "string", array: true, describe: `make a unit misbehave, SERIAL=KIND (repeatable); KIND: ${UNIT_FAULTS.join(", ")}` })
            .option("slow-ms", { type: "number", default: 1000, describe: "delay of every answer of a unit with the slow fault" })
            .option("root", { type: "string", describe: "vendor root certificate the units trust (default HOME/pki/root.pem)" })
            .example("$0 unit sim --port 4700 --count 100 --prefix SN --start 1", "100 units SN000001..SN000100 on 127.0.0.1:4700, their keys and certificates in HOME/units/units.db")
            .example("$0 unit sim --port 0 --count 3 --prefix SN --start 1 --fault SN000002=duplicate-key --json", "any free port, printed as JSON; SN000002 reuses SN000001's key")
            .example("$0 unit sim --link cmp --station http://127.0.0.1:8080/.well-known/cmp --cmp-secret-file line.secret --count 100 --prefix SN --start 1", "100 units enrol over CMP, 8 at a time"),
        async (args) => {
          const home = homeOf(args, io);
          const faults = (args.fault ?? []).map(parseFaultSpec);
          const config: IdmintConfig | undefined = home.hasConfig() ? home.readConfig() : undefined;

          let keystore: SimKeystoreOptions = { kind: "soft" };
          if (args.keystore === "pkcs11") {
            // `hsm init` homes name a token for simulated secure elements in idmint.json.
            const tokenUri = args["pkcs11-token"] ?? (config as { simulator?: { unitTokenUri?: string } } | undefined)?.simulator?.unitTokenUri;
            if (!tokenUri) {
              throw new SimError("SIM_OPTIONS", "--keystore pkcs11 needs --pkcs11-token (this home names no units' token), e.g. --pkcs11-token 'pkcs11:token=unit-se?pin-source=file:/path/pin'");
            }
            const module = args["pkcs11-module"] ?? config?.hsm.module ?? findSoftHsmModule();
            const softhsmConf = args["pkcs11-module"] === undefined ? config?.hsm.softhsmConf : undefined;
            keystore = { kind: "pkcs11", module, softhsmConf, tokenUri, env: io.env };
          } else if (args["pkcs11-token"] !== undefined || args["pkcs11-module"] !== undefined) {
            throw new SimError("SIM_OPTIONS", "--pkcs11-token and --pkcs11-module go with --keystore pkcs11: add it, or drop them");
          }

          const rootPath = args.root ?? home.pkiFile("root");
          if (args.root === undefined && !existsSync(rootPath)) {
            throw new CoreError("HOME_NOT_INITIALISED", `no vendor root at ${rootPath}: run \`idmint ca init --home ${home.root}\` first, or pass --root FILE`);
          }
          const root = readInputFile(rootPath, "the vendor root certificate");

          const hwType = args["hw-type"] ?? config?.profile.hwTypeOid;
          if (args.link === "cmp") {
            if (!args.station) throw new SimError("SIM_OPTIONS", "--link cmp needs --station URL, the station's CMP endpoint (station run --cmp prints it)");
            if (!Number.isInteger(args.concurrency) || args.concurrency < 1 || args.concurrency > 256) throw new SimError("SIM_OPTIONS", "--concurrency must be a whole number from 1 to 256");
            const secret = readCmpSecret("--link cmp", args["cmp-secret-file"]);
            const line = { unitsDir: home.unitsDir, root, count: args.count, prefix: args.prefix, start: args.start, width: args.width, model: args.model, firmware: args.firmware, hwType, keystore, faults };
            const result = await enrolOverCmp(line, { url: args.station, secret, concurrency: args.concurrency, timeoutMs: args["timeout-ms"] });
            report(io, args, result, () => [
              `${result.enrolled} units enrolled over CMP in ${result.seconds.toFixed(1)} s, ${result.failed} failed`,
              ...Object.entries(result.failures).map(([code, n]) => `  ${n} failed with ${code}`),
            ]);
            return;
          }
          if (args.port === undefined) throw new SimError("SIM_OPTIONS", "--link tcp needs --port P (0 for any free port)");
          // Handlers first: a SIGTERM that arrives while starting still ends in a clean close.
          const signal = stopSignal();
          let sim: UnitSimulator;
          try {
            sim = await UnitSimulator.start({
              unitsDir: home.unitsDir,
              root,
              count: args.count,
              prefix: args.prefix,
              start: args.start,
              width: args.width,
              model: args.model,
              firmware: args.firmware,
              hwType,
              keystore,
              faults,
              slowMs: args["slow-ms"],
              port: args.port,
            });
          } catch (e) {
            signal.dispose();
            throw e;
          }
          if (args.json) {
            io.out(JSON.stringify({ host: sim.host, port: sim.port, count: sim.count }) + "\n");
          } else {
            io.out(`listening on ${sim.host}:${sim.port}\n`);
            io.out(`serving ${sim.count} units ${sim.serialAt(0)} to ${sim.serialAt(sim.count - 1)} (keystore ${sim.keystore}, flash ${unitsDbPath(home.unitsDir)}); stop with Ctrl-C\n`);
          }
          await signal.stopped;
          await sim.close();
          if (!args.json) io.out(`stopped after handing out ${sim.served} of ${sim.count} units\n`);
        },
      )
      .command(
        "decrypt",
        "device side of RFC 8886: simulated unit SERIAL opens a configuration (at most 8 MiB) encrypted to its IDevID (CMS EnvelopedData or AuthEnvelopedData, DER, PEM or S/MIME) with its own key: its soft key, or ECDH or RSA decryption inside its token",
        (c) =>
          c
            .option("serial", { type: "string", demandOption: true, describe: "the unit, as kept in HOME/units/units.db by `station run --sim` or `unit sim`" })
            .option("in", { type: "string", demandOption: true, describe: "the encrypted configuration (e.g. from `idmint operator encrypt` or `openssl cms -encrypt -binary -aes256`)" })
            .option("out", { type: "string", demandOption: true, describe: "where to write the configuration, mode 0600 (must not exist; written only on success)" })
            .option("require-encrypted", {
              type: "boolean",
              default: false,
              describe: "refuse input that is not encrypted (RFC 8886 §4.3); without it, text with no CMS framing (DER, PEM, S/MIME) is passed through unchanged",
            })
            .option("require-authenticated", {
              type: "boolean",
              default: false,
              describe: "accept only AuthEnvelopedData (AES-GCM, e.g. from `operator encrypt --aead`), whose tag proves the configuration unchanged: plain EnvelopedData and plaintext are refused (exit 6)",
            })
            .option("pkcs11-token", { type: "string", describe: "for a unit whose key is in a token: the token, as a PKCS#11 URI with pin-source (default: simulator.unitTokenUri of the home)" })
            .option("pkcs11-module", { type: "string", describe: "for a unit whose key is in a token: the PKCS#11 module (default: hsm.module of the home, else SoftHSM2)" })
            .example("$0 unit decrypt --serial SN000042 --in SN000042.cfg.cms --out router.cfg --require-encrypted", "SN000042 decrypts its configuration; plaintext is refused")
            .example("$0 unit decrypt --serial SN000042 --in cfg.cms --out router.cfg --json", "the same, saying whether it was encrypted and with which algorithms")
            .example("$0 unit decrypt --serial SN000042 --in SN000042.cfg.cms --out router.cfg --require-authenticated", "only a configuration whose AES-GCM tag proves it unchanged"),
        (args) => {
          const home = homeOf(args, io);
          assertNewOutput(args.out);
          assertFileWithinLimit("encrypted", args.in, "the encrypted configuration");
          const input = readInputFile(args.in, "the encrypted configuration");
          const config: IdmintConfig | undefined = home.hasConfig() ? home.readConfig() : undefined;
          const token = unitTokenOf(args, config, io);
          const { keystore, result } = decryptForUnit({
            unitsDir: home.unitsDir,
            serial: args.serial,
            input,
            requireEncrypted: args["require-encrypted"],
            requireAuthenticated: args["require-authenticated"],
            token,
          });
          // The configuration may carry secrets: only the owner reads it.
          writeOutputFile(args.out, result.plaintext, 0o600);
          const bytes = result.plaintext.byteLength;
          if (!result.encrypted) {
            report(io, args, { serial: args.serial, encrypted: false, bytes, out: args.out }, () => [
              `${args.serial}: the input is not encrypted; passed through unchanged (RFC 8886 §4.3; --require-encrypted refuses it)`,
              `written to ${args.out}`,
            ]);
            return;
          }
          const how = keystore === "pkcs11" ? `its key in the token (${result.recipient === "key transport" ? "RSA decryption" : "ECDH"} inside the token)` : "its soft key";
          report(
            io,
            args,
            {
              serial: args.serial,
              encrypted: true,
              authenticated: result.authenticated,
              bytes,
              out: args.out,
              keystore,
              framing: result.framing,
              keyEncryption: result.keyEncryption,
              keyWrap: result.keyWrap,
              contentEncryption: result.contentEncryption,
            },
            () => [
              `${args.serial}: decrypted ${bytes} bytes with ${how} (${result.keyEncryption}${result.keyWrap ? `, ${result.keyWrap}` : ""}, ${result.contentEncryption}${result.authenticated ? ", tag verified" : ""})`,
              `written to ${args.out}`,
            ],
          );
        },
      )
      .command(
        "export",
        "write a simulated unit's private key (PKCS#8 PEM, mode 0600; soft keystore only: a key in a token never leaves it), its IDevID or its chain (PEM) to a file, e.g. for openssl cms -decrypt",
        (c) =>
          c
            .option("serial", { type: "string", demandOption: true, describe: "the unit, as kept in HOME/units/units.db by `station run --sim` or `unit sim`" })
            .option("key", { type: "boolean", describe: "export the unit's private key" })
            .option("cert", { type: "boolean", describe: "export the unit's installed IDevID" })
            .option("chain", { type: "boolean", describe: "export the chain installed with it (factory CA)" })
            .option("out", { type: "string", demandOption: true, describe: "where to write it (must not exist)" })
            .example("$0 unit export --serial SN000042 --key --out SN000042.key", "then: openssl cms -decrypt -in cfg.cms -inform DER -recip HOME/certs/SN000042.pem -inkey SN000042.key")
            .example("$0 unit export --serial SN000042 --cert --out SN000042.pem --json", "the certificate the unit holds, saying where it went"),
        (args) => {
          const parts = (["key", "cert", "chain"] as const).filter((p) => args[p]);
          if (parts.length !== 1) throw new CoreError("OPTION_INVALID", "give exactly one of --key, --cert or --chain");
          const part: UnitPart = parts[0]!;
          assertNewOutput(args.out);
          const pem = exportUnitPart(homeOf(args, io).unitsDir, args.serial, part);
          // Only the owner reads a private key.
          writeOutputFile(args.out, pem, part === "key" ? 0o600 : 0o644);
          const what = { key: "private key (PKCS#8, mode 0600)", cert: "certificate", chain: "chain" }[part];
          report(io, args, { serial: args.serial, part, out: args.out }, () => [`${args.serial}: ${what} written to ${args.out}`]);
        },
      )
      .demandCommand(1, "name a subcommand: sim, decrypt, export or bootstrap"),
  );
}
