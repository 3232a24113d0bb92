import type { Argv } from "yargs";
import { assertFileWithinLimit, cmsPem, encryptToCertificate } from "../../cms/index.js";
import { CoreError, assertNewOutput, readInputFile, writeOutputFile } from "../../core/index.js";
import { OperatorError, fetchDeviceCertificate, parseCertificates } from "../../operator/index.js";
import { parseCertificate } from "../../pki/index.js";
import { clockOf } from "../context.js";
import { report, type GlobalArgs, type Io } from "../io.js";

/** The SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it. */
function opensslFingerprint(hex: string): string {
  return hex.toUpperCase().replace(/(..)(?!$)/g, "$1:");
}

export function operatorCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("operator", "the operator's side of RFC 8886: fetch a device's IDevID from the directory, check it, encrypt its configuration to it", (y) =>
    y
      .command(
        "fetch",
        "fetch a device certificate by serial from the directory and check it: chain to the pinned vendor root, subject serialNumber and hardwareModuleName = serial, no expiry, keyUsage; prints its SHA-256 fingerprint",
        (c) =>
          c
            .option("directory", { type: "string", demandOption: true, describe: "the directory's URL, http(s)://host[:port]" })
            .option("serial", { type: "string", demandOption: true, describe: "the device's serial number (as on its label)" })
            .option("root", { type: "string", demandOption: true, describe: "the vendor root certificate you pinned (PEM or DER), obtained out of band" })
            .option("chain", {
              type: "string",
              array: true,
              describe: "the vendor's factory CA certificate(s), PEM: checked against --root, used to reach it (the directory serves only the device certificate)",
            })
            .option("out", { type: "string", demandOption: true, describe: "where to write the checked device certificate, PEM (must not exist)" })
            .option("timeout-ms", { type: "number", default: 30_000, describe: "how long the directory may take to answer" })
            .example("$0 operator fetch --directory https://directory.example --serial SN000042 --root vendor-root.pem --chain factory-ca.pem --out SN000042.pem", "fetch and check SN000042's IDevID"),
        async (args) => {
          const timeoutMs = args["timeout-ms"];
          if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new CoreError("OPTION_INVALID", "--timeout-ms must be a whole number of milliseconds");
          assertNewOutput(args.out);
          const root = parseCertificate(readInputFile(args.root, "the vendor root certificate"), args.root);
          const chain = (args.chain ?? []).flatMap((p) => parseCertificates(readInputFile(String(p), "the CA certificate file"), String(p)));
          const device = await fetchDeviceCertificate({ directory: args.directory, serial: args.serial, root, chain, clock: clockOf(io), client: { timeoutMs } });
          writeOutputFile(args.out, device.pem);
          report(
            io,
            args,
            {
              serial: device.serial,
              fingerprint: device.fingerprint,
              out: args.out,
              subject: device.subject,
              issuer: device.issuer,
              certificateSerial: device.certificateSerial,
              key: device.key,
              keyUsage: device.keyUsage,
              hwType: device.hwType,
              path: device.path,
              directory: args.directory,
            },
            () => [
              `${device.serial}: IDevID checked (chains to ${device.path[device.path.length - 1]} via ${device.path[1]}; serialNumber and hardwareModuleName ${device.serial}; no expiry; ${device.key}, keyUsage ${device.keyUsage.join(", ")})`,
              `SHA-256 fingerprint ${opensslFingerprint(device.fingerprint)}`,
              `written to ${args.out}`,
            ],
          );
        },
      )
      .command(
        "encrypt",
        "encrypt a configuration (at most 8 MiB) to a device certificate as CMS EnvelopedData that `openssl cms -decrypt` reads: ECDH (SHA-256 KDF, AES-256 key wrap) for EC keys, RSA-OAEP (SHA-256) for RSA keys, AES-256-CBC content; with --aead, AuthEnvelopedData with AES-256-GCM",
        (c) =>
          c
            .option("cert", { type: "string", demandOption: true, describe: "the device certificate (PEM or DER), e.g. from `idmint operator fetch`" })
            .option("in", { type: "string", demandOption: true, describe: "the configuration to encrypt" })
            .option("out", { type: "string", demandOption: true, describe: "where to write the CMS (must not exist)" })
            .option("pem", { type: "boolean", default: false, describe: "write PEM (-----BEGIN CMS-----) instead of DER" })
            .option("aead", {
              type: "boolean",
              default: false,
              describe: "write CMS AuthEnvelopedData (RFC 5083) with AES-256-GCM, so the unit refuses any change (`unit decrypt --require-authenticated`); OpenSSL 3.0 reads it. Plain EnvelopedData stays the default for RFC 8886 interop",
            })
            .example("$0 operator encrypt --cert SN000042.pem --in router.cfg --out SN000042.cfg.cms", "encrypt router.cfg so only unit SN000042 can read it")
            .example("$0 operator encrypt --cert SN000042.pem --in router.cfg --out SN000042.cfg.pem --pem", "the same, as PEM")
            .example("$0 operator encrypt --cert SN000042.pem --in router.cfg --out SN000042.cfg.cms --aead", "the same with integrity: AuthEnvelopedData, AES-256-GCM"),
        (args) => {
          assertNewOutput(args.out);
          const cert = parseCertificate(readInputFile(args.cert, "the device certificate"), args.cert);
          assertFileWithinLimit("configuration", args.in, "the configuration");
          const content = readInputFile(args.in, "the configuration");
          const r = encryptToCertificate(cert, content, undefined, { aead: args.aead });
          const data = args.pem ? cmsPem(r.der) : r.der;
          writeOutputFile(args.out, data);
          report(
            io,
            args,
            {
              out: args.out,
              format: args.pem ? "pem" : "der",
              bytes: content.byteLength,
              recipient: r.recipient,
              keyEncryption: r.keyEncryption,
              keyWrap: r.keyWrap,
              contentType: r.contentType,
              contentEncryption: r.contentEncryption,
            },
            () => [
              `encrypted ${content.byteLength} bytes to ${r.recipient.serialNumber ?? r.recipient.subject} (${r.recipient.key}; ${r.keyEncryption}${r.keyWrap ? `, ${r.keyWrap}` : ""}, ${r.contentEncryption})`,
              `written to ${args.out} (${args.pem ? "PEM" : "DER"})`,
            ],
          );
        },
      )
      .demandCommand(1, "name a subcommand: fetch or encrypt"),
  );
}
