/**
 * Reissuing one IDevID for other serials by rewriting its DER, so the directory benchmark can
 * fill its store with distinct real certificates faster than `issueIdevid` makes them.
 */
import { sign, type KeyObject } from "node:crypto";

// DER, just enough to re-sign a template.

interface Tlv {
  tag: number;
  headerStart: number;
  start: number;
  end: number;
}

function readTlv(buf: Buffer, at: number): Tlv {
  const tag = buf[at]!;
  let length = buf[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[start + i]!;
    start += n;
  }
  if (start + length > buf.length) throw new Error(`DER: element at ${at} runs past the end`);
  return { tag, headerStart: at, start, end: start + length };
}

function derHeader(tag: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([tag, length]);
  const bytes: number[] = [];
  for (let l = length; l > 0; l = Math.floor(l / 256)) bytes.unshift(l & 0xff);
  return Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
}

/**
 * An IDevID from `issueIdevid`, reissued for other serials: the same TBSCertificate with the
 * serial written where the template's stands (subject CN, subject serialNumber,
 * hardwareModuleName hwSerialNum; all the same length) and a new certificate serial number,
 * signed again. Everything else (issuer, validity, key, extensions) is the template's.
 */
export class IdevidTemplate {
  private readonly tbs: Buffer;
  private readonly signatureAlgorithm: Buffer;
  private readonly certSerialAt: number;
  private readonly serialAt: number[] = [];

  constructor(
    der: Buffer,
    private readonly templateSerial: string,
    private readonly caKey: KeyObject,
  ) {
    const outer = readTlv(der, 0);
    const tbs = readTlv(der, outer.start);
    const alg = readTlv(der, tbs.end);
    this.tbs = Buffer.from(der.subarray(tbs.headerStart, tbs.end));
    this.signatureAlgorithm = Buffer.from(der.subarray(alg.headerStart, alg.end));
    const version = readTlv(der, tbs.start);
    const serial = readTlv(der, version.end);
    if (version.tag !== 0xa0 || serial.tag !== 0x02 || serial.end - serial.start !== 16) throw new Error("the template IDevID is not a v3 certificate with a 16-byte serial number");
    this.certSerialAt = serial.start - tbs.headerStart;
    const needle = Buffer.from(templateSerial, "latin1");
    for (let at = this.tbs.indexOf(needle); at !== -1; at = this.tbs.indexOf(needle, at + 1)) this.serialAt.push(at);
    // CN, serialNumber and hwSerialNum, and nowhere else (not by chance inside a key or hash).
    if (this.serialAt.length !== 3) throw new Error(`the template serial ${templateSerial} occurs ${this.serialAt.length} times in the TBSCertificate, expected 3`);
  }

  /** `certSerial`: 16 bytes as `newCertificateSerial` makes them (first byte 0x40-0x7f). */
  issue(serial: string, certSerial: Buffer): Buffer {
    if (serial.length !== this.templateSerial.length) throw new Error(`serial ${serial} is not as long as the template's ${this.templateSerial}`);
    const tbs = Buffer.from(this.tbs);
    certSerial.copy(tbs, this.certSerialAt, 0, 16);
    for (const at of this.serialAt) tbs.write(serial, at, "latin1");
    const signature = sign("sha256", tbs, this.caKey);
    const bitString = Buffer.concat([derHeader(0x03, signature.length + 1), Buffer.of(0), signature]);
    return Buffer.concat([derHeader(0x30, tbs.length + this.signatureAlgorithm.length + bitString.length), tbs, this.signatureAlgorithm, bitString]);
  }
}
