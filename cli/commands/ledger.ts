import type { Argv } from "yargs";
import { existsSync } from "node:fs";
import { CoreError, assertNewOutput, openDb, readInputFile, writeOutputFile } from "../../core/index.js";
import { LedgerError, proveEntry, verifyBundle, verifyLedger, writeTiles, type InclusionBundle } from "../../ledger/index.js";
import { PkiError, checkChain, parseCertificate } from "../../pki/index.js";
import { clockOf, homeOf, hsmOptions } from "../context.js";
import { stationIdentity, withLedger } from "../../station/index.js";
import { withHsm } from "../../hsm/index.js";
import { report, type GlobalArgs, type Io } from "../io.js";

const b64 = (h: Uint8Array) => Buffer.from(h).toString("base64");

export function ledgerCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("ledger", "the station's tamper-evident audit ledger (RFC 9162 Merkle log, signed checkpoints)", (y) =>
    y
      .command(
        "verify",
        "recompute the tree from every entry, check every checkpoint's signature and root; name the first fault",
        (c) => c.example("$0 ledger verify --home ./station", "check this station's whole ledger"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const station = stationIdentity(home, config);
          if (!existsSync(home.stationDbPath)) {
            throw new LedgerError("NO_LEDGER", `no ledger at ${home.stationDbPath}: nothing has been issued from this home yet`);
          }
          const db = openDb(home.stationDbPath);
          let r;
          try {
            r = verifyLedger(db, station);
          } finally {
            db.close();
          }
          report(io, args, { ok: true, origin: station.origin, ...r }, () => [
            `ledger of ${station.origin}: ${r.entries} entries, ${r.checkpoints} checkpoints, all verified`,
            r.latestCheckpoint ? `latest checkpoint ${r.latestCheckpoint.id}: size ${r.latestCheckpoint.size}, root ${r.latestCheckpoint.root}` : "no checkpoint yet: run idmint ledger checkpoint",
            ...(r.uncovered > 0 ? [`${r.uncovered} entries after the latest checkpoint are not yet covered by a signature`] : []),
          ]);
        },
      )
      .command(
        "checkpoint",
        "sign a checkpoint (C2SP tlog-checkpoint) over the whole ledger with the station key",
        (c) => c.example("$0 ledger checkpoint --json", "sign and print the new checkpoint"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const station = stationIdentity(home, config);
          const cp = await withLedger(home, clockOf(io), (ledger) => withHsm(hsmOptions(config, io), (hsm) => ledger.checkpoint(hsm.signer(config.keys.station), station.origin)), { mustExist: true });
          report(io, args, { id: cp.id, size: cp.size, root: b64(cp.root), note: cp.note }, () => [`checkpoint ${cp.id}: size ${cp.size}, root ${b64(cp.root)}`, "", cp.note.trimEnd()]);
        },
      )
      .command(
        "tiles",
        "publish the ledger up to its latest checkpoint as C2SP tlog-tiles (hash tiles, entry bundles, checkpoint); only new tiles are written",
        (c) =>
          c
            .option("out", { type: "string", demandOption: true, describe: "the tiles folder (made if missing; a later run adds to it)" })
            .example("$0 ledger tiles --out ./tiles/station-1", "write or bring up to date station-1's tiles"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const station = stationIdentity(home, config);
          const r = await withLedger(
            home,
            clockOf(io),
            (ledger) => {
              const latest = ledger.latestCheckpoint();
              if (!latest) throw new LedgerError("NO_CHECKPOINT", "the ledger has no checkpoint yet: run `idmint ledger checkpoint` first");
              return writeTiles({ outDir: args.out, origin: station.origin, stationSpki: station.spki, checkpointNote: latest.note, bodies: (from, to) => ledger.bodies(from, to) });
            },
            { mustExist: true },
          );
          report(io, args, { out: args.out, origin: station.origin, ...r }, () => [
            r.size === r.previousSize
              ? `tiles in ${args.out} already cover the latest checkpoint (size ${r.size}); nothing written`
              : `tiles of ${station.origin} in ${args.out}: size ${r.previousSize} -> ${r.size}, ${r.fullTiles} full and ${r.partialTiles} partial hash tiles, ${r.bundles} entry bundles written`,
          ]);
        },
      )
      .command(
        "prove",
        "inclusion proof of a unit's certificate-issued entry against the latest checkpoint",
        (c) =>
          c
            .option("serial", { type: "string", demandOption: true, describe: "the unit's serial" })
            .option("out", { type: "string", describe: "write the proof here instead of stdout" })
            .example("$0 ledger prove --serial SN000042 --out SN000042.proof.json", "prove SN000042's certificate is in the ledger"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          if (args.out) assertNewOutput(args.out);
          const station = stationIdentity(home, config);
          const bundle = await withLedger(
            home,
            clockOf(io),
            (ledger) => {
              const index = ledger.findBySerial(args.serial, "certificate.issued");
              if (index === undefined) throw new LedgerError("NO_SUCH_ENTRY", `the ledger has no certificate for serial ${args.serial}: check the serial`);
              return proveEntry(ledger, index, station.origin, station.certificatePem);
            },
            { mustExist: true },
          );
          const text = JSON.stringify(bundle, null, 2) + "\n";
          if (args.out) {
            writeOutputFile(args.out, text);
            report(io, args, { serial: args.serial, index: bundle.index, out: args.out }, () => [`proof of entry ${bundle.index} for ${args.serial} written to ${args.out}`]);
          } else {
            io.out(text);
          }
        },
      )
      .command(
        "verify-proof",
        "check an inclusion proof offline with only the vendor root certificate",
        (c) =>
          c
            .option("proof", { type: "string", demandOption: true, describe: "the proof from `idmint ledger prove`" })
            .option("root", { type: "string", demandOption: true, describe: "the vendor root certificate (root.pem)" })
            .example("$0 ledger verify-proof --proof SN000042.proof.json --root root.pem", "check a unit's proof"),
        async (args) => {
          const root = parseCertificate(readInputFile(args.root, "root certificate"), args.root);
          let bundle: InclusionBundle;
          try {
            bundle = JSON.parse(readInputFile(args.proof, "proof file").toString("utf8")) as InclusionBundle;
          } catch (e) {
            if (e instanceof CoreError) throw e;
            throw new LedgerError("PROOF_UNREADABLE", `${args.proof} is not JSON: give the file \`idmint ledger prove\` wrote`);
          }
          const stationCert = parseCertificate(String(bundle?.stationCertificate ?? ""), "the proof's station certificate");
          await checkChain(stationCert, [], root);
          const stationId = stationCert.subjectName.getField("CN")[0];
          if (!stationId || bundle.origin !== `idmint.station/${stationId}`) {
            throw new PkiError("CHAIN_INVALID", `the proof's log ${bundle.origin} does not belong to station ${stationId ?? "(none)"} named in its certificate`);
          }
          const { entry, checkpoint } = verifyBundle(bundle, new Uint8Array(stationCert.publicKey.rawData));
          report(io, args, { ok: true, origin: bundle.origin, index: entry.index, checkpointSize: checkpoint.size, entry }, () => [
            `entry ${entry.index} (${entry.event.type}${"serial" in entry.event ? ` ${entry.event.serial}` : ""}) is in ${bundle.origin}'s checkpoint of size ${checkpoint.size}, signed by ${stationId} under the given root`,
          ]);
        },
      )
      .demandCommand(1, "name a subcommand: verify, checkpoint, tiles, prove or verify-proof"),
  );
}
