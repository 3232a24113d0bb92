import { type Clock, type Random } from "../core/index.js";
import type { Signer } from "../hsm/index.js";
import { PkiError } from "./errors.js";
import { hardwareModuleNameSan } from "./hardware-module-name.js";
import { PKI_OID } from "./oids.js";
import { signingProvider, x509 } from "./x509.js";

/** IEEE 802.1AR §8.5 / RFC 5280 §4.1.2.5: "no well-defined expiration date", as GeneralizedTime. */
export const NO_EXPIRY = new Date(Date.UTC(9999, 11, 31, 23, 59, 59));

const OID = PKI_OID;

/** X.520 ub-serial-number is 64; the printable subset also keeps serials safe in paths and URLs. */
const SERIAL_SYNTAX = /^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$/;

export function assertSerialSyntax(serial: string): void {
  if (!SERIAL_SYNTAX.test(serial)) {
    throw new PkiError("SERIAL_SYNTAX", `serial "${serial}" is not valid: use 1-64 characters of A-Z a-z 0-9 . - (X.520 PrintableString) starting with a letter or digit`);
  }
}

export interface SubjectName {
  organization: string;
  organizationalUnit?: string;
  commonName: string;
  serialNumber?: string;
}

function subjectName(s: SubjectName): x509.Name {
  // Values as explicit string types: the library's string parsing would treat a leading
  // "#" as hex and quotes as syntax. RFC 5280 §4.1.2.6: UTF8String, except serialNumber
  // which X.520 defines as PrintableString.
  const rdns: x509.JsonNameParams = [{ [OID.organization]: [{ utf8String: s.organization }] }];
  if (s.organizationalUnit) rdns.push({ [OID.organizationalUnit]: [{ utf8String: s.organizationalUnit }] });
  rdns.push({ [OID.commonName]: [{ utf8String: s.commonName }] });
  if (s.serialNumber !== undefined) rdns.push({ [OID.serialNumber]: [{ printableString: s.serialNumber }] });
  return new x509.Name(rdns);
}

/**
 * RFC 5280 §4.1.2.2: positive, at most 20 octets; CA/B-style >= 64 bits of CSPRNG output.
 * 16 random octets with the top bit cleared (positive) and the next set (no leading zero
 * octet, so the DER length is always 16) leave 126 random bits.
 */
export function newCertificateSerial(random: Random): string {
  const b = random.bytes(16);
  b[0] = (b[0]! & 0x7f) | 0x40;
  return Buffer.from(b).toString("hex");
}

interface IssueCommon {
  certificateSerial?: string;
  issuer: { signer: Signer; certificate?: x509.X509Certificate };
  subject: SubjectName;
  publicKeySpki: Uint8Array<ArrayBuffer>;
  clock: Clock;
  random: Random;
  notAfter?: Date;
  extensions: x509.Extension[];
}

async function issue(p: IssueCommon): Promise<x509.X509Certificate> {
  const { crypto, signingKey, signingAlgorithm } = signingProvider(p.issuer.signer);
  const subject = subjectName(p.subject);
  const skid = await x509.SubjectKeyIdentifierExtension.create(p.publicKeySpki);
  const issuerSkid = p.issuer.certificate?.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? skid.keyId;
  const notBefore = p.clock.now();
  notBefore.setUTCMilliseconds(0);
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: p.certificateSerial ?? newCertificateSerial(p.random),
      subject,
      issuer: p.issuer.certificate ? p.issuer.certificate.subjectName : subject,
      notBefore,
      notAfter: p.notAfter ?? NO_EXPIRY,
      publicKey: p.publicKeySpki,
      signingKey,
      signingAlgorithm,
      extensions: [...p.extensions, skid, new x509.AuthorityKeyIdentifierExtension(issuerSkid)],
    },
    crypto,
  );
}

function yearsFrom(clock: Clock, years: number): Date {
  const d = clock.now();
  d.setUTCFullYear(d.getUTCFullYear() + years);
  d.setUTCMilliseconds(0);
  return d;
}

