/**
 * A unit's CMP client (RFC 9483 §4.1.4 p10cr, then §4.1.1's certConf): the unit sends the CSR
 * its keystore signed, MAC-protected with the line's secret, checks the station's answer and
 * the certificate, and confirms it. What `openssl cmp -cmd p10cr` does, for simulated units.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { cmp } from "../link/index.js";
import { CertificationRequestModel, x509, type NameDer } from "../pki/index.js";
import { toPem } from "./csr.js";
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
  /** Enrolments in flight at once: the connections kept open between requests. */
  concurrency?: number;
}

export interface CmpEnrolled {
  certificatePem: string;
  chainPems: string[];
}

/** What stays the same for the messages of one transaction: the sender, the transactionID and the PBM salt (RFC 4210 §5.1.3.1). */
interface Transaction {
  sender: NameDer;
  transactionID: Buffer;
  salt: Buffer;
}

export class CmpClient {
  /** The station answers under one salt a run: its key is derived once. */
  private readonly stationKeys = new cmp.PbmKeyCache(1);
  /** This client's keys, one per transaction in flight: its certConf reuses its request's salt. */
  private readonly ownKeys: cmp.PbmKeyCache;
  /** Connections kept between requests (a unit's p10cr and certConf, and the next unit's): a connection and an undici fetch per request cost ~1 ms of CPU on each side. */
  private readonly agent: HttpAgent;
  private readonly url: URL;

  constructor(private readonly o: CmpClientOptions) {
    const inFlight = Math.max(1, o.concurrency ?? 1);
    this.url = new URL(o.url);
    this.agent = new (this.url.protocol === "https:" ? HttpsAgent : HttpAgent)({ keepAlive: true, maxSockets: inFlight });
    this.ownKeys = new cmp.PbmKeyCache(2 * inFlight);
  }

  /** Closes the connections kept open; enrolments after it open new ones. */
  close(): void {
    this.agent.destroy();
  }

  /**
   * Enrols with a CSR (DER or PEM): p10cr -> cp, `install` checks and keeps the certificate
   * (the unit's own check), certConf -> pkiConf. A certificate `install` refuses is rejected
   * in the certConf and the refusal thrown.
   */
  async enrolP10(csr: string, install: (certificatePem: string, chainPems: string[]) => Promise<unknown>): Promise<CmpEnrolled> {
    const csrDer = Buffer.from(x509.PemConverter.decodeFirst(csr));
    const t: Transaction = { sender: CertificationRequestModel.decode(csrDer, "der").info.subject, transactionID: randomBytes(16), salt: randomBytes(16) };
    const first = await this.exchange(t, undefined, cmp.bodyDer("p10cr", csrDer));
    const rep = cmp.certRepOf(first);
    if (!rep || rep.status !== cmp.PKI_STATUS.accepted || !rep.certificate) {
      throw new DeviceError("CMP_PROTOCOL", "the station answered the p10cr without a certificate: check the station's CMP endpoint");
    }
    const der = rep.certificate;
    const certificatePem = toPem("CERTIFICATE", der);
    const chainPems = first.extraCerts.map((c) => toPem("CERTIFICATE", c));
    let refusal: unknown;
    try {
      await install(certificatePem, chainPems);
    } catch (e) {
      refusal = e;
    }
    const why = refusal === undefined ? undefined : String((refusal as Error).message ?? refusal);
    const conf = await this.exchange(t, first.header.senderNonce, cmp.certConfBody(der, rep.certReqId, why));
    if (refusal !== undefined) throw refusal;
    if (conf.bodyType !== "pkiconf") throw new DeviceError("CMP_PROTOCOL", "the station did not answer the certConf with pkiConf");
    return { certificatePem, chainPems };
  }

  /** One request and its checked answer: the MAC, the transaction, our nonce back; a CMP error becomes CMP_REFUSED. */
  private async exchange(t: Transaction, recipNonce: Buffer | undefined, body: Buffer): Promise<cmp.CmpMessage> {
    const senderNonce = randomBytes(16);
    const header: cmp.CmpHeader = {
      pvno: cmp.PVNO_CMP2000,
      sender: { type: "directoryName", value: t.sender },
      recipient: { type: "directoryName", value: [] },
      messageTime: Date.now(),
      senderKID: Buffer.from(this.o.reference),
      transactionID: t.transactionID,
      senderNonce,
      recipNonce,
    };
    const request = cmp.protectedMessageDer(header, body, undefined, this.o.secret, { salt: t.salt, iterationCount: ITERATIONS, keyCache: this.ownKeys });
    let answer: { status: number; bytes: Buffer };
    try {
      answer = await this.post(request);
    } catch (e) {
      throw new DeviceError("CMP_UNREACHABLE", `the station's CMP endpoint ${this.o.url} did not answer (${(e as Error).message}): check the URL and that the station runs with --cmp`, { cause: e });
    }
    // RFC 6712: every PKIMessage, refusals included, comes with 200; anything else is not a CMP endpoint.
    if (answer.status !== 200) throw new DeviceError("CMP_UNREACHABLE", `${this.o.url} answered HTTP ${answer.status}, not CMP: check the URL (the station serves /.well-known/cmp and /pkix/) and that the station runs with --cmp`);
    let message: cmp.CmpMessage;
    let error: ReturnType<typeof cmp.errorOf>;
    try {
      message = cmp.decodeMessage(answer.bytes);
      error = cmp.errorOf(message);
    } catch (cause) {
      throw new DeviceError("CMP_PROTOCOL", "the station's answer is not a PKIMessage", { cause });
    }
    // Reported before its MAC is checked (a wrong secret gets an unprotected error): it changes nothing on the unit.
    if (error) throw new DeviceError("CMP_REFUSED", `the station refused (${error.failures.join(", ") || "no failure info"}): ${error.text}`);
    cmp.verifyPbm(message, this.o.secret, this.stationKeys);
    const same = (a: Buffer | undefined, b: Buffer) => a !== undefined && a.length === b.length && timingSafeEqual(a, b);
    if (!same(message.header.transactionID, t.transactionID) || !same(message.header.recipNonce, senderNonce)) {
      throw new DeviceError("CMP_PROTOCOL", "the station's answer is not for this request (transactionID or recipNonce differ)");
    }
    return message;
  }

  /** RFC 6712 §3.3: the PKIMessage POSTed as application/pkixcmp, on a kept connection. */
  private post(body: Buffer): Promise<{ status: number; bytes: Buffer }> {
    const send = this.url.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(this.url, { method: "POST", agent: this.agent, timeout: this.o.timeoutMs, headers: { "content-type": "application/pkixcmp", "content-length": body.length } }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes: Buffer.concat(chunks) }));
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`no answer within ${this.o.timeoutMs} ms`)));
      req.on("error", reject);
      req.end(body);
    });
  }
}
