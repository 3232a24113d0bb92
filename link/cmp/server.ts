/**
 * The station as an RFC 9483 Lightweight CMP endpoint over HTTP (RFC 6712): units enrol
 * themselves (e.g. with `openssl cmp`), and each ir, cr or p10cr becomes a unit on the line,
 * a `UnitLink` the station's per-unit pipeline drives like any fixture's unit.
 *
 * Answers are protected by PasswordBasedMac with the line's secret, not signed by the
 * station key: a unit in the factory has no certificate to check a signature against but
 * has the secret, and a signature per answer (ip and pkiConf: two a unit) would cost HSM time
 * on the line, where the factory CA's signature is the one that must be paid for.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import { NameModel, x509, type NameDer } from "../../pki/index.js";
import { UnitError } from "../errors.js";
import type { KeyRequest, UnitFixture, UnitLink } from "../driver.js";
import { PVNO_CMP2000, PVNO_CMP2021, decodeMessage, type CmpHeader, type CmpMessage, type PKIFailure } from "./models.js";
import { CmpRefusal, answerHeader, certRepBody, enrolRequestOf, errorBody, genpBody } from "./messages.js";
import { PbmKeyCache, protectedMessageDer, verifyPbm } from "./protection.js";
import { CmpUnitLink, type PendingAnswer } from "./unit-link.js";

/** A PKIMessage larger than this is refused unread: an ir with a P-521 key is under 2 KiB. */
export const MAX_CMP_MESSAGE_BYTES = 64 * 1024;
/** RFC 9483 §3.1 messageTime: a message older (or newer) than this is refused as a replay or a wrong clock. */
export const CMP_MESSAGE_WINDOW_MS = 10 * 60_000;
/** Enrolments waiting for a free slot beyond which a request is answered systemUnavail: each holds an open HTTP request. */
export const MAX_WAITING_ENROLMENTS = 1024;
/** The paths RFC 9483 §6.1 (/.well-known/cmp, with an optional /p/LABEL) and OpenSSL's `-server HOST:PORT/pkix/` use. */
const PATHS = /^\/(?:\.well-known\/cmp(?:\/p\/[A-Za-z0-9_.-]{1,64})?|pkix)\/?$/;
const CONTENT_TYPE = "application/pkixcmp";
/** The iteration count of the station's own PBM: keyed once per run through its fixed salt (see PbmKeyCache). */
const ANSWER_ITERATIONS = 10_000;
/** Keys of units' requests kept for their certConf (same salt, RFC 4210 §5.1.3.1): a few per slot, more waste memory on salts a sender chose. */
const REQUEST_KEYS = 64;

export interface CmpFixtureOptions {
  host: string;
  /** 0: any free port (see `port` once listening). */
  port: number;
  /** The line's bootstrap secret, shared with its units (PasswordBasedMac). */
  secret: Uint8Array;
  /** The station's name in its answers' sender, e.g. "CN=station-1". */
  name: string;
  /** The vendor root, given to the unit in caPubs (trusted through the MAC), and the chain below it for extraCerts. */
  rootPem?: string;
  /** How long the station waits for a unit's certConf after its ip/cp. */
  timeoutMs: number;
  now?: () => Date;
}

export class CmpFixture implements UnitFixture<KeyRequest> {
  private readonly server: Server;
  private readonly secret: Uint8Array;
  private readonly sender: NameDer;
  private readonly rootDer: Buffer | undefined;
  /** The chain's DER by its PEM: the same factory CA goes into every answer. */
  private readonly chainDer = new Map<string, Buffer>();
  private readonly salt = randomBytes(16);
  private readonly answerKeys = new PbmKeyCache(1);
  private readonly requestKeys = new PbmKeyCache(REQUEST_KEYS);
  private readonly now: () => Date;
  private readonly queue: CmpUnitLink[] = [];
  private readonly waiting: Array<(link: UnitLink<KeyRequest> | undefined) => void> = [];
  /** Transactions with a unit on the line, by transactionID (hex). */
  private readonly transactions = new Map<string, CmpUnitLink>();
  /** senderNonces seen within the message window (hex -> when seen): a second sight is a replay. */
  private readonly nonces = new Map<string, number>();
  private stopped = false;
  private closed = false;

