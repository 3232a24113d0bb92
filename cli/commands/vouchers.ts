import type { Argv } from "yargs";
import { mkdirSync, rmSync } from "node:fs";
import { VOUCHER_ASSERTIONS, cmsPem, openVoucher, type VoucherAssertion } from "../../cms/index.js";
import { CoreError, assertNewOutput, readInputFile, sha256Hex, systemRandom, writeOutputFile } from "../../core/index.js";
import { withHsm } from "../../hsm/index.js";
import { parseCertificate } from "../../pki/index.js";
import { provisionedUnits, withStation } from "../../station/index.js";
import { issueVouchers, masaOf, sztpdRunning, unitsFor, writeVoucherFiles, type IssuedVoucher } from "../../vouchers/index.js";
import { clockOf, homeOf, hsmOptions, pinnedRoot } from "../context.js";
import { report, type GlobalArgs, type Io } from "../io.js";

function timeOption(value: string | undefined, option: string): Date | undefined {
  if (value === undefined) return undefined;
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) throw new CoreError("OPTION_INVALID", `${option} ${value} is not an ISO 8601 time, e.g. 2027-06-30T00:00:00Z`);
  return at;
}

/** Where an order's vouchers go: a new directory, removed again if the issue fails. */
function orderDirectory(dir: string): { write: (v: IssuedVoucher[], pem: boolean) => Promise<void>; abandon: () => void } {
  assertNewOutput(dir);
  mkdirSync(dir, { recursive: true });
  return {
    write: (vouchers, pem) => writeVoucherFiles(dir, vouchers, (der) => (pem ? cmsPem(der) : der)),
    abandon: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function vouchersCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("vouchers", "the vendor as MASA: RFC 8366 ownership vouchers for provisioned units, signed in the HSM", (y) =>
    y
      .command(
        "issue",
        "sign an RFC 8366 voucher (CMS SignedData, id-ct-animaJSONVoucher) for one provisioned unit, or for every provisioned unit of an order, pinning the owner's certificate; each voucher is recorded in the ledger",
        (c) =>
          c
            .option("serial", { type: "string", describe: "one unit this home provisioned" })
            .option("order", { type: "string", describe: "every provisioned unit of this order (one voucher each, SERIAL.vcj in --out)" })
            .option("owner-cert", { type: "string", demandOption: true, describe: "the owner's certificate (PEM or DER), pinned as pinned-domain-cert: its end-entity certificate or the CA that issues it" })
            .option("expires-on", { type: "string", describe: "ISO 8601 time after which units refuse the voucher" })
            .option("nonce", { type: "string", describe: "base64 nonce from the unit's voucher request (instead of --expires-on)" })
            .option("assertion", { choices: VOUCHER_ASSERTIONS, default: "verified" as VoucherAssertion, describe: "what the vendor asserts about the owner (RFC 8366 §5.3)" })
            .option("pem", { type: "boolean", default: false, describe: "write PEM (-----BEGIN CMS-----) instead of DER" })
            .option("out", { type: "string", demandOption: true, describe: "the voucher file (with --serial) or a new directory (with --order); must not exist" })
            .check((a) => {
              if ((a.serial === undefined) === (a.order === undefined)) throw new CoreError("OPTION_INVALID", "give --serial for one unit or --order for every unit of an order, not both");
              return true;
            })
            .example("$0 vouchers issue --serial SN000042 --owner-cert owner.pem --expires-on 2027-06-30T00:00:00Z --out SN000042.vcj", "a voucher for SN000042, valid until mid-2027")
            .example("$0 vouchers issue --order PO-1 --owner-cert owner-ca.pem --out po1-vouchers", "one voucher per provisioned unit of PO-1"),
        async (args) => {
          const home = homeOf(args, io);
          const config = home.readConfig();
          const clock = clockOf(io);
          const masa = masaOf(home, config);
          const ownerCert = parseCertificate(readInputFile(args["owner-cert"], "the owner certificate"), args["owner-cert"]);
          const factoryCa = parseCertificate(readInputFile(home.pkiFile("factory-ca"), "the factory CA certificate"), home.pkiFile("factory-ca"));
          const target = args.serial !== undefined ? { serial: args.serial } : { order: args.order! };
          const request = { target, ownerCert, assertion: args.assertion, expiresOn: timeOption(args["expires-on"], "--expires-on"), nonce: args.nonce };
          assertNewOutput(args.out);
          const out = "order" in target ? orderDirectory(args.out) : undefined;
          const fingerprints: Array<{ serial: string; fingerprint: string }> = [];
          try {
            await withStation(home, clock, async (stores) => {
              const units = unitsFor(provisionedUnits(stores, clock), target);
              await withHsm(hsmOptions(config, io), (hsm) =>
                issueVouchers({
                  units,
                  request,
                  masa: { signer: hsm.signer(masa.keyUri), certificate: masa.certificate },
                  factoryCa,
                  ledger: stores.ledger,
                  clock,
                  handOver: (vouchers) => {
                    for (const v of vouchers) fingerprints.push({ serial: v.serial, fingerprint: v.fingerprint });
                    if (out) return out.write(vouchers, args.pem);
                    writeOutputFile(args.out, args.pem ? cmsPem(vouchers[0]!.der) : vouchers[0]!.der);
                  },
                }),
              );
            });
          } catch (e) {
            out?.abandon();
            throw e;
          }
          report(io, args, { issued: fingerprints.length, out: args.out, owner: ownerCert.subject, ownerFingerprint: sha256Hex(new Uint8Array(ownerCert.rawData)), vouchers: fingerprints }, () => [
            `issued ${fingerprints.length} voucher${fingerprints.length === 1 ? "" : "s"} pinning ${ownerCert.subject}, each recorded in the ledger`,
            `written to ${args.out}`,
          ]);
        },
      )
      .command(
        "verify <file>",
        "check a voucher as a unit would: its signature, its signer's chain to the vendor root, its RFC 8366 content, and (with --serial) that it names that unit and has not expired",
        (c) =>
          c
            .positional("file", { type: "string", demandOption: true, describe: "the voucher, DER or PEM (e.g. from `vouchers issue` or `openssl cms -sign`)" })
            .option("root", { type: "string", demandOption: true, describe: "the vendor root certificate, PEM or DER" })
            .option("serial", { type: "string", describe: "the unit the voucher must be for" })
            .example("$0 vouchers verify SN000042.vcj --root root.pem --serial SN000042", "is this SN000042's voucher, from this vendor?"),
        async (args) => {
          const root = pinnedRoot(homeOf(args, io), args.root);
          const bytes = readInputFile(args.file, "the voucher");
          const { voucher, masa, pinnedDomainCert } = await openVoucher(bytes, { root, at: clockOf(io).now(), serial: args.serial, what: `the voucher ${args.file}` });
          report(io, args, { ok: true, voucher, masa: masa.subject, pinnedDomainCert: { subject: pinnedDomainCert.subject, fingerprint: sha256Hex(new Uint8Array(pinnedDomainCert.rawData)) } }, () => [
            `voucher for ${voucher.serialNumber} verified: signed by ${masa.subject}, which chains to the vendor root`,
            `owner ${pinnedDomainCert.subject}, assertion ${voucher.assertion}, created ${voucher.createdOn}${voucher.expiresOn ? `, expires ${voucher.expiresOn}` : ", no expiry"}`,
          ]);
        },
      )
      .demandCommand(1, "name a subcommand: issue or verify"),
  );
}

export function exportCommands(yargs: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return yargs.command("export", "inventories for other systems", (y) =>
    y
      .command(
        "sztpd",
        "an order's provisioned units and the vendor's CA chain as sztpd's running datastore (wn-sztpd-1 devices and device types, an ietf-truststore bag), for an owner to PUT to /restconf/ds/ietf-datastores:running (docs/sztp.md)",
        (c) =>
          c
            .option("order", { type: "string", demandOption: true, describe: "the order whose provisioned units to export" })
            .option("out", { type: "string", demandOption: true, describe: "the JSON document, mode 0600: it holds each device's activation code (must not exist)" })
            .example("$0 export sztpd --order PO-1 --out po1-sztpd.json", "PO-1's units for the owner's sztpd"),
        async (args) => {
          const home = homeOf(args, io);
          const clock = clockOf(io);
          assertNewOutput(args.out);
          const chain = [home.pkiFile("factory-ca"), home.pkiFile("root")].map((p) => parseCertificate(readInputFile(p, "the vendor CA certificate"), p));
          const units = await withStation(home, clock, (stores) => unitsFor(provisionedUnits(stores, clock), { order: args.order }));
          const r = sztpdRunning(units, chain, systemRandom);
          writeOutputFile(args.out, JSON.stringify(r.document, null, 2) + "\n", 0o600);
          report(io, args, { order: args.order, devices: r.devices, deviceTypes: r.deviceTypes, out: args.out }, () => [
            `${r.devices} devices of order ${args.order} (device types ${r.deviceTypes.join(", ")}) for sztpd, trusting the factory CA and vendor root`,
            `written to ${args.out} (0600: it holds activation codes); load it with the PUT in docs/sztp.md`,
          ]);
        },
      )
      .demandCommand(1, "name a subcommand: sztpd"),
  );
}
