import { X509Certificate } from "node:crypto";
import { checkChain, parseCertificate, x509 } from "../pki/index.js";
import { CmsError } from "./errors.js";
import { unframe } from "./framing.js";
import { openSignedData } from "./signed-open.js";

/**
 * The RFC 8366 ownership voucher as an artifact: its JSON (the ietf-voucher YANG module,
 * §5.3) and its CMS signature (§5.4, eContentType id-ct-animaJSONVoucher). The vendor's
 * `vouchers/` writes them, the unit's `device/` and `vouchers verify` read them, both here.
 */

/** RFC 8366 §8.3: id-ct-animaJSONVoucher. */
export const VOUCHER_CONTENT_TYPE = "1.2.840.113549.1.9.16.1.40";

export const VOUCHER_ASSERTIONS = ["verified", "logged", "proximity"] as const;
export type VoucherAssertion = (typeof VOUCHER_ASSERTIONS)[number];

/** The voucher's leaves; binary ones (idevid-issuer, pinned-domain-cert, nonce) in base64, as RFC 7951 encodes `binary`. */
export interface Voucher {
  createdOn: string;
  expiresOn?: string;
  assertion: VoucherAssertion;
  serialNumber: string;
  idevidIssuer?: string;
  pinnedDomainCert: string;
  nonce?: string;
  lastRenewalDate?: string;
}

const LEAVES: Array<[keyof Voucher, string]> = [
  ["createdOn", "created-on"],
  ["expiresOn", "expires-on"],
  ["assertion", "assertion"],
  ["serialNumber", "serial-number"],
  ["idevidIssuer", "idevid-issuer"],
  ["pinnedDomainCert", "pinned-domain-cert"],
  ["nonce", "nonce"],
  ["lastRenewalDate", "last-renewal-date"],
];
const ROOT = "ietf-voucher:voucher";
const DATE_AND_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The voucher's JSON bytes, its leaves in the YANG module's order. */
export function voucherJson(v: Voucher): Uint8Array {
  const leaves: Record<string, string> = {};
  for (const [key, name] of LEAVES) if (v[key] !== undefined) leaves[name] = v[key];
  return Buffer.from(JSON.stringify({ [ROOT]: leaves }));
}

/** RFC 8366 §5.3 read strictly: every leaf known, of its type, the mandatory ones present. */
export function parseVoucher(content: Uint8Array, what: string): Voucher {
  const bad = (why: string) => new CmsError("VOUCHER_INVALID", `${what} does not hold an RFC 8366 voucher (${why}): ask the vendor for a new one`);
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(content).toString("utf8"));
  } catch {
    throw bad("its content is not JSON");
  }
  const body = (doc as Record<string, unknown> | null)?.[ROOT];
  if (typeof body !== "object" || body === null || Object.keys(doc as object).length !== 1) throw bad(`no single "${ROOT}" object`);
  const names = new Map(LEAVES.map(([k, n]) => [n, k]));
  const v: Partial<Voucher> = {};
  for (const [name, value] of Object.entries(body)) {
    const key = names.get(name);
    if (!key) throw bad(`unknown leaf "${name}"`);
    if (typeof value !== "string") throw bad(`"${name}" is not a string`);
    if ((key === "createdOn" || key === "expiresOn" || key === "lastRenewalDate") && (!DATE_AND_TIME.test(value) || Number.isNaN(Date.parse(value)))) throw bad(`"${name}" is not a date-and-time`);
    if ((key === "idevidIssuer" || key === "pinnedDomainCert" || key === "nonce") && !BASE64.test(value)) throw bad(`"${name}" is not base64`);
    if (key === "assertion" && !(VOUCHER_ASSERTIONS as readonly string[]).includes(value)) throw bad(`assertion "${value}" is not one of ${VOUCHER_ASSERTIONS.join(", ")}`);
    (v as Record<string, string>)[key] = value;
  }
  for (const name of ["created-on", "assertion", "serial-number", "pinned-domain-cert"]) if (!(name in body)) throw bad(`no "${name}"`);
  return v as Voucher;
}

export interface OpenedVoucher {
  voucher: Voucher;
  /** The certificate that signed it, which chains to the pinned root. */
  masa: x509.X509Certificate;
  pinnedDomainCert: x509.X509Certificate;
}

/**
 * RFC 8366 §5.4 and RFC 8572 §5.6 on a voucher: its signature, its signer's chain to the
 * pinned vendor root, its content, then (when given) that it names `serial` and has not
 * expired at `at`. Each refusal is one error with its reason.
 */
export async function openVoucher(der: Uint8Array, o: { root: x509.X509Certificate; at: Date; serial?: string; what: string }): Promise<OpenedVoucher> {
  const signed = openSignedData(unframe(der)?.der ?? der, o.what);
  if (signed.eContentType !== VOUCHER_CONTENT_TYPE) {
    throw new CmsError("VOUCHER_INVALID", `${o.what} is signed content of type ${signed.eContentType}, not a voucher (${VOUCHER_CONTENT_TYPE}): give the voucher file`);
  }
  const path = await checkChain(signed.signer, signed.others, o.root, o.at);
  // OpenSSL reads a certificate's signature strictly, where @peculiar/x509 lets a wrong length inside it pass.
  for (let i = 0; i + 1 < path.length; i++) {
    if (!new X509Certificate(Buffer.from(path[i]!.rawData)).verify(new X509Certificate(Buffer.from(path[i + 1]!.rawData)).publicKey)) {
      throw new CmsError("SIGNATURE_INVALID", `${o.what}: the signature on ${path[i]!.subject} is malformed: refuse it`);
    }
  }
  const voucher = parseVoucher(signed.content, o.what);
  if (o.serial !== undefined && voucher.serialNumber !== o.serial) {
    throw new CmsError("VOUCHER_SERIAL", `${o.what} is for serial ${voucher.serialNumber}, not ${o.serial}: this voucher is for another unit`);
  }
  if (voucher.expiresOn !== undefined && Date.parse(voucher.expiresOn) < o.at.getTime()) {
    throw new CmsError("VOUCHER_EXPIRED", `${o.what} expired on ${voucher.expiresOn}: ask the vendor for a new voucher`);
  }
  const pinnedDomainCert = parseCertificate(Buffer.from(voucher.pinnedDomainCert, "base64"), `${o.what}'s pinned-domain-cert`);
  return { voucher, masa: signed.signer, pinnedDomainCert };
}
