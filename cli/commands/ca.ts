import type { Argv } from "yargs";
import { CoreError, readInputFile, sha256Hex, systemRandom, withClaimedOutputs } from "../../core/index.js";
import { withHsm } from "../../hsm/index.js";
import { addMasa, initCa, x509, type CeremonyResult } from "../../pki/index.js";
import { issueFromCsr, withStation } from "../../station/index.js";
import { defaultMasaKeyUri } from "../../vouchers/index.js";
import { clockOf, homeOf, hsmOptions } from "../context.js";
import { report, type GlobalArgs, type Io } from "../io.js";

function fingerprint(cert: x509.X509Certificate): string {
  return sha256Hex(new Uint8Array(cert.rawData));
}

export function caCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("ca", "the vendor PKI: key ceremony and one-off IDevIDs", (y) =>
    y
      .command(
        "init",
        "key ceremony: vendor root, factory CA, allocation signer, station and MASA (voucher) keys in their tokens; certificates in HOME/pki/",
        (c) =>
          c
            .option("station", { type: "string", default: "station-1", describe: "id of the station whose key this home holds" })
            .example("$0 ca init --station line-3", "run the ceremony for station line-3"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const { certs, files, masa } = await withHsm(hsmOptions(config, io), (hsm) => initCa(home, config, args.station, hsm, defaultMasaKeyUri(config)));
          report(
            io,
            args,
            {
              station: args.station,
              certificates: Object.fromEntries(
                [
                  ...(Object.keys(files) as Array<keyof CeremonyResult>).map((k) => [k, { path: files[k], subject: certs[k].subject, fingerprint: fingerprint(certs[k]) }]),
                  ...(masa ? [["masa", { path: masa.file, subject: masa.certificate.subject, fingerprint: fingerprint(masa.certificate) }]] : []),
                ],
              ),
            },
            () => [
              `vendor root        ${files.root}`,
              `factory CA         ${files.factoryCa}`,
              `allocation signer  ${files.allocationSigner}`,
              `station ${args.station.padEnd(10)} ${files.station}`,
              ...(masa ? [`MASA (vouchers)    ${masa.file}`] : []),
              `root fingerprint (SHA-256) ${fingerprint(certs.root)}`,
            ],
          );
        },
      )
      .command(
        "issue",
        "issue one IDevID for a CSR made elsewhere (e.g. by `openssl req -new`), for a serial of an imported allocation",
        (c) =>
          c
            .option("csr", { type: "string", demandOption: true, describe: "the unit's PKCS#10 CSR, PEM or DER" })
            .option("serial", { type: "string", demandOption: true, describe: "the unit's serial; must equal the CSR's subject serialNumber, be in an imported allocation and be unused" })
            .option("out", { type: "string", demandOption: true, describe: "where to write the certificate (must not exist; claimed before anything is signed)" })
            .option("cn", { type: "string", describe: "subject CN (default: the serial)" })
            .option("der", { type: "boolean", default: false, describe: "write DER instead of PEM" })
            .option("outside-allocation", { type: "boolean", default: false, describe: "a lab unit: a serial in no allocation, declared in the ledger and reported by `serials reconcile`" })
            .option("reason", { type: "string", describe: "why the unit is outside every allocation (with --outside-allocation)" })
            .example("$0 ca issue --csr unit.csr --serial SN000042 --out SN000042.pem", "issue an IDevID for SN000042 (imported with `serials import`)")
            .example('$0 ca issue --csr lab.csr --serial LAB0001 --out LAB0001.pem --outside-allocation --reason "EMC test sample"', "a lab unit outside every allocation"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const clock = clockOf(io);
          if (args.outsideAllocation !== (args.reason !== undefined)) {
            throw new CoreError("OPTION_INVALID", "--outside-allocation and --reason go together: a lab unit needs both, a unit of an allocation neither");
          }
          const { certificate: cert, keyType } = await withClaimedOutputs([["--out", args.out]], ([out]) => {
            const csr = readInputFile(args.csr, "CSR file");
            return withStation(home, clock, (stores) =>
              withHsm(hsmOptions(config, io), (hsm) =>
                issueFromCsr({
                  stores,
                  hsm,
                  home,
                  config,
                  clock,
                  random: systemRandom,
                  csr,
                  serial: args.serial,
                  commonName: args.cn,
                  outsideAllocation: args.reason === undefined ? undefined : { reason: args.reason },
                  handOver: (issued) => out.write(args.der ? issued.der : issued.pem + "\n"),
                }),
              ),
            );
          });
          report(io, args, { serial: args.serial, certificateSerial: cert.serialNumber, fingerprint: fingerprint(cert), out: args.out, keyType }, () => [
            `issued IDevID for ${args.serial} (${keyType}), certificate serial ${cert.serialNumber}${args.outsideAllocation ? ", outside every allocation" : ""}`,
            `written to ${args.out}`,
          ]);
        },
      )
      .command(
        "masa",
        "add the MASA role to a home whose ceremony ran before vouchers: a voucher-signing key in the HSM and its certificate from the vendor root (HOME/pki/masa.pem)",
        (c) =>
          c
            .option("key", { type: "string", describe: "PKCS#11 URI (with pin-source) of the key to make; default: object masa-key in the allocation signer's token" })
            .example("$0 ca masa", "make the MASA key beside the allocation signer's and certify it"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const keyUri = args.key ?? defaultMasaKeyUri(config);
          const { certificate, file } = await withHsm(hsmOptions(config, io), (hsm) => addMasa(home, config, keyUri, hsm));
          report(io, args, { path: file, subject: certificate.subject, fingerprint: fingerprint(certificate), key: keyUri.split("?")[0] }, () => [
            `MASA (vouchers)    ${file}`,
            `key                ${keyUri.split("?")[0]}`,
          ]);
        },
      )
      .demandCommand(1, "name a subcommand: init, issue or masa"),
  );
}
