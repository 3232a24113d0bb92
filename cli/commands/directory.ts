import type { Argv } from "yargs";
import { existsSync } from "node:fs";
import { CoreError, readInputFile, type Home } from "../../core/index.js";
import { openStore, startDirectory, type DirectoryLoggerOptions, type DirectoryStore } from "../../directory/index.js";
import { parseCertificate, x509 } from "../../pki/index.js";
import { SerialsError, allocationDigest, expandSerials, openAllocation } from "../../serials/index.js";
import { clockOf, homeOf, pinnedRoot, stopSignal } from "../context.js";
import { directoryMigrateCommand } from "../directory-migrate.js";
import { describeStore, directoryStoreOf } from "../directory-store.js";
import { report, type GlobalArgs, type Io } from "../io.js";

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "silent"] as const;

const STORE_OPTION = {
  type: "string",
  describe: "the directory store: postgres://USER@HOST/DB (password only in env IDMINT_DIRECTORY_DB or idmint.json directory.store) or sqlite:PATH (default HOME/directory.db)",
} as const;

/** Opens the store the options name; an SQLite store that should exist already is not made anew. */
async function storeOf(home: Home, io: Io, args: { store?: string; db?: string }, mustExist = false): Promise<DirectoryStore> {
  const location = directoryStoreOf(home, io, args);
  if (mustExist && location.kind === "sqlite" && !existsSync(location.path)) {
    throw new CoreError("HOME_NOT_INITIALISED", `no directory store at ${location.path}: register an allocation with \`idmint directory allocations add FILE\` first, or pass the right --store`);
  }
  return openStore(location);
}