  private constructor(private readonly o: CmpFixtureOptions) {
    this.secret = o.secret;
    this.sender = NameModel.decode(Buffer.from(new x509.Name(o.name).toArrayBuffer()), "der");
    this.rootDer = o.rootPem ? Buffer.from(x509.PemConverter.decodeFirst(o.rootPem)) : undefined;
    this.now = o.now ?? (() => new Date());
    this.server = createServer((req, res) => this.handle(req, res));
  }

  static async listen(o: CmpFixtureOptions): Promise<CmpFixture> {
    const f = new CmpFixture(o);
    await new Promise<void>((resolve, reject) => {
      f.server.once("error", (cause) => reject(new UnitError("FIXTURE_UNREACHABLE", `the CMP endpoint cannot listen on ${o.host}:${o.port}: ${(cause as Error).message}; choose another --cmp port`, { cause })));
      f.server.listen(o.port, o.host, () => resolve());
    });
    return f;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  next(): Promise<UnitLink<KeyRequest> | undefined> {
    const link = this.queue.shift();
    if (link) return Promise.resolve(link);
    if (this.stopped) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** No more units: requests from now on are refused, units waiting for a slot answered so; units on the line finish. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const resolve of this.waiting.splice(0)) resolve(undefined);
    for (const link of this.queue.splice(0)) {
      link.failed("LINE_STOPPED", "the line is stopping: enrol again at the next run");
      void link.close();
    }
  }

  async close(): Promise<void> {
    this.stop();
    if (this.closed) return;
    this.closed = true;
    for (const link of this.transactions.values()) await link.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * Sends an answer to `request` under the line's PBM (an answer to a message whose MAC failed
   * goes unprotected, RFC 9483 §3.6.4); `body` and `extraCerts` as DER.
   */
  private answer(res: ServerResponse, request: CmpHeader | undefined, body: Buffer, protect: boolean, extraCerts?: Buffer[]): CmpHeader {
    const header = answerHeader(request, this.sender);
    const der = protectedMessageDer(header, body, extraCerts, protect ? this.secret : undefined, { salt: this.salt, iterationCount: ANSWER_ITERATIONS, keyCache: this.answerKeys });
    if (!res.headersSent && !res.destroyed) res.writeHead(200, { "content-type": CONTENT_TYPE, "content-length": der.length, "cache-control": "no-cache" }).end(der);
    return header;
  }

