import type { Argv } from "yargs";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { CoreError, systemClock, systemRandom, writeFileAtomic, writeNewFiles, type KeyRole } from "../../core/index.js";
import { PkiError, assertStationId, checkCsr, issueIdevid, runCeremony, x509 } from "../../pki/index.js";
import { homeOf, readInputFile, withHsm } from "../context.js";
import { report, type GlobalArgs, type Io } from "../io.js";

function fingerprint(cert: x509.X509Certificate): string {
  return createHash("sha256").update(Buffer.from(cert.rawData)).digest("hex");
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
          assertStationId(args.station);
          const files = { root: home.pkiFile("root"), factoryCa: home.pkiFile("factory-ca"), allocationSigner: home.pkiFile("allocation-signer"), station: home.pkiFile("station") };
          const present = Object.values(files).filter((f) => existsSync(f));
          if (present.length > 0) {
            throw new PkiError("state", "CA_EXISTS", `the CA of ${home.root} already exists (${present[0]}): a second ceremony would replace the vendor root; use a new --home to start over`);
          }
          const result = await withHsm(config, io, async (hsm) => {
            const keys = {
              create: (role: KeyRole, alg: Parameters<typeof hsm.createKey>[1]) => hsm.createKey(config.keys[role], alg),
              destroy: (role: KeyRole) => hsm.destroyKey(config.keys[role]),
            };
            const certs = await runCeremony({ keys, organization: config.profile.organization, stationId: args.station, clock: systemClock, random: systemRandom });
            try {
              writeNewFiles((Object.keys(files) as Array<keyof typeof files>).map((k) => ({ path: files[k], data: certs[k].toString("pem") + "\n" })));
              home.writeConfig({ ...config, station: { id: args.station } });
            } catch (e) {
              for (const role of ["station", "allocationSigner", "factoryCa", "root"] as const) keys.destroy(role);
              throw new CoreError("state", "FILE_EXISTS", `cannot write the CA certificates to ${home.pkiDir} (${(e as Error).message}); the new keys were removed again`, { cause: e });
            }
            return certs;
          });
          report(
            io,
            args,
            {
              station: args.station,
              certificates: Object.fromEntries(Object.entries(files).map(([k, path]) => [k, { path, subject: result[k as keyof typeof files].subject, fingerprint: fingerprint(result[k as keyof typeof files]) }])),
            },
            () => [
              `vendor root     ${files.root}`,
              `factory CA      ${files.factoryCa}`,
              `allocation key  ${files.allocationSigner}`,
              `station ${args.station.padEnd(8)} ${files.station}`,
              `root fingerprint (SHA-256) ${fingerprint(result.root)}`,
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
          if (existsSync(args.out)) {
            throw new CoreError("input", "FILE_EXISTS", `--out ${args.out} already exists: choose another path or remove it`);
          }
          const csr = await checkCsr(readInputFile(args.csr, "CSR file"), args.serial);
          const caCert = new x509.X509Certificate(readInputFile(home.pkiFile("factory-ca"), "factory CA certificate").toString("utf8"));
          const cert = await withHsm(config, io, async (hsm) =>
            issueIdevid({
              issuer: { signer: hsm.signer(config.keys.factoryCa), certificate: caCert },
              publicKeySpki: csr.publicKeySpki,
              serial: args.serial,
              commonName: args.cn,
              organization: config.profile.organization,
              hwTypeOid: config.profile.hwTypeOid,
              clock: systemClock,
              random: systemRandom,
            }),
          );
          writeFileAtomic(args.out, args.der ? new Uint8Array(cert.rawData) : cert.toString("pem") + "\n");
          report(io, args, { serial: args.serial, certificateSerial: cert.serialNumber, fingerprint: fingerprint(cert), out: args.out, keyType: csr.keyType }, () => [
            `issued IDevID for ${args.serial} (${csr.keyType}), certificate serial ${cert.serialNumber}`,
            `written to ${args.out}`,
          ]);
        },
      )
      .demandCommand(1, "name a subcommand: init or issue"),
  );
}
