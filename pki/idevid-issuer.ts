import { createHash } from "node:crypto";
import * as asn1js from "asn1js";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate, SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { fixedClock, sha256Hex, systemRandom, type Clock, type Random } from "../core/index.js";
import type { Signer } from "../hsm/index.js";
import { PkiError } from "./errors.js";
import { assertCertificateSerial, assertSerialSyntax, issueIdevid, newCertificateSerial } from "./profiles.js";
import { derSignature, x509 } from "./x509.js";

/*
 * Why templates: the line has ~1 ms of its single JS thread per unit, and `issueIdevid`
 * costs 3-4 ms per certificate on the station's 2-core VM (the library serializes the
 * TBSCertificate, ~530 µs, and then parses the whole certificate back). Within one line
 * every IDevID has the same issuer, profile and extensions, and for one kind of unit key
 * and one serial length every TBSCertificate has the same tags and lengths: only a few
 * same-length values differ. So `issueIdevid` itself (the one definition of the profile)
 * builds a template with placeholder values, the placeholders are located, and each unit
 * costs a copy, a few writes, a SHA-1 and the wrapping of the signature: ~60-70 µs here,
 * besides the HSM's signature.
 */

/** The line's profile: what every IDevID it issues says besides the unit's own values. */
export interface IdevidProfile {
  organization: string;
  hwTypeOid: string;
}

export interface IdevidRequest {
  /** The unit's public key as `checkCsr` returned it. */
  publicKeySpki: Uint8Array;
  serial: string;
  /** Chosen up front (see `newCertificateSerial`) when the ledger must name it before signing. */
  certificateSerial?: string;
  /** Defaults to the issuer's clock; milliseconds are dropped, as `issueIdevid` drops them. */
  notBefore?: Date;
  /** Told if the HSM's signature had to be asked for again (see SignOptions). */
  onSignRetry?(): void;
}

/** One issued IDevID; `certificate` is parsed only when first asked for. */
export class IssuedIdevid {
  private parsed?: x509.X509Certificate;
  readonly pem: string;
  readonly fingerprint: string;

  constructor(
    readonly der: Uint8Array<ArrayBuffer>,
    readonly certificateSerial: string,
  ) {
    // The same call X509Certificate.toString("pem") makes, so the PEM is the same text.
    this.pem = x509.PemConverter.encode(der, "CERTIFICATE");
    this.fingerprint = sha256Hex(der);
  }

  get certificate(): x509.X509Certificate {
    return (this.parsed ??= new x509.X509Certificate(this.der));
  }
}

/** The values a template leaves open, all of the same length as its placeholders. */
interface UnitValues {
  spki: Uint8Array;
  serial: string;
  certificateSerial: string;
  notBefore: Date;
}

/** Where a template's placeholders are, in TBSCertificate byte offsets. */
interface Slots {
  certificateSerial: number;
  notBefore: number;
  spki: number;
  keyIdentifier: number;
  serial: number[];
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime after (as asn1-x509's Time chooses). */
function timeKind(date: Date): "utc" | "generalized" {
  return date.getUTCFullYear() > 2049 ? "generalized" : "utc";
}

/** The digits of a UTCTime or GeneralizedTime (the template keeps the "Z"). */
function timeDigits(date: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  const year = timeKind(date) === "utc" ? two(date.getUTCFullYear() % 100) : String(date.getUTCFullYear()).padStart(4, "0");
  return year + two(date.getUTCMonth() + 1) + two(date.getUTCDate()) + two(date.getUTCHours()) + two(date.getUTCMinutes()) + two(date.getUTCSeconds());
}

/** RFC 5280 §4.2.1.2 method 1, as @peculiar/x509 computes it: SHA-1 of the subjectPublicKey bits. */
function keyIdentifier(spki: Uint8Array, headerLength: number): Buffer {
  return createHash("sha1").update(spki.subarray(headerLength)).digest();
}

function templateError(why: string): PkiError {
  return new PkiError("PROFILE_VIOLATION", `cannot build the IDevID template: ${why}; issue with issueIdevid and report this`);
}

/** The runs [start, end) where two encodings of equal length differ. */
function differences(a: Uint8Array, b: Uint8Array): Array<[number, number]> {
  if (a.length !== b.length) throw templateError("a placeholder changed the TBSCertificate's length");
  const runs: Array<[number, number]> = [];
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const last = runs[runs.length - 1];
    if (last && last[1] === i) last[1] = i + 1;
    else runs.push([i, i + 1]);
  }
  return runs;
}

function runsOf(runs: Array<[number, number]>, count: number, length: number, what: string): number[] {
  if (runs.length !== count || runs.some(([start, end]) => end - start !== length)) {
    throw templateError(`the ${what} is not ${count} run(s) of ${length} bytes in the TBSCertificate`);
  }
  return runs.map(([start]) => start);
}

function indexOnce(haystack: Buffer, needle: Uint8Array, what: string): number {
  const at = haystack.indexOf(needle);
  if (at === -1 || haystack.indexOf(needle, at + 1) !== -1) throw templateError(`the ${what} does not occur exactly once in the TBSCertificate`);
  return at;
}

/** A signer with the CA key's algorithm whose signatures are a fixed pattern: templates never reach the HSM (invariant 2). */
function placeholderSigner(signer: Signer): { signer: Signer; signature: Uint8Array<ArrayBuffer> } {
  const length = signer.algorithm === "EC-P384" ? 96 : signer.algorithm === "EC-P256" ? 64 : 256;
  // High bits set, so the ECDSA-Sig-Value needs its sign octets: the check covers them.
  const signature = new Uint8Array(length).fill(0xa5);
  return { signer: { algorithm: signer.algorithm, hash: signer.hash, publicKeySpki: signer.publicKeySpki, sign: async () => signature }, signature };
}

/**
 * asn1js's RawData inside a constructed value: asn1js 4 returns RawData's bytes from toBER
 * but never hands them to the enclosing SEQUENCE's writer (they vanish from its encoding),
 * so this one also writes them there. Tags and lengths stay asn1js's; should asn1js start
 * writing them itself, the bytes would come out twice and every template check would fail.
 */
class Encoded extends asn1js.RawData {
  override toBER(sizeOnly?: boolean, writer?: asn1js.ViewWriter): ArrayBuffer {
    const ber = super.toBER(sizeOnly);
    writer?.write(ber);
    return ber;
  }
}

class Template {
  constructor(
    private readonly tbs: Buffer,
    private readonly signatureAlgorithm: Uint8Array,
    /** The SubjectPublicKeyInfo up to its key bits: algorithm, parameters, lengths. */
    private readonly spkiHeader: Buffer,
    private readonly spkiLength: number,
    private readonly at: Slots,
  ) {}

