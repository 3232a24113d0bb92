import { isSignedData, openSignedData, openVoucher, unframe, type OpenedVoucher } from "../cms/index.js";
import { assertSerialSyntax, checkChain, parseCertificate, PkiError, x509 } from "../pki/index.js";
import { decryptForUnit, type UnitDecryptOptions } from "./decrypt.js";
import { DeviceError } from "./errors.js";
import { readUnitRecord } from "./store.js";

/** RFC 8572 §8.3: id-ct-sztpConveyedInfoXML and id-ct-sztpConveyedInfoJSON. */
const CONVEYED_INFO_TYPES: Record<string, "xml" | "json"> = { "1.2.840.113549.1.9.16.1.42": "xml", "1.2.840.113549.1.9.16.1.43": "json" };

export interface BootstrapOptions {
  unitsDir: string;
  serial: string;
  voucher: Uint8Array;
  ownerCert: Uint8Array;
  info: Uint8Array;
  /** The vendor root the unit trusts. */
  root: x509.X509Certificate;
  at: Date;
  /** Refuse conveyed information the owner did not sign (RFC 8572 §5.4 for a unit that needs it). */
  requireSigned?: boolean;
  token?: UnitDecryptOptions["token"];
}

export interface BootstrapResult {
  serial: string;
  voucher: OpenedVoucher;
  owner: x509.X509Certificate;
  encrypted: boolean;
  signed: boolean;
  /** "json" or "xml" when the signature said so. */
  format?: "json" | "xml";
  conveyedInformation: Uint8Array;
}

/** The owner certificate is the pinned-domain-cert, or is issued under it (RFC 8572 §5.6). */
async function assertPinned(owner: x509.X509Certificate, pinned: x509.X509Certificate, at: Date): Promise<void> {
  if (Buffer.from(owner.rawData).equals(Buffer.from(pinned.rawData))) return;
  try {
    await checkChain(owner, [], pinned, at);
  } catch (e) {
    if (!(e instanceof PkiError)) throw e;
    throw new DeviceError("OWNER_NOT_PINNED", `the owner certificate (${owner.subject}) is not the voucher's pinned-domain-cert nor issued under it: refuse this owner`, { cause: e });
  }
}

/**
 * What RFC 8572 §5.4-5.6 asks of a unit given an ownership voucher, an owner certificate and
 * conveyed information: the voucher verified against the vendor root (signature, chain,
 * serial, expiry, idevid-issuer), the owner certificate against its pinned-domain-cert, the
 * conveyed information decrypted with the unit's own key if encrypted to it (RFC 8886) and
 * its signature verified with the owner's key. Each refusal is one error naming the reason.
 */
export async function bootstrapUnit(o: BootstrapOptions): Promise<BootstrapResult> {
  assertSerialSyntax(o.serial);
  const unit = readUnitRecord(o.unitsDir, o.serial);
  if (!unit?.certificate) throw new DeviceError("UNIT_NOT_READY", `unit ${o.serial} has no IDevID in ${o.unitsDir}: provision it first (idmint station run)`);
  const voucher = await openVoucher(o.voucher, { root: o.root, at: o.at, serial: o.serial, what: "the ownership voucher" });
  if (voucher.voucher.idevidIssuer !== undefined) {
    const aki = parseCertificate(unit.certificate, `unit ${o.serial}'s certificate`).getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
    if (aki === undefined || Buffer.from(aki, "hex").toString("base64") !== voucher.voucher.idevidIssuer) {
      throw new DeviceError("VOUCHER_NOT_FOR_UNIT", `the ownership voucher names another IDevID issuer than unit ${o.serial}'s: refuse it`);
    }
  }
  const owner = parseCertificate(o.ownerCert, "the owner certificate");
  await assertPinned(owner, voucher.pinnedDomainCert, o.at);

  let encrypted = false;
  let payload = o.info;
  const framed = unframe(o.info);
  if (!(framed && isSignedData(framed.der))) {
    const opened = decryptForUnit({ unitsDir: o.unitsDir, serial: o.serial, input: o.info, token: o.token });
    encrypted = opened.result.encrypted;
    payload = opened.result.plaintext;
  }
  const inner = unframe(payload);
  if (!(inner && isSignedData(inner.der))) {
    if (o.requireSigned) throw new DeviceError("INFO_UNSIGNED", "the conveyed information is not signed by the owner, and --require-signed refuses unsigned information: ask the owner to sign it");
    return { serial: o.serial, voucher, owner, encrypted, signed: false, conveyedInformation: payload };
  }
  const signed = openSignedData(inner.der, "the conveyed information", [owner]);
  if (!Buffer.from(signed.signer.rawData).equals(Buffer.from(owner.rawData))) {
    throw new DeviceError("INFO_SIGNATURE", `the conveyed information is signed by ${signed.signer.subject}, not by the owner certificate: refuse it`);
  }
  const format = CONVEYED_INFO_TYPES[signed.eContentType];
  if (!format) throw new DeviceError("INFO_SIGNATURE", `the conveyed information is signed content of type ${signed.eContentType}, not SZTP conveyed information (RFC 8572 §8.3): refuse it`);
  return { serial: o.serial, voucher, owner, encrypted, signed: true, format, conveyedInformation: signed.content };
}