/** The vendor root: self-signed, a CA that may certify one more CA level (the factory CA). */
export function issueRoot(p: { signer: Signer; subject: SubjectName; clock: Clock; random: Random }): Promise<x509.X509Certificate> {
  return issue({
    issuer: { signer: p.signer },
    subject: p.subject,
    publicKeySpki: p.signer.publicKeySpki,
    clock: p.clock,
    random: p.random,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
}

/** The factory CA: signs IDevIDs and nothing else below it (pathLen 0). */
export function issueFactoryCa(p: {
  issuer: { signer: Signer; certificate: x509.X509Certificate };
  publicKeySpki: Uint8Array<ArrayBuffer>;
  subject: SubjectName;
  clock: Clock;
  random: Random;
}): Promise<x509.X509Certificate> {
  return issue({
    ...p,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
}

export type EndEntityPurpose = "allocation-signer" | "station" | "masa";

/**
 * The allocation signer signs allocation lists; a station signs its ledger, reports and
 * uploads; the MASA signs RFC 8366 vouchers. The MASA's certificate has no extended key
 * usage: RFC 8366 defines none, and `openssl cms -verify` refuses a signer whose EKU lacks
 * emailProtection.
 */
export function issueEndEntity(p: {
  purpose: EndEntityPurpose;
  issuer: { signer: Signer; certificate: x509.X509Certificate };
  publicKeySpki: Uint8Array<ArrayBuffer>;
  subject: SubjectName;
  clock: Clock;
  random: Random;
  validityYears?: number;
}): Promise<x509.X509Certificate> {
  const eku = p.purpose === "station" ? [OID.documentSigning, OID.clientAuth] : [OID.documentSigning];
  return issue({
    ...p,
    notAfter: yearsFrom(p.clock, p.validityYears ?? 10),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      ...(p.purpose === "masa" ? [] : [new x509.ExtendedKeyUsageExtension(eku, false)]),
    ],
  });
}

export interface IdevidParams {
  issuer: { signer: Signer; certificate: x509.X509Certificate };
  /** The unit's public key, from its CSR (already checked by `checkCsr`). */
  publicKeySpki: Uint8Array<ArrayBuffer>;
  serial: string;
  organization: string;
  commonName?: string;
  hwTypeOid: string;
  clock: Clock;
  random: Random;
  /** Chosen up front (see `newCertificateSerial`) when the ledger must name it before signing. */
  certificateSerial?: string;
}

/** Key usage an operator needs to encrypt to the device (RFC 8886 §4): agreement for EC, transport for RSA. */
function idevidKeyUsage(spki: Uint8Array<ArrayBuffer>): number {
  const info = new x509.PublicKey(spki);
  const isEc = info.algorithm.name === "ECDSA" || info.algorithm.name === "ECDH" || (info.algorithm as { name: string }).name === "EC";
  return x509.KeyUsageFlags.digitalSignature | (isEc ? x509.KeyUsageFlags.keyAgreement : x509.KeyUsageFlags.keyEncipherment);
}

/** A certificate serial chosen up front must have the shape `newCertificateSerial` gives (16 octets, positive). */
export function assertCertificateSerial(certificateSerial: string): void {
  if (!/^[4-7][0-9a-f]{31}$/.test(certificateSerial)) {
    throw new PkiError("PROFILE_VIOLATION", `certificate serial ${certificateSerial} was not made by newCertificateSerial`);
  }
}

/** The IEEE 802.1AR IDevID (§8): serialNumber in the subject, hardwareModuleName SAN, no expiry. */
export function issueIdevid(p: IdevidParams): Promise<x509.X509Certificate> {
  assertSerialSyntax(p.serial);
  if (p.certificateSerial !== undefined) assertCertificateSerial(p.certificateSerial);
  return issue({
    certificateSerial: p.certificateSerial,
    issuer: p.issuer,
    subject: { organization: p.organization, commonName: p.commonName ?? p.serial, serialNumber: p.serial },
    publicKeySpki: p.publicKeySpki,
    clock: p.clock,
    random: p.random,
    notAfter: NO_EXPIRY,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, false),
      new x509.KeyUsagesExtension(idevidKeyUsage(p.publicKeySpki), true),
      hardwareModuleNameSan(p.hwTypeOid, p.serial),
    ],
  });
}
