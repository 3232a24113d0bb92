import type { Argv } from "yargs";
import { existsSync, readFileSync } from "node:fs";
import { CoreError, assertNewOutput, readInputFile, sha256Hex, systemClock, systemRandom, writeFileAtomic, type Home, type IdmintConfig } from "../../core/index.js";
import { withHsm, type Hsm } from "../../hsm/index.js";
import type { Ledger } from "../../ledger/index.js";
import { checkCsr, initCa, issueIdevid, newCertificateSerial, x509, type CeremonyResult } from "../../pki/index.js";
import { withLedger } from "../../station/index.js";
import { clockOf, homeOf, hsmOptions } from "../context.js";
import { report, type GlobalArgs, type Io } from "../io.js";

export function fingerprint(cert: x509.X509Certificate): string {
  return sha256Hex(new Uint8Array(cert.rawData));
}

/** The factory CA as an issuer: its HSM signer and its certificate from HOME/pki. */
export function factoryCaIssuer(hsm: Hsm, home: Home, config: IdmintConfig): { signer: ReturnType<Hsm["signer"]>; certificate: x509.X509Certificate } {
  const path = home.pkiFile("factory-ca");
  if (!existsSync(path)) {
    throw new CoreError("state", "HOME_NOT_INITIALISED", `${path} does not exist: run \`idmint ca init --home ${home.root}\` first`);
  }
  return { signer: hsm.signer(config.keys.factoryCa), certificate: new x509.X509Certificate(readFileSync(path, "utf8")) };
}

/**
 * Checks a unit's CSR and has the factory CA issue its IDevID. The ledger names the
 * signature before the CA key makes it (invariant 2) and records the result after.
 */
export async function issueFromCsr(p: {
  hsm: Hsm;
  ledger: Ledger;
  home: Home;
  config: IdmintConfig;
  csr: string | Uint8Array;
  serial: string;
  commonName?: string;
}): Promise<{ cert: x509.X509Certificate; keyType: string }> {
  const checked = await checkCsr(p.csr, p.serial);
  const issuer = factoryCaIssuer(p.hsm, p.home, p.config);
  const certificateSerial = newCertificateSerial(systemRandom);
  p.ledger.append({ type: "signing.intent", serial: p.serial, keyFingerprint: sha256Hex(checked.publicKeySpki), certificateSerial });
  const cert = await issueIdevid({
    issuer,
    publicKeySpki: checked.publicKeySpki,
    serial: p.serial,
    commonName: p.commonName,
    organization: p.config.profile.organization,
    hwTypeOid: p.config.profile.hwTypeOid,
    clock: systemClock,
    random: systemRandom,
    certificateSerial,
  });
  p.ledger.append({ type: "certificate.issued", serial: p.serial, certificateSerial, certificateFingerprint: sha256Hex(new Uint8Array(cert.rawData)) });
  return { cert, keyType: checked.keyType };
}

export function caCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("ca", "the vendor PKI: key ceremony and one-off IDevIDs", (y) =>
    y
      .command(
        "init",
        "key ceremony: vendor root, factory CA, allocation signer and station keys in their tokens; certificates in HOME/pki/",
        (c) =>
          c
            .option("station", { type: "string", default: "station-1", describe: "id of the station whose key this home holds" })
            .example("$0 ca init --station line-3", "run the ceremony for station line-3"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const { certs, files } = await withHsm(hsmOptions(config, io), (hsm) => initCa(home, config, args.station, hsm));
          report(
            io,
            args,
            {
              station: args.station,
              certificates: Object.fromEntries(
                (Object.keys(files) as Array<keyof CeremonyResult>).map((k) => [k, { path: files[k], subject: certs[k].subject, fingerprint: fingerprint(certs[k]) }]),
              ),
            },
            () => [
              `vendor root        ${files.root}`,
              `factory CA         ${files.factoryCa}`,
              `allocation signer  ${files.allocationSigner}`,
              `station ${args.station.padEnd(10)} ${files.station}`,
              `root fingerprint (SHA-256) ${fingerprint(certs.root)}`,
            ],
          );
        },
      )
      .command(
        "issue",
        "issue one IDevID for a CSR made elsewhere (e.g. by `openssl req -new`)",
        (c) =>
          c
            .option("csr", { type: "string", demandOption: true, describe: "the unit's PKCS#10 CSR, PEM or DER" })
            .option("serial", { type: "string", demandOption: true, describe: "the unit's serial; must equal the CSR's subject serialNumber" })
            .option("out", { type: "string", demandOption: true, describe: "where to write the certificate (must not exist)" })
            .option("cn", { type: "string", describe: "subject CN (default: the serial)" })
            .option("der", { type: "boolean", default: false, describe: "write DER instead of PEM" })
            .example("$0 ca issue --csr unit.csr --serial SN000042 --out SN000042.pem", "issue an IDevID for SN000042"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          assertNewOutput(args.out);
          const csr = readInputFile(args.csr, "CSR file");
          const { cert, keyType } = await withLedger(home, clockOf(io), (ledger) =>
            withHsm(hsmOptions(config, io), (hsm) => issueFromCsr({ hsm, ledger, home, config, csr, serial: args.serial, commonName: args.cn })),
          );
          writeFileAtomic(args.out, args.der ? new Uint8Array(cert.rawData) : cert.toString("pem") + "\n");
          report(io, args, { serial: args.serial, certificateSerial: cert.serialNumber, fingerprint: fingerprint(cert), out: args.out, keyType }, () => [
            `issued IDevID for ${args.serial} (${keyType}), certificate serial ${cert.serialNumber}`,
            `written to ${args.out}`,
          ]);
        },
      )
      .demandCommand(1, "name a subcommand: init or issue"),
  );
}
