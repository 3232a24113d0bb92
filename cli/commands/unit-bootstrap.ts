import type { Argv } from "yargs";
import { assertFileWithinLimit } from "../../cms/index.js";
import { assertNewOutput, readInputFile, sha256Hex, writeOutputFile, type IdmintConfig } from "../../core/index.js";
import { bootstrapUnit } from "../../device/index.js";
import { clockOf, homeOf, pinnedRoot, unitTokenOf } from "../context.js";
import { report, type GlobalArgs, type Io } from "../io.js";

/** `unit bootstrap`: a simulated unit's RFC 8572 checks of what a bootstrap server gave it. */
export function bootstrapCommand(y: Argv<GlobalArgs>, io: Io): Argv<GlobalArgs> {
  return y.command(
    "bootstrap",
    "device side of SZTP (RFC 8572 §5.4-5.6): simulated unit SERIAL checks an ownership voucher against the vendor root (signature, chain, serial, expiry), the owner certificate against the voucher's pinned-domain-cert, and the owner's signature on the conveyed information, decrypting it first if it is encrypted to the unit's IDevID; every refusal exits 6 with its reason",
    (c) =>
      c
        .option("serial", { type: "string", demandOption: true, describe: "the unit, as kept in HOME/units/units.db by `station run --sim` or `unit sim`" })
        .option("voucher", { type: "string", demandOption: true, describe: "the ownership voucher (CMS, DER or PEM)" })
        .option("owner-cert", { type: "string", demandOption: true, describe: "the owner certificate (PEM or DER)" })
        .option("info", { type: "string", demandOption: true, describe: "the conveyed information: signed by the owner (openssl cms -sign), possibly then encrypted to the unit (openssl cms -encrypt), or plain JSON" })
        .option("root", { type: "string", describe: "the vendor root the unit trusts (default HOME/pki/root.pem, as `unit sim`)" })
        .option("require-signed", { type: "boolean", default: false, describe: "refuse conveyed information the owner did not sign (exit 6)" })
        .option("out", { type: "string", describe: "where to write the conveyed information, mode 0600 (must not exist)" })
        .option("pkcs11-token", { type: "string", describe: "for a unit whose key is in a token: the token, as a PKCS#11 URI with pin-source (default: simulator.unitTokenUri of the home)" })
        .option("pkcs11-module", { type: "string", describe: "for a unit whose key is in a token: the PKCS#11 module (default: hsm.module of the home, else SoftHSM2)" })
        .example("$0 unit bootstrap --serial SN000042 --voucher SN000042.vcj --owner-cert owner.pem --info info.cms --require-signed --out onboarding.json", "SN000042 accepts its owner and its onboarding information, or says why not"),
    async (args) => {
      const home = homeOf(args, io);
      if (args.out !== undefined) assertNewOutput(args.out);
      assertFileWithinLimit("encrypted", args.info, "the conveyed information");
      const config: IdmintConfig | undefined = home.hasConfig() ? home.readConfig() : undefined;
      const r = await bootstrapUnit({
        unitsDir: home.unitsDir,
        serial: args.serial,
        voucher: readInputFile(args.voucher, "the ownership voucher"),
        ownerCert: readInputFile(args["owner-cert"], "the owner certificate"),
        info: readInputFile(args.info, "the conveyed information"),
        root: pinnedRoot(home, args.root),
        at: clockOf(io).now(),
        requireSigned: args["require-signed"],
        token: unitTokenOf(args, config, io),
      });
      if (args.out !== undefined) writeOutputFile(args.out, r.conveyedInformation, 0o600);
      const v = r.voucher.voucher;
      report(
        io,
        args,
        {
          serial: r.serial,
          accepted: true,
          voucher: { assertion: v.assertion, createdOn: v.createdOn, expiresOn: v.expiresOn, masa: r.voucher.masa.subject },
          owner: { subject: r.owner.subject, fingerprint: sha256Hex(new Uint8Array(r.owner.rawData)) },
          conveyedInformation: { encrypted: r.encrypted, signed: r.signed, format: r.format, bytes: r.conveyedInformation.byteLength, out: args.out },
        },
        () => [
          `${r.serial}: voucher verified (signed by ${r.voucher.masa.subject}, assertion ${v.assertion}${v.expiresOn ? `, expires ${v.expiresOn}` : ""})`,
          `owner ${r.owner.subject} is pinned by the voucher`,
          `conveyed information: ${r.signed ? "signed by the owner" : "unsigned"}, ${r.encrypted ? "decrypted with the unit's key" : "not encrypted"}, ${r.conveyedInformation.byteLength} bytes${args.out ? `, written to ${args.out}` : ""}`,
        ],
      );
    },
  );
}
