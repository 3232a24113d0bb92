import { sha256Hex, systemClock, type Clock } from "../core/index.js";
import { DirectoryClient, DirectoryError, type DirectoryClientOptions } from "../directory/client/index.js";
import { PkiError, assertSerialSyntax, checkChain, idevidProfileViolation, keyUsageNames, parseCertificate, readHardwareModuleName, x509 } from "../pki/index.js";
import { assertEncryptionUsage, recipientKeyOf } from "../cms/index.js";
import { OperatorError } from "./errors.js";

/** A device certificate that passed every check: chained to the pinned root, an IDevID for its serial. */
export interface CheckedDevice {
  serial: string;
  certificate: x509.X509Certificate;
  /** The certificate alone, PEM. */
  pem: string;
  /** SHA-256 of the certificate's DER, lower-case hex. */
  fingerprint: string;
  subject: string;
  issuer: string;
  certificateSerial: string;
  /** e.g. "EC P-256", "RSA-2048". */
  key: string;
  keyUsage: string[];
  hwType: string;
  /** Subjects from the device to the pinned root. */
  path: string[];
}

function pemOf(cert: x509.X509Certificate): string {
  return cert.toString("pem").trim() + "\n";
}

/**
 * The operator's checks on a device certificate (RFC 8886 §4.2; IEEE 802.1AR §8), given
 * intermediates the operator may not trust (they must chain to the pinned root themselves):
 *
 * 1. RFC 5280 §6.1 (pki `checkChain`): it chains to the pinned vendor root, byte for byte,
 *    through a CA below the root (the factory CA), and is valid at `at`;
 * 2. the subject carries exactly one serialNumber, equal to `serial` (802.1AR §8.6);
 * 3. the hardwareModuleName SAN (RFC 4108 §5) names hwSerialNum = `serial`;
 * 4. notAfter is 99991231235959Z, "no well-defined expiration" (802.1AR §8.5);
 * 5. it is not a CA, and its keyUsage has digitalSignature and what encrypting to it needs
 *    (keyAgreement for EC, keyEncipherment for RSA), and neither keyCertSign nor cRLSign.
 */
export async function checkDeviceCertificate(
  certificate: x509.X509Certificate,
  serial: string,
  root: x509.X509Certificate,
  intermediates: readonly x509.X509Certificate[],
  at: Date = new Date(),
): Promise<CheckedDevice> {
  assertSerialSyntax(serial);
  const who = `the certificate of ${serial}`;
  if (intermediates.length === 0 && certificate.issuer !== root.subject) {
    throw new OperatorError("CHAIN_INVALID", `${who} was issued by ${certificate.issuer} and no CA certificate was given to reach the pinned root: pass the vendor's factory CA with --chain FILE`);
  }
  let path: x509.X509Certificate[];
  try {
    path = await checkChain(certificate, intermediates, root, at);
  } catch (e) {
    if (e instanceof PkiError) {
      const why = e.message.replace(/^[^:]*: /, "").replace(/: it does not chain to the vendor root$/, "");
      throw new OperatorError("CHAIN_INVALID", `${who} does not chain to the pinned vendor root ${root.subject} (${why}): check that --root is this vendor's root, as you obtained it out of band`, { cause: e });
    }
    throw e;
  }
  if (path.length !== 3) {
    throw new OperatorError("CHAIN_INVALID", `${who} is ${path.length === 2 ? "signed by the root itself, not by a factory CA" : `${path.length - 1} CAs away from the root, not one factory CA`}: it is not an IDevID of this vendor`);
  }
  const violation = idevidProfileViolation(certificate, serial);
  if (violation) throw new OperatorError("PROFILE_VIOLATION", `${who} is not an IDevID for ${serial}: ${violation}`);
  const hmn = readHardwareModuleName(certificate)!;
  const names = keyUsageNames(certificate.getExtension(x509.KeyUsagesExtension)!.usages);
  const key = recipientKeyOf(certificate);
  assertEncryptionUsage(certificate, key.type);

  return {
    serial,
    certificate,
    pem: pemOf(certificate),
    fingerprint: sha256Hex(new Uint8Array(certificate.rawData)),
    subject: certificate.subject,
    issuer: certificate.issuer,
    certificateSerial: certificate.serialNumber,
    key: key.description,
    keyUsage: names,
    hwType: hmn.hwType,
    path: path.map((c) => c.subject),
  };
}

export interface FetchDeviceOptions {
  /** The directory's base URL (or a client for it). */
  directory: string | DirectoryClient;
  serial: string;
  /** The pinned vendor root. */
  root: x509.X509Certificate;
  /** CA certificates to build the path with (the vendor's factory CA); they are checked, not trusted. */
  chain?: readonly x509.X509Certificate[];
  clock?: Clock;
  client?: DirectoryClientOptions;
}

/**
 * RFC 8886 §4.2: fetch a device's certificate by serial from the directory (HTTP or HTTPS)
 * and check it (`checkDeviceCertificate`). CA certificates that follow the device's in the
 * directory's answer (application/pem-certificate-chain, RFC 8555 §9.1) are used for the
 * path like `chain`; nothing the directory sends is trusted without the pinned root.
 */
export async function fetchDeviceCertificate(o: FetchDeviceOptions): Promise<CheckedDevice> {
  assertSerialSyntax(o.serial);
  const client = typeof o.directory === "string" ? new DirectoryClient(o.directory, o.client) : o.directory;
  let text: string;
  try {
    text = await client.certificate(o.serial);
  } catch (e) {
    if (e instanceof DirectoryError && e.code === "NOT_FOUND") {
      throw new OperatorError("NOT_PUBLISHED", `the directory ${client.url} has no certificate for ${o.serial}: check the serial, or ask the vendor whether that unit was provisioned and published`, { cause: e });
    }
    throw e;
  }
  let served: x509.X509Certificate[];
  try {
    served = x509.PemConverter.decode(text).map((der) => new x509.X509Certificate(der));
  } catch (e) {
    throw new DirectoryError("BAD_RESPONSE", `the directory's answer for ${o.serial} is not PEM certificates (${client.url})`, { cause: e });
  }
  const [leaf, ...servedChain] = served;
  if (!leaf) throw new DirectoryError("BAD_RESPONSE", `the directory answered no certificate for ${o.serial} (${client.url})`);
  const at = (o.clock ?? systemClock).now();
  return checkDeviceCertificate(leaf, o.serial, o.root, [...servedChain, ...(o.chain ?? [])], at);
}

/** Every certificate in a PEM file (a chain file may hold several). */
export function parseCertificates(text: string | Uint8Array, what: string): x509.X509Certificate[] {
  const s = typeof text === "string" ? text : Buffer.from(text).toString("latin1");
  if (!s.includes("-----BEGIN")) return [parseCertificate(text, what)];
  try {
    const certs = x509.PemConverter.decode(s).map((der) => new x509.X509Certificate(der));
    if (certs.length === 0) throw new Error("no PEM block");
    return certs;
  } catch (e) {
    throw new PkiError("CERT_INVALID", `${what} is not X.509 certificates in PEM or DER: give the right file`, { cause: e });
  }
}