  private refuse(res: ServerResponse, request: CmpHeader | undefined, failure: PKIFailure, text: string, protect = true): void {
    this.answer(res, request, errorBody(failure, text), protect);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (!PATHS.test(new URL(req.url ?? "/", "http://x").pathname)) {
      res.writeHead(404, { "content-type": "text/plain" }).end("CMP is served at /.well-known/cmp and /pkix/\n");
      return;
    }
    if (req.method !== "POST") {
      res.writeHead(405, { allow: "POST", "content-type": "text/plain" }).end("POST a PKIMessage (application/pkixcmp)\n");
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_CMP_MESSAGE_BYTES) {
        if (!over) {
          res.setHeader("connection", "close");
          this.refuse(res, undefined, "badDataFormat", `the PKIMessage is larger than ${MAX_CMP_MESSAGE_BYTES} bytes`, false);
        }
        over = true;
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on("end", () => {
      if (!over) this.dispatch(Buffer.concat(chunks), res);
    });
    req.on("error", () => undefined);
  }

  private dispatch(der: Buffer, res: ServerResponse): void {
    let message: CmpMessage;
    try {
      message = decodeMessage(der);
    } catch {
      return this.refuse(res, undefined, "badDataFormat", "the request is not a DER PKIMessage (RFC 4210 §5.1)", false);
    }
    try {
      verifyPbm(message, this.secret, this.requestKeys);
    } catch (e) {
      this.refuse(res, message.header, "badMessageCheck", `${(e as Error).message}`, false);
      return;
    }
    const header = message.header;
    try {
      this.checkHeader(header);
      switch (message.bodyType) {
        case "ir":
        case "cr":
        case "p10cr":
          return this.enrol(message, res);
        case "certConf":
          return this.confirm(message, res);
        case "genm":
          this.answer(res, header, genpBody(message, this.rootDer ? [this.rootDer] : []), true);
          return;
        default:
          throw new CmpRefusal("badRequest", "the station does not answer this message type: send ir, cr, p10cr, certConf or genm");
      }
    } catch (e) {
      if (e instanceof CmpRefusal) return this.refuse(res, header, e.failure, e.message);
      // A body that is not what its tag says, under a MAC that holds: the unit's client can read why.
      if (e instanceof UnitError && e.code === "CMP_MALFORMED") return this.refuse(res, header, "badDataFormat", e.message);
      throw e;
    }
  }

  /** RFC 9483 §3.1: version, transactionID and senderNonce of 128 bits or more, a fresh messageTime, a nonce not seen before. */
  private checkHeader(h: CmpHeader): void {
    if (h.pvno !== PVNO_CMP2000 && h.pvno !== PVNO_CMP2021) throw new CmpRefusal("unsupportedVersion", `pvno ${h.pvno} is not spoken: use 2 or 3`);
    if (!h.transactionID || h.transactionID.byteLength < 16 || h.transactionID.byteLength > 64) throw new CmpRefusal("badRequest", "the transactionID must be 16 to 64 octets");
    if (!h.senderNonce || h.senderNonce.byteLength < 16 || h.senderNonce.byteLength > 64) throw new CmpRefusal("badSenderNonce", "the senderNonce must be 16 to 64 octets");
    const now = this.now().getTime();
    if (h.messageTime !== undefined && Math.abs(h.messageTime - now) > CMP_MESSAGE_WINDOW_MS) {
      throw new CmpRefusal("badTime", `the messageTime ${new Date(h.messageTime).toISOString()} is more than ${CMP_MESSAGE_WINDOW_MS / 60_000} minutes from the station's clock: a replayed message, or the unit's clock is wrong`);
    }
    const nonce = h.senderNonce.toString("hex");
    if (this.nonces.has(nonce)) throw new CmpRefusal("badRequest", "this message was seen before (its senderNonce repeats): a replayed message is refused");
    for (const [n, at] of this.nonces) {
      if (now - at <= CMP_MESSAGE_WINDOW_MS) break;
      this.nonces.delete(n);
    }
    this.nonces.set(nonce, now);
  }

  private enrol(message: CmpMessage, res: ServerResponse): void {
    const request = enrolRequestOf(message);
    if (this.stopped) throw new CmpRefusal("systemUnavail", "the line is stopping: enrol again at the next run");
    if (this.queue.length >= MAX_WAITING_ENROLMENTS) throw new CmpRefusal("systemUnavail", `${MAX_WAITING_ENROLMENTS} units already wait for a slot: enrol again in a moment`);
    const tx = message.header.transactionID!.toString("hex");
    const pending: PendingAnswer = {
      header: message.header,
      respond: (body, extraCerts) => this.answer(res, message.header, body, true, extraCerts),
    };
    const link = new CmpUnitLink({
      request,
      answer: pending,
      timeoutMs: this.o.timeoutMs,
      certRep: (der) => certRepBody(request.kind, der, this.rootDer),
      chain: (pems) => pems.map((pem) => this.chainDer.get(pem) ?? this.chainDer.set(pem, Buffer.from(x509.PemConverter.decodeFirst(pem))).get(pem)!),
    });
    // The same transaction again (its answer was lost): the earlier unit is let go first, so the serial is free for this one.
    const earlier = this.transactions.get(tx);
    this.transactions.set(tx, link);
    void link.closed.then(() => {
      if (this.transactions.get(tx) === link) this.transactions.delete(tx);
    });
    // The unit hung up before its answer: the line lets go of it (a unit not yet seated never is).
    res.on("close", () => {
      if (!res.writableEnded) this.drop(link);
    });
    const seat = () => {
      const waiter = this.waiting.shift();
      if (waiter) waiter(link);
      else this.queue.push(link);
    };
    if (earlier) {
      this.drop(earlier);
      // The earlier unit's pipeline lets go of its serial in the microtasks after it is closed: seat this one behind them.
      void earlier.closed.then(() => setImmediate(seat));
    } else seat();
  }

  private drop(link: CmpUnitLink): void {
    link.abandon();
    const queued = this.queue.indexOf(link);
    if (queued >= 0) void this.queue.splice(queued, 1)[0]!.close();
  }

  private confirm(message: CmpMessage, res: ServerResponse): void {
    const tx = message.header.transactionID!.toString("hex");
    const link = this.transactions.get(tx);
    if (!link) throw new CmpRefusal("badRequest", "no enrolment of this transaction waits for a certConf");
    link.confirmed(message, { header: message.header, respond: (body) => this.answer(res, message.header, body, true) });
  }
}
