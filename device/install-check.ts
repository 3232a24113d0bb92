import { X509Certificate, verify, type KeyObject } from "node:crypto";
import { id_ecdsaWithSHA256, id_ecdsaWithSHA384 } from "@peculiar/asn1-ecc";
import { id_sha256WithRSAEncryption } from "@peculiar/asn1-rsa";
import { sha256Hex } from "../core/index.js";
import { PKI_OID, CertificateModel, PkiError, checkChain, decodeWhole, oid, parseCertificate, serialNumbers, x509, type CertificateDer } from "../pki/index.js";
import { toPem } from "./csr.js";
import type { UnitRefusalCode } from "../link/index.js";

/** A unit's refusal of a request: becomes an `ok: false` answer, never a thrown error. */
export class Refusal {
  constructor(
    readonly code: UnitRefusalCode,
    readonly message: string,
  ) {}
}

/** A certificate offered to a unit, parsed far enough to know its fingerprint. */
export interface OfferedCertificate {
  pem: string;
  der: Buffer;
  /** SHA-256 hex of `der`. */
  fingerprint: string;
  /** Its DER decode, when the PEM is plain: the short path's input. */
  fast?: DecodedCertificate;
}

/** A certificate decoded by the models of pki's der-models, with the bytes the short path compares and verifies. */
interface DecodedCertificate {
  value: CertificateDer;
  tbs: Buffer;
  issuer: Buffer;
  spki: Buffer;
}

function decodeCertificate(der: Buffer): DecodedCertificate {
  const { value, at } = decodeWhole(CertificateModel, der, ["tbsCertificate", "tbsCertificate/issuer", "tbsCertificate/subjectPublicKeyInfo"]);
  const [tbs, issuer, spki] = at.map((range) => der.subarray(...range));
  return { value, tbs: tbs!, issuer: issuer!, spki: spki! };
}

/** What the unit stores once it accepts a certificate: both re-encoded as plain PEM. */
export interface Accepted {
  certificate: string;
  chain: string;
}

/** The unit asking: its serial, and the SPKI of its current key. */
export interface Installer {
  serial: string;
  spki: Buffer;
}

/** A chain certificate seen before, by its PEM text. */
interface KnownCertificate {
  cert: x509.X509Certificate;
  pem: string;
  /** Set once the certificate was proven, byte for byte, to chain to the vendor root; `subject` is its DER Name. */
  proven?: { subject: Buffer; publicKey: KeyObject; notBefore: Date; notAfter: Date };
}

// One certificate, base64 lines only (padding only at the end): what OpenSSL and @peculiar/x509 decode alike.
const PLAIN_PEM = /^-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/\r\n]+={0,2}\r?\n)-----END CERTIFICATE-----\r?\n?$/;
const KNOWN_LIMIT = 32;

// The signatures a factory CA makes, by their OIDs; any other takes the long path.
const SIGNATURE_HASHES: Record<string, string> = {
  [id_ecdsaWithSHA256]: "sha256",
  [id_ecdsaWithSHA384]: "sha384",
  [id_sha256WithRSAEncryption]: "sha256",
};

const within = (at: Date | number, from: Date | number, to: Date | number) => from <= at && to >= at;

/**
 * A unit's checks of an IDevID offered in `install`. Every unit on a line is handed the same
 * factory CA, and @peculiar/x509 is slow (~0.7 ms to parse a certificate, ~0.6 ms to verify
 * with a re-imported CA key), so a CA certificate that once chained to the root, byte for
 * byte, is remembered with its public key: later leaves are decoded with asn1.js (pki's
 * der-models; node's X509Certificate took ~120 µs a certificate, most of it OpenSSL 3
 * decoding the key) and their signatures checked with node:crypto against it. The first
 * time a CA certificate is seen, and whenever the short path fails, pki's checkChain and
 * @peculiar/x509 check everything again, so that refusals carry their own reasons.
 */
export class InstallChecker {
  private readonly known = new Map<string, KnownCertificate>();

  constructor(private readonly root: x509.X509Certificate) {}

  /** Parses the certificate offered; CERT_INVALID if it is not one. */
  offered(pem: string): OfferedCertificate {
    const plain = PLAIN_PEM.exec(pem);
    if (plain) {
      const der = Buffer.from(plain[1]!, "base64");
      try {
        return { pem, der, fingerprint: sha256Hex(der), fast: decodeCertificate(der) };
      } catch {
        // Whether it is a certificate at all is @peculiar/x509's call, below.
      }
    }
    let cert: x509.X509Certificate;
    try {
      cert = parseCertificate(pem, "the certificate");
    } catch {
      throw new Refusal("CERT_INVALID", "the certificate is not an X.509 certificate in PEM");
    }
    const der = Buffer.from(cert.rawData);
    return { pem, der, fingerprint: sha256Hex(der) };
  }

