import type { Argv } from "yargs";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CoreError, Home, openDb, writeFileAtomic } from "../../core/index.js";
import { verifyLedger } from "../../ledger/index.js";
import { initEmbeddedHsm } from "../../hsm/index.js";
import { x509 } from "../../pki/index.js";
import { SoftwareUnit } from "../../units/index.js";
import { stationIdentity, withHsm, withLedger } from "../context.js";
import { report, type GlobalArgs, type Io } from "../io.js";
import { fingerprint, initCa, issueFromCsr } from "./ca.js";

/** Marks a directory as the demo's own, so a rerun may wipe it and nothing else. */
const MARKER = ".idmint-demo";

function prepareDemoHome(dir: string): Home {
  if (existsSync(dir)) {
    if (!existsSync(join(dir, MARKER)) && readdirSync(dir).length > 0) {
      throw new CoreError("state", "FILE_EXISTS", `${dir} exists and is not a demo home: pass --home with a new or empty directory`);
    }
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, MARKER), "made by idmint demo; rerunning the demo replaces this directory\n");
  return new Home(dir);
}

export function demoCommand(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command(
    "demo",
    "the whole story on the embedded default: SoftHSM tokens, the CA ceremony, sample IDevIDs and their signed ledger",
    (c) =>
      c
        .option("units", { type: "number", default: 5, describe: "how many sample units to provision" })
        .example("$0 demo --home ./demo", "run the demo in ./demo (replaced on every run)"),
    async (args) => {
      const dir = args.home ?? io.env.IDMINT_HOME ?? ".idmint-demo";
      if (!Number.isInteger(args.units) || args.units < 1 || args.units > 10_000) {
        throw new CoreError("usage", "CONFIG_INVALID", `--units ${args.units} is out of range: give a whole number from 1 to 10000`);
      }
      const home = prepareDemoHome(dir);
      const started = Date.now();
      initEmbeddedHsm(home, { organization: "Example Vendor" });
      const config = home.readConfig();
      const { certs } = await initCa(home, config, "station-1", io);
      const ready = home.readConfig();
      const { out: units, checkpoint, station } = await withLedger(home, (ledger) => withHsm(ready, io, async (hsm) => {
        const out: Array<{ serial: string; certificateSerial: string; fingerprint: string; path: string; chainVerified: boolean }> = [];
        for (let i = 1; i <= args.units; i++) {
          const serial = `SN${String(i).padStart(6, "0")}`;
          const unit = await SoftwareUnit.create(serial, "Demo Router");
          const { cert } = await issueFromCsr({ hsm, ledger, home, config: ready, csr: await unit.csr(), serial });
          const chain = await new x509.X509ChainBuilder({ certificates: [certs.factoryCa, certs.root] }).build(cert);
          const chainVerified = chain.length === 3 && (await cert.verify({ publicKey: certs.factoryCa, signatureOnly: true }));
          const path = join(home.certsDir, `${serial}.pem`);
          writeFileAtomic(path, cert.toString("pem") + "\n");
          out.push({ serial, certificateSerial: cert.serialNumber, fingerprint: fingerprint(cert), path, chainVerified });
          if (!args.json) io.err(`provisioned ${serial}\n`);
        }
        const station = stationIdentity(home, ready);
        const checkpoint = await ledger.checkpoint(hsm.signer(ready.keys.station), station.origin);
        return { out, checkpoint, station };
      }));
      const db = openDb(home.stationDbPath);
      let ledgerReport;
      try {
        ledgerReport = verifyLedger(db, station);
      } finally {
        db.close();
      }
      const seconds = (Date.now() - started) / 1000;
      report(io, args, { home: home.root, root: home.pkiFile("root"), units, ledger: ledgerReport, seconds }, () => [
        "",
        `idmint demo: ${units.length} units provisioned in ${seconds.toFixed(1)} s on the embedded default (SoftHSM2 in ${home.hsmDir})`,
        `  vendor root      ${home.pkiFile("root")}`,
        `  factory CA       ${home.pkiFile("factory-ca")}`,
        `  IDevIDs          ${home.certsDir}/SN*.pem  (chain verified: ${units.filter((u) => u.chainVerified).length}/${units.length})`,
        `  ledger           ${ledgerReport.entries} entries, checkpoint ${checkpoint.id} signed by ${station.origin}, verified`,
        `  check one:       openssl verify -CAfile ${home.pkiFile("root")} -untrusted ${home.pkiFile("factory-ca")} ${units[0]!.path}`,
      ]);
    },
  );
}