  fits(spki: Uint8Array): boolean {
    return spki.length === this.spkiLength && Buffer.from(spki.buffer, spki.byteOffset, this.spkiHeader.length).equals(this.spkiHeader);
  }

  fill(u: UnitValues): Buffer {
    const tbs = Buffer.from(this.tbs);
    tbs.write(u.certificateSerial, this.at.certificateSerial, "hex");
    tbs.write(timeDigits(u.notBefore), this.at.notBefore, "latin1");
    tbs.set(u.spki, this.at.spki);
    tbs.set(keyIdentifier(u.spki, this.spkiHeader.length), this.at.keyIdentifier);
    for (const at of this.at.serial) tbs.write(u.serial, at, "latin1");
    return tbs;
  }

  /** RFC 5280 §4.1: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }. */
  certificate(tbs: Uint8Array, signer: Signer, rawSignature: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
    const value = [new Encoded({ data: tbs }), new Encoded({ data: this.signatureAlgorithm }), new asn1js.BitString({ valueHex: derSignature(signer, rawSignature) })];
    return new Uint8Array(new asn1js.Sequence({ value: value as unknown as asn1js.BaseBlock[] }).toBER());
  }
}

/**
 * Issues the line's IDevIDs for one factory CA (signer and certificate) and one profile:
 * byte for byte what `issueIdevid` makes for the same inputs (commonName = serial), without
 * building or parsing a certificate per unit. Templates are made on first use per kind of
 * unit key, serial length and notBefore encoding (a few ms each, signed by a placeholder,
 * never by the CA key) and checked against `issueIdevid` before use.
 */
export class IdevidIssuer {
  private readonly signer: Signer;
  private readonly caCertificate: x509.X509Certificate;
  private readonly profile: IdevidProfile;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly templates = new Map<string, Template[]>();
  private readonly building = new Map<string, Promise<void>>();

  constructor(p: { issuer: { signer: Signer; certificate: x509.X509Certificate }; profile: IdevidProfile; clock: Clock; random: Random }) {
    this.signer = p.issuer.signer;
    this.caCertificate = p.issuer.certificate;
    this.profile = { organization: p.profile.organization, hwTypeOid: p.profile.hwTypeOid };
    this.clock = p.clock;
    this.random = p.random;
  }

  async issue(r: IdevidRequest): Promise<IssuedIdevid> {
    assertSerialSyntax(r.serial);
    const certificateSerial = r.certificateSerial ?? newCertificateSerial(this.random);
    assertCertificateSerial(certificateSerial);
    const notBefore = new Date((r.notBefore ?? this.clock.now()).getTime());
    notBefore.setUTCMilliseconds(0);
    const year = notBefore.getUTCFullYear();
    if (year < 1950 || year > 9999) throw new PkiError("PROFILE_VIOLATION", `notBefore ${notBefore.toISOString()} cannot be encoded (RFC 5280 §4.1.2.5): check the station's clock`);
    const unit: UnitValues = { spki: r.publicKeySpki, serial: r.serial, certificateSerial, notBefore };

    const template = this.find(unit) ?? (await this.templateFor(unit));
    const tbs = template.fill(unit);
    const der = template.certificate(tbs, this.signer, await this.signer.sign(tbs, { onRetry: r.onSignRetry }));
    return new IssuedIdevid(der, certificateSerial);
  }

  private key(u: UnitValues): string {
    return `${u.serial.length}/${timeKind(u.notBefore)}/${u.spki.length}`;
  }