export function directoryCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("directory", "the directory server (RFC 8886 key server): publish IDevIDs by serial, hold stations to their ledgers (vendor)", (y) =>
    y
      .command(
        "serve",
        "run the directory: public reads of published IDevIDs, signed uploads from stations; stops on SIGINT/SIGTERM",
        (c) =>
          c
            .option("port", { type: "number", demandOption: true, describe: "TCP port (0: any free port; the URL printed says which)" })
            .option("host", { type: "string", default: "127.0.0.1", describe: "address to listen on (0.0.0.0 for every interface)" })
            .option("tls-cert", { type: "string", describe: "serve HTTPS with this certificate chain (PEM); needs --tls-key" })
            .option("tls-key", { type: "string", describe: "the TLS private key (PEM); needs --tls-cert" })
            .option("store", STORE_OPTION)
            .option("db", { type: "string", describe: "the SQLite store (older spelling of --store sqlite:PATH)" })
            .option("root", { type: "string", describe: "the pinned vendor root (default HOME/pki/root.pem)" })
            .option("factory-ca", { type: "string", array: true, describe: "factory CA certificates whose IDevIDs may be published (default HOME/pki/factory-ca.pem)" })
            .option("log-level", { choices: LOG_LEVELS, default: "info" as const, describe: "JSON log lines on stderr from this level up" })
            .option("tiles", { type: "string", describe: "serve each station's ledger tiles from DIR/STATION/ (its `ledger tiles --out` folder) at /stations/STATION/tiles/" })
            .example("$0 directory serve --port 8080 --tiles ./station-tiles", "also serve the stations' ledgers as C2SP tiles")
            .example("$0 directory serve --port 8443 --host 0.0.0.0 --tls-cert dir.pem --tls-key dir.key", "serve HTTPS on every interface")
            .example("IDMINT_DIRECTORY_DB=postgres://dir@db1/idmint $0 directory serve --port 8080", "one of several replicas on one PostgreSQL database"),
        async (args) => {
          const home = homeOf(args, io);
          const port = args.port;
          if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CoreError("OPTION_INVALID", `--port ${String(port)} is not a TCP port: give 0-65535`);
          if ((args.tlsCert === undefined) !== (args.tlsKey === undefined)) throw new CoreError("OPTION_INVALID", "--tls-cert and --tls-key go together: give both or neither");
          const tls = args.tlsCert && args.tlsKey ? { cert: readInputFile(args.tlsCert, "the TLS certificate"), key: readInputFile(args.tlsKey, "the TLS key") } : undefined;
          const root = pinnedRoot(home, args.root);
          const factoryCas = (args.factoryCa ?? [home.pkiFile("factory-ca")]).map((p): x509.X509Certificate => parseCertificate(readInputFile(String(p), "the factory CA certificate"), String(p)));
          const location = directoryStoreOf(home, io, args);
          const logger: DirectoryLoggerOptions = { level: args.logLevel, stream: { write: (line) => io.err(line) } };
          // Handlers first, so a signal during start-up still stops the server cleanly.
          const { stopped, dispose } = stopSignal();
          let store: DirectoryStore | undefined;
          try {
            store = await openStore(location);
            const dir = await startDirectory({ store, root, factoryCas, port, host: args.host, tls, logger, clock: clockOf(io), tilesDir: args.tiles });
            if (args.json) io.out(JSON.stringify({ url: dir.url, port: dir.port, db: describeStore(location) }) + "\n");
            else io.out(`listening on ${dir.url}\n`);
            const signal = await stopped;
            await dir.close();
            if (!args.json) io.out(`stopped (${signal})\n`);
          } finally {
            await store?.close();
            dispose();
          }
        },
      )
      .command("allocations", "the serials each station may publish", (a) =>
        a
          .command(
            "add <file>",
            "verify a signed allocation list against the vendor root and register its serials for its station",
            (c) =>
              c
                .positional("file", { type: "string", demandOption: true, describe: "the signed allocation list (from `idmint serials allocate`)" })
                .option("store", STORE_OPTION)
                .option("db", { type: "string", describe: "the SQLite store (older spelling of --store sqlite:PATH)" })
                .option("root", { type: "string", describe: "the pinned vendor root (default HOME/pki/root.pem)" })
                .example("$0 directory allocations add po7.json", "let station-1 publish the serials of order PO-7"),
            async (args) => {
              const home = homeOf(args, io);
              const file = args.file as string;
              const text = readInputFile(file, "allocation list").toString("utf8");
              let doc: unknown;
              try {
                doc = JSON.parse(text);
              } catch {
                throw new SerialsError("ALLOCATION_INVALID", `${file} is not JSON: give the signed list \`idmint serials allocate\` wrote`);
              }
              const now = clockOf(io).now();
              const { allocation } = await openAllocation(doc, pinnedRoot(home, args.root), now);
              const serials = expandSerials(allocation);
              const store = await storeOf(home, io, args);
              let r;
              try {
                r = await store.addAllocation({ allocationId: allocation.allocationId, station: allocation.station, digest: allocationDigest(allocation), serials }, now.toISOString());
              } finally {
                await store.close();
              }
              report(io, args, { allocationId: allocation.allocationId, station: allocation.station, added: r.added, count: r.count }, () => [
                r.added
                  ? `registered ${allocation.allocationId}: ${r.count} serials for station ${allocation.station}`
                  : `${allocation.allocationId} was already registered; nothing changed`,
              ]);
            },
          )
          .demandCommand(1, "name a subcommand: add"),
      )
      .command(
        "conflicts",
        "certificates stations uploaded for serials that already had another one: kept, never published",
        (c) =>
          c
            .option("serial", { type: "string", describe: "only this serial" })
            .option("store", STORE_OPTION)
            .option("db", { type: "string", describe: "the SQLite store (older spelling of --store sqlite:PATH)" })
            .example("$0 directory conflicts --json", "every conflict, with the refused certificates"),
        async (args) => {
          const home = homeOf(args, io);
          const store = await storeOf(home, io, args, true);
          let conflicts;
          try {
            conflicts = await store.conflicts(args.serial);
          } finally {
            await store.close();
          }
          const rows = conflicts.map((c) => ({
            serial: c.serial,
            station: c.station,
            publishedFingerprint: c.heldFingerprint,
            refusedFingerprint: c.fingerprint,
            ledgerIndex: c.ledgerIndex,
            receivedAt: c.receivedAt,
            certificate: new x509.X509Certificate(new Uint8Array(c.der)).toString("pem"),
            checkpoint: c.checkpointNote,
          }));
          report(io, args, { conflicts: rows }, () =>
            rows.length === 0
              ? ["no conflict"]
              : rows.map((r) => `${r.serial}: station ${r.station} uploaded ${r.refusedFingerprint.slice(0, 16)} (ledger entry ${r.ledgerIndex}, ${r.receivedAt}); published is ${r.publishedFingerprint.slice(0, 16)}`),
          );
        },
      )
      .command(directoryMigrateCommand(io))
      .demandCommand(1, "name a subcommand: serve, allocations, conflicts or migrate"),
  );
}