  /** Checks `leaf` for `unit` at `at`: chain to the vendor root, key, serial; the refusal says which failed. */
  async check(leaf: OfferedCertificate, chainPems: readonly string[], unit: Installer, at: Date): Promise<Accepted> {
    return this.short(leaf, chainPems, unit, at) ?? (await this.long(leaf, chainPems, unit, at));
  }

  private short(leaf: OfferedCertificate, chainPems: readonly string[], unit: Installer, at: Date): Accepted | undefined {
    const cert = leaf.fast;
    if (!cert || !within(at, this.root.notBefore, this.root.notAfter)) return undefined;
    const chain = chainPems.map((pem) => this.known.get(pem));
    if (chain.some((c) => c === undefined)) return undefined;
    const ca = chain.find((c) => c!.proven?.subject.equals(cert.issuer))?.proven;
    if (!ca || !within(at, ca.notBefore, ca.notAfter)) return undefined;
    const { notBefore, notAfter } = cert.value.tbsCertificate.validity;
    if (!within(at.getTime(), notBefore.value, notAfter.value)) return undefined;
    const hash = SIGNATURE_HASHES[oid(cert.value.signatureAlgorithm.algorithm)];
    const signature = cert.value.signatureValue;
    if (!hash || signature.unused !== 0 || !verify(hash, cert.tbs, ca.publicKey, signature.data)) return undefined;
    if (!cert.spki.equals(unit.spki)) return undefined;
    let serials: string[];
    try {
      serials = serialNumbers(cert.value.tbsCertificate.subject);
    } catch {
      // A serialNumber that is not a string: the long path refuses it with its reason.
      return undefined;
    }
    if (serials.length !== 1 || serials[0] !== unit.serial) return undefined;
    return { certificate: toPem("CERTIFICATE", leaf.der), chain: chain.map((c) => c!.pem).join("") };
  }

  private async long(leaf: OfferedCertificate, chainPems: readonly string[], unit: Installer, at: Date): Promise<Accepted> {
    let cert: x509.X509Certificate;
    try {
      cert = parseCertificate(leaf.pem, "the certificate");
    } catch {
      throw new Refusal("CERT_INVALID", "the certificate is not an X.509 certificate in PEM");
    }
    const chain = chainPems.map((pem, i) => {
      try {
        return this.know(pem);
      } catch {
        throw new Refusal("CERT_INVALID", `chain[${i}] is not an X.509 certificate in PEM`);
      }
    });
    let path: x509.X509Certificate[];
    try {
      path = await checkChain(
        cert,
        chain.map((c) => c.cert),
        this.root,
        at,
      );
    } catch (e) {
      if (e instanceof PkiError) throw new Refusal("CHAIN_INVALID", `the certificate does not chain to the vendor root unit ${unit.serial} carries: ${e.message}`);
      throw e;
    }
    for (const ca of path.slice(1, -1)) this.prove(chain.find((c) => c.cert === ca)!);
    if (!Buffer.from(cert.publicKey.rawData).equals(unit.spki)) {
      throw new Refusal("KEY_MISMATCH", `the certificate certifies another key than unit ${unit.serial}'s current one: issue it for the key in the unit's latest CSR`);
    }
    // 802.1AR §8.6: the subject's serialNumber names the device. (The hardwareModuleName SAN
    // is not read here: decoding a fresh certificate's extensions costs ~0.9 ms a unit.)
    const serials = cert.subjectName.getField(PKI_OID.serialNumber);
    if (serials.length !== 1 || serials[0] !== unit.serial) {
      throw new Refusal("SERIAL_MISMATCH", `the certificate's subject serialNumber is ${serials.length ? serials.join(", ") : "missing"}, not ${unit.serial}`);
    }
    return { certificate: toPem("CERTIFICATE", leaf.der), chain: chain.map((c) => c.pem).join("") };
  }

  private know(pem: string): KnownCertificate {
    let known = this.known.get(pem);
    if (!known) {
      const cert = parseCertificate(pem, "a chain certificate");
      known = { cert, pem: toPem("CERTIFICATE", new Uint8Array(cert.rawData)) };
      if (this.known.size >= KNOWN_LIMIT) this.known.clear();
      this.known.set(pem, known);
    }
    return known;
  }

  /** Remembers that `known` chains to the root, if OpenSSL reads the very bytes @peculiar/x509 checked. */
  private prove(known: KnownCertificate): void {
    if (known.proven) return;
    const der = Buffer.from(known.cert.rawData);
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(der);
    } catch {
      return;
    }
    if (!cert.raw.equals(der)) return;
    let subject: Buffer;
    try {
      subject = der.subarray(...decodeWhole(CertificateModel, der, ["tbsCertificate/subject"]).at[0]!);
    } catch {
      return;
    }
    known.proven = { subject, publicKey: cert.publicKey, notBefore: known.cert.notBefore, notAfter: known.cert.notAfter };
  }
}