  private find(u: UnitValues): Template | undefined {
    return this.templates.get(this.key(u))?.find((t) => t.fits(u.spki));
  }

  /** Builds the template `u` needs, once even when several units ask for it at the same time. */
  private async templateFor(u: UnitValues): Promise<Template> {
    const key = this.key(u);
    for (;;) {
      const found = this.find(u);
      if (found) return found;
      const pending = this.building.get(key);
      if (pending) {
        await pending.catch(() => undefined);
        continue;
      }
      const build = this.build(u).then((t) => {
        this.templates.set(key, [...(this.templates.get(key) ?? []), t]);
      });
      this.building.set(key, build);
      try {
        await build;
      } finally {
        this.building.delete(key);
      }
    }
  }

  private async sample(signer: Signer, u: UnitValues): Promise<{ der: Uint8Array; tbs: Buffer; signatureAlgorithm: Uint8Array }> {
    const cert = await issueIdevid({
      issuer: { signer, certificate: this.caCertificate },
      publicKeySpki: new Uint8Array(u.spki),
      serial: u.serial,
      organization: this.profile.organization,
      hwTypeOid: this.profile.hwTypeOid,
      clock: fixedClock(u.notBefore),
      random: this.random,
      certificateSerial: u.certificateSerial,
    });
    const der = new Uint8Array(cert.rawData);
    const asn = AsnConvert.parse(der, Certificate);
    return { der, tbs: Buffer.from(new Uint8Array(asn.tbsCertificateRaw!)), signatureAlgorithm: new Uint8Array(AsnConvert.serialize(asn.signatureAlgorithm)) };
  }

  /**
   * The unit's own key is the key placeholder (a template is needed for its kind of key);
   * the other values are placeholders of the unit's lengths. Each is located by building
   * a second sample that differs in that value alone (so a placeholder that also occurs
   * elsewhere, e.g. a serial "1", cannot mislead), the key and its identifier by search.
   */
  private async build(u: UnitValues): Promise<Template> {
    const stub = placeholderSigner(this.signer);
    const n = u.serial.length;
    const generalized = timeKind(u.notBefore) === "generalized";
    const certificateSerial = newCertificateSerial(systemRandom);
    const base: UnitValues = {
      spki: u.spki,
      serial: "0".repeat(n),
      certificateSerial,
      notBefore: new Date(generalized ? "3111-11-11T11:11:11Z" : "2011-11-11T11:11:11Z"),
    };
    const sample = await this.sample(stub.signer, base);
    if (sample.tbs.indexOf(u.spki) === -1) {
      // issueIdevid re-encodes the key; only a DER key comes out as it went in.
      throw new PkiError("CSR_KEY_REFUSED", "the unit's public key is not a DER SubjectPublicKeyInfo: issue for the key checkCsr returned");
    }
    // Every byte of each variant differs from the base's.
    const bySerial = await this.sample(stub.signer, { ...base, serial: "1".repeat(n) });
    const byCertificateSerial = await this.sample(stub.signer, { ...base, certificateSerial: certificateSerial.replace(/[0-9a-f]/g, (c) => (parseInt(c, 16) ^ 1).toString(16)) });
    const byTime = await this.sample(stub.signer, { ...base, notBefore: new Date(generalized ? "2222-02-22T22:22:22Z" : "2022-02-22T22:22:22Z") });

    const keyBits = AsnConvert.parse(u.spki, SubjectPublicKeyInfo).subjectPublicKey.byteLength;
    const headerLength = u.spki.length - keyBits;
    const at: Slots = {
      serial: runsOf(differences(sample.tbs, bySerial.tbs), 3, n, "serial (subject CN, subject serialNumber, hwSerialNum)"),
      certificateSerial: runsOf(differences(sample.tbs, byCertificateSerial.tbs), 1, 16, "certificate serial number")[0]!,
      notBefore: runsOf(differences(sample.tbs, byTime.tbs), 1, generalized ? 14 : 12, "notBefore")[0]!,
      spki: indexOnce(sample.tbs, u.spki, "subjectPublicKeyInfo"),
      keyIdentifier: indexOnce(sample.tbs, keyIdentifier(u.spki, headerLength), "subject key identifier"),
    };
    const template = new Template(sample.tbs, sample.signatureAlgorithm, Buffer.from(u.spki.subarray(0, headerLength)), u.spki.length, at);

    // A second unit, made both ways, must come out the same to the byte.
    const otherKey = new Uint8Array(u.spki);
    otherKey[otherKey.length - 1] = otherKey[otherKey.length - 1]! ^ 0x01;
    const letters = systemRandom.bytes(n);
    const check: UnitValues = {
      spki: otherKey,
      serial: Array.from(letters, (b) => String.fromCharCode(0x41 + (b % 26))).join(""),
      certificateSerial: newCertificateSerial(systemRandom),
      notBefore: u.notBefore,
    };
    const expected = await this.sample(stub.signer, check);
    const got = template.certificate(template.fill(check), stub.signer, stub.signature);
    if (!Buffer.from(got).equals(expected.der)) throw templateError("a certificate from the template differs from issueIdevid's");
    return template;
  }
}
