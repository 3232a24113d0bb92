/**
 * One unit's CMP enrolment as the station's pipeline drives it (RFC 9483 §4.1): the unit's
 * request answers hello and genkey at once, `install` answers it with ip/cp and waits for the
 * certConf, the link's end answers that with pkiConf, and a refusal with an error message.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { sha256Hex } from "../../core/index.js";
import { oid, x509 } from "../../pki/index.js";
import { UnitError } from "../errors.js";
import type { KeyRequest, UnitLink } from "../driver.js";
import type { HelloResult, InstallResult, StatusResult } from "../protocol.js";
import { PKICONF_BODY, PKI_STATUS, intOf, type CmpHeader, type CmpMessage } from "./models.js";
import { certHash, certStatusesOf, errorBody, failureFor, type EnrolRequest } from "./messages.js";

/** An HTTP response a unit waits on; `respond` sends a body's DER and returns the header it was sent with. */
export interface PendingAnswer {
  header: CmpHeader;
  respond(body: Buffer, extraCerts?: Buffer[]): CmpHeader;
}

/** RFC 9480 §2.10: a certConf's hashAlg (pvno 3) names its hash. */
const HASH_OIDS: Record<string, string> = { "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384", "2.16.840.1.101.3.4.2.3": "sha512" };

interface AwaitedConfirm {
  der: Buffer;
  sentNonce: Buffer;
  resolve(r: InstallResult): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class CmpUnitLink implements UnitLink<KeyRequest> {
  readonly requestFirst = true;
  /** Settles once the line closed the link, its unit done (its transaction and serial free for a retry). */
  readonly closed: Promise<void>;
  private markClosed!: () => void;
  private request?: PendingAnswer;
  private confirmation?: PendingAnswer;
  /** The unit rejected its certificate in certConf: it is still answered with pkiConf (RFC 9483 §4.1.1). */
  private rejected = false;
  private awaited?: AwaitedConfirm;
  private ended = false;
  /** The line took the unit (hello), and told how it ended (delivered or failed); closed once both the line closed it and it is told. */
  private seated = false;
  private told = false;
  private lineClosed = false;

  constructor(
    private readonly p: {
      request: EnrolRequest;
      answer: PendingAnswer;
      timeoutMs: number;
      certRep(der: Buffer): Buffer;
      chain(chainPems: readonly string[]): Buffer[];
    },
  ) {
    this.request = p.answer;
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }

  get serial(): string {
    return this.p.request.serial;
  }

  async hello(): Promise<HelloResult> {
    this.seated = true;
    return { serial: this.p.request.serial, model: "", hwType: "", firmware: "cmp", protocol: 1 };
  }

  async genkey(): Promise<KeyRequest> {
    return this.p.request.keyRequest;
  }

  async status(): Promise<StatusResult> {
    return { serial: this.p.request.serial, state: "new" };
  }

  /** Answers the request with ip/cp and the chain in extraCerts, then waits for the unit's certConf. */
  install(certificatePem: string, chainPems: readonly string[]): Promise<InstallResult> {
    const answer = this.request;
    if (!answer || this.ended) return Promise.reject(new UnitError("UNIT_DISCONNECTED", `unit ${this.serial} is gone (its HTTP request ended) before its certificate was sent: it stays issued and is sent again when the unit asks again`, { serial: this.serial }));
    this.request = undefined;
    const der = Buffer.from(x509.PemConverter.decodeFirst(certificatePem));
    const sent = answer.respond(this.p.certRep(der), this.p.chain(chainPems));
    return new Promise<InstallResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.awaited = undefined;
        reject(new UnitError("UNIT_TIMEOUT", `unit ${this.serial} sent no certConf within ${this.p.timeoutMs} ms: its certificate stays issued, unconfirmed`, { serial: this.serial }));
      }, this.p.timeoutMs);
      this.awaited = { der, sentNonce: sent.senderNonce!, resolve, reject, timer };
    });
  }

  /** The unit's certConf (RFC 9483 §4.1.1): its hash of the certificate becomes the install's fingerprint; CMP_MALFORMED if it is no CertConfirmContent. */
  confirmed(message: CmpMessage, answer: PendingAnswer): void {
    const awaited = this.awaited;
    if (!awaited) {
      answer.respond(errorBody("badRequest", "no certificate of this transaction awaits confirmation"));
      return;
    }
    const statuses = certStatusesOf(message);
    const recipNonce = message.header.recipNonce ?? Buffer.alloc(0);
    if (recipNonce.length !== awaited.sentNonce.length || !timingSafeEqual(recipNonce, awaited.sentNonce)) {
      answer.respond(errorBody("badRecipientNonce", "the certConf's recipNonce is not the senderNonce of the station's answer"));
      return;
    }
    const status = statuses.length === 1 ? statuses[0]! : undefined;
    // The certReqId of the answer it confirms: 0 for an ir or cr, -1 for a p10cr (RFC 9483 §4.1.1, RFC 9480 §2.10).
    if (!status || status.certReqId !== (this.p.request.kind === "p10cr" ? -1 : 0)) {
      answer.respond(errorBody("badRequest", "the certConf must confirm exactly the one certificate sent"));
      return;
    }
    clearTimeout(awaited.timer);
    this.awaited = undefined;
    this.confirmation = answer;
    if (status.statusInfo && intOf(status.statusInfo.status) === PKI_STATUS.rejection) {
      this.rejected = true;
      const why = status.statusInfo.statusString?.join("; ") ?? "no reason given";
      awaited.reject(new UnitError("UNIT_REFUSED", `unit ${this.serial} rejected its certificate in certConf (${why.slice(0, 200)}): it stays issued, unconfirmed`, { serial: this.serial, unitCode: "CERT_REJECTED" }));
      return;
    }
    const got = status.certHash;
    const hash = status.hashAlg ? HASH_OIDS[oid(status.hashAlg.algorithm)] : undefined;
    const expected = hash ? createHash(hash).update(awaited.der).digest() : status.hashAlg ? undefined : certHash(awaited.der);
    const same = expected !== undefined && got.length === expected.length && timingSafeEqual(got, expected);
    awaited.resolve({ fingerprint: same ? sha256Hex(awaited.der) : got.toString("hex") });
  }

  /** The unit's delivery is recorded: its certConf is answered with pkiConf only now, so a confirmed unit is on record. */
  delivered(): void {
    this.confirmation?.respond(PKICONF_BODY);
    this.confirmation = undefined;
    this.tell();
  }

  failed(code: string, message: string): void {
    this.tell();
    if (this.request) {
      this.request.respond(errorBody(failureFor(code), message));
      this.request = undefined;
    } else if (this.confirmation) {
      this.confirmation.respond(this.rejected ? PKICONF_BODY : errorBody(failureFor(code), message));
      this.confirmation = undefined;
    }
  }

  /**
   * Lets go of the unit without the line (its transaction came again): whatever it waits on is
   * answered, a pending install fails; `closed` settles only once the line closes the link.
   */
  abandon(): void {
    if (this.ended) return;
    this.ended = true;
    this.request?.respond(errorBody("systemUnavail", "the station ended this enrolment before it was answered: send the request again"));
    this.request = undefined;
    if (this.awaited) {
      clearTimeout(this.awaited.timer);
      this.awaited.reject(new UnitError("UNIT_DISCONNECTED", `unit ${this.serial}'s enrolment ended before its certConf: its certificate stays issued, unconfirmed`, { serial: this.serial }));
      this.awaited = undefined;
    }
  }

  /** The line is done with the unit once it closed the link and told how the unit ended (or never seated it). */
  async close(): Promise<void> {
    this.lineClosed = true;
    if (!this.seated) this.told = true;
    this.abandon();
    this.settle();
  }

  private tell(): void {
    this.told = true;
    this.settle();
  }

  private settle(): void {
    if (this.lineClosed && this.told) this.markClosed();
  }
}
