/**
 * A unit's CMP client (RFC 9483 §4.1.4 p10cr, then §4.1.1's certConf): the unit sends the CSR
 * its keystore signed, MAC-protected with the line's secret, checks the station's answer and
 * the certificate, and confirms it. What `openssl cmp -cmd p10cr` does, for simulated units.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { GeneralName, Name } from "@peculiar/asn1-x509";
import { cmp } from "../link/index.js";
import { x509 } from "../pki/index.js";
import { DeviceError } from "./errors.js";

/** OpenSSL's own PBM iteration count (measured: openssl cmp 3.0 sends 500). */
const ITERATIONS = 500;

export interface CmpClientOptions {
  /** The station's CMP endpoint, e.g. http://127.0.0.1:8080/.well-known/cmp. */
  url: string;
  secret: Uint8Array;
  /** The secret's reference, sent as senderKID (openssl cmp -ref). */
  reference: string;
  timeoutMs: number;
}

export interface CmpEnrolled {
  certificatePem: string;
  chainPems: string[];
}

export class CmpClient {
  /** The station answers under one salt a run: its key is derived once (see PbmKeyCache). */
  private readonly keyCache: cmp.PbmKeyCache = new Map();

  constructor(private readonly o: CmpClientOptions) {}

  /**
   * Enrols with a CSR (DER or PEM): p10cr -> cp, `install` checks and keeps the certificate
   * (the unit's own check), certConf -> pkiConf. A certificate `install` refuses is rejected
   * in the certConf and the refusal thrown.
   */
  async enrolP10(csr: string, install: (certificatePem: string, chainPems: string[]) => Promise<unknown>): Promise<CmpEnrolled> {
    const p10cr = AsnConvert.parse(x509.PemConverter.decodeFirst(csr), CertificationRequest);
    const sender = new GeneralName({ directoryName: p10cr.certificationRequestInfo.subject });
    const transactionID = new OctetString(randomBytes(16));
    const first = await this.exchange(sender, transactionID, undefined, new cmp.PKIBody({ p10cr }));
    const rep = first.rep;
    if (!rep || rep.status.status !== cmp.PKI_STATUS.accepted || !rep.certificate) {
      throw new DeviceError("CMP_PROTOCOL", "the station answered the p10cr without a certificate: check the station's CMP endpoint");
    }
    const der = new Uint8Array(rep.certificate);
    const certificatePem = x509.PemConverter.encode(der, "CERTIFICATE");
    const chainPems = first.extraCerts.map((c) => x509.PemConverter.encode(c, "CERTIFICATE"));
    let refusal: unknown;
    try {
      await install(certificatePem, chainPems);
    } catch (e) {
      refusal = e;
    }
    const status = new cmp.CertStatus({ certHash: new OctetString(cmp.certHash(der)), certReqId: rep.certReqId });
    if (refusal !== undefined) status.statusInfo = new cmp.PKIStatusInfo({ status: cmp.PKI_STATUS.rejection, statusString: new cmp.PKIFreeText([String((refusal as Error).message ?? refusal).slice(0, 200)]) });
    const conf = await this.exchange(sender, transactionID, first.message.header.senderNonce, new cmp.PKIBody({ certConf: new cmp.CertConfirmContent([status]) }));
    if (refusal !== undefined) throw refusal;
    if (conf.message.body.pkiconf === undefined) throw new DeviceError("CMP_PROTOCOL", "the station did not answer the certConf with pkiConf");
    return { certificatePem, chainPems };
  }

  /** One request and its checked answer: the MAC, the transaction, our nonce back; a CMP error becomes CMP_REFUSED. */
  private async exchange(sender: GeneralName, transactionID: OctetString, recipNonce: OctetString | undefined, body: cmp.PKIBody): Promise<{ message: cmp.PKIMessage; extraCerts: ArrayBuffer[]; rep?: cmp.CertRepDer }> {
    const senderNonce = new OctetString(randomBytes(16));
    const header = new cmp.PKIHeader({
      sender,
      recipient: new GeneralName({ directoryName: new Name() }),
      messageTime: new Date(),
      senderKID: new OctetString(Buffer.from(this.o.reference)),
      transactionID,
      senderNonce,
      recipNonce,
    });
    const request = cmp.protectWithPbm(new cmp.PKIMessage({ header, body }), this.o.secret, { iterationCount: ITERATIONS });
    let status: number;
    let bytes: Uint8Array;
    try {
      const res = await fetch(this.o.url, {
        method: "POST",
        headers: { "content-type": "application/pkixcmp" },
        body: new Uint8Array(AsnConvert.serialize(request)),
        signal: AbortSignal.timeout(this.o.timeoutMs),
      });
      status = res.status;
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      throw new DeviceError("CMP_UNREACHABLE", `the station's CMP endpoint ${this.o.url} did not answer (${(e as Error).message}): check the URL and that the station runs with --cmp`, { cause: e });
    }
    // RFC 6712: every PKIMessage, refusals included, comes with 200; anything else is not a CMP endpoint.
    if (status !== 200) throw new DeviceError("CMP_UNREACHABLE", `${this.o.url} answered HTTP ${status}, not CMP: check the URL (the station serves /.well-known/cmp and /pkix/) and that the station runs with --cmp`);
    // An ip/cp is read with its certificates left as DER (certRepOf); any other body is small and parsed whole.
    const loose = cmp.looseMessage(bytes);
    if (!loose) throw new DeviceError("CMP_PROTOCOL", "the station's answer is not a PKIMessage");
    const rep = cmp.certRepOf(loose.message.bodyRaw!);
    const message = rep ? loose.message : cmp.parsePKIMessage(bytes);
    const error = message.body.error?.pKIStatusInfo;
    // Reported before its MAC is checked (a wrong secret gets an unprotected error): it changes nothing on the unit.
    if (error) throw new DeviceError("CMP_REFUSED", `the station refused (${error.failInfo?.failures().join(", ") ?? "no failure info"}): ${error.statusString?.join("; ") ?? ""}`);
    cmp.verifyPbm(message, this.o.secret, this.keyCache);
    const answered = message.header;
    const same = (a: OctetString | undefined, b: OctetString) => a !== undefined && a.byteLength === b.byteLength && timingSafeEqual(Buffer.from(a.buffer), Buffer.from(b.buffer));
    if (!same(answered.transactionID, transactionID) || !same(answered.recipNonce, senderNonce)) {
      throw new DeviceError("CMP_PROTOCOL", "the station's answer is not for this request (transactionID or recipNonce differ)");
    }
    return { message, extraCerts: loose.extraCerts, rep };
  }
}
