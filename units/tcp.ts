import { connect, type Socket } from "node:net";
import type { UnitFixture, UnitLink } from "./driver.js";
import { UnitError } from "./errors.js";
import {
  FrameDecoder,
  MAX_IN_FLIGHT,
  MAX_REQUEST_ID,
  encodeFrame,
  parseResponse,
  parseResult,
  type GenkeyResult,
  type HelloResult,
  type InstallResult,
  type OpResults,
  type StatusResult,
  type UnitKeyAlgorithm,
  type UnitOp,
  type UnitRequestBody,
} from "./protocol.js";

export interface TcpFixtureOptions {
  /** How long one request may wait for its answer (default 10 s). */
  timeoutMs?: number;
  /** How long a connection attempt may take (default: timeoutMs). */
  connectTimeoutMs?: number;
}

export const DEFAULT_UNIT_TIMEOUT_MS = 10_000;

interface Pending {
  op: UnitOp;
  resolve: (value: never) => void;
  reject: (e: UnitError) => void;
  timer: NodeJS.Timeout;
}

/**
 * The station's end of one TCP connection to a unit. Requests may overlap (each carries an
 * id); each has its own timeout. A timed-out request's late answer is recognised by its id
 * and ignored, and the link stays usable. Garbage from the unit drops the link; a dropped
 * link rejects everything outstanding and everything asked later.
 */
class TcpUnitLink implements UnitLink {
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Pending>();
  /** Ids of requests that timed out: their answers may still come and are dropped. */
  private readonly abandoned = new Set<number>();
  private readonly closed: Promise<void>;
  private nextId = 1;
  /** Why the link is dead, once it is. */
  private ended: UnitError | undefined;
  private first: HelloResult | undefined;
  /** Why the unit's first hello failed, if it did. */
  private helloFailure: UnitError | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly where: string,
    private readonly timeoutMs: number,
  ) {
    socket.setNoDelay(true);
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (e: NodeJS.ErrnoException) => this.fail(this.disconnected(`failed (${e.code ?? e.message})`, e)));
    socket.on("close", () => this.fail(this.disconnected("was closed by the unit")));
  }

  private get who(): string {
    return this.first ? `unit ${this.first.serial} at ${this.where}` : `the unit at ${this.where}`;
  }

  private disconnected(what: string, cause?: unknown): UnitError {
    return new UnitError("UNIT_DISCONNECTED", `the connection to ${this.who} ${what}: reseat the unit and retry`, { cause, serial: this.first?.serial });
  }

  /** Ends the link with `e`: every outstanding request rejects with it; later ones too. */
  private fail(e: UnitError): void {
    this.ended ??= e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.ended);
    }
    this.pending.clear();
    this.abandoned.clear();
  }

  private violation(e: unknown): void {
    const why = e instanceof UnitError ? e.message : String(e);
    this.fail(new UnitError("UNIT_PROTOCOL", `${this.who} broke the link protocol (${why}); the link was dropped: check the unit's firmware, then reseat it`, { cause: e, serial: this.first?.serial }));
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    const { frames, error } = this.decoder.push(chunk);
    for (const frame of frames) {
      if (!this.onFrame(frame)) return;
    }
    if (error) this.violation(error);
  }

  /** Settles the request a frame answers; false when the frame broke the protocol (the link is then dropped). */
  private onFrame(frame: Record<string, unknown>): boolean {
    let response;
    try {
      response = parseResponse(frame);
    } catch (e) {
      this.violation(e);
      return false;
    }
    const p = this.pending.get(response.id);
    if (!p) {
      if (this.abandoned.delete(response.id)) return true;
      this.violation(new UnitError("UNIT_PROTOCOL", `an answer to request ${response.id}, which is not outstanding`));
      return false;
    }
    this.pending.delete(response.id);
    clearTimeout(p.timer);
    if (!response.ok) {
      const { code, message } = response.error;
      p.reject(new UnitError("UNIT_REFUSED", `${this.who} refused ${p.op}: ${code}: ${message}`, { unitCode: code, serial: this.first?.serial }));
      return true;
    }
    let result;
    try {
      result = parseResult(p.op, response.result);
      if ((p.op === "status" || p.op === "hello") && this.first && (result as StatusResult).serial !== this.first.serial) {
        throw new UnitError("UNIT_PROTOCOL", `a ${p.op} naming serial ${(result as StatusResult).serial}, not ${this.first.serial} as in its hello`);
      }
    } catch (e) {
      // A wrongly shaped answer fails its request with the same error as the link.
      this.pending.set(response.id, p);
      this.violation(e);
      return false;
    }
    p.resolve(result as never);
    return true;
  }

  private request<O extends UnitOp>(body: UnitRequestBody & { op: O }): Promise<OpResults[O]> {
    if (this.ended) return Promise.reject(this.ended);
    if (this.pending.size >= MAX_IN_FLIGHT) {
      return Promise.reject(new UnitError("UNIT_PROTOCOL", `more than ${MAX_IN_FLIGHT} requests outstanding to ${this.who}: wait for answers first`, { kind: "internal" }));
    }
    const id = this.nextId;
    this.nextId = this.nextId >= MAX_REQUEST_ID ? 1 : this.nextId + 1;
    let frame: Buffer;
    try {
      frame = encodeFrame({ v: 1, id, ...body });
    } catch (e) {
      return Promise.reject(new UnitError("UNIT_PROTOCOL", `the ${body.op} request for ${this.who} is too large for one frame (${(e as Error).message}): send a shorter chain`, { cause: e }));
    }
    return new Promise<OpResults[O]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.abandoned.add(id);
        reject(new UnitError("UNIT_TIMEOUT", `${this.who} did not answer ${body.op} within ${this.timeoutMs} ms: check the unit, or allow a longer timeout`, { serial: this.first?.serial }));
      }, this.timeoutMs);
      this.pending.set(id, { op: body.op, resolve: resolve as (v: never) => void, reject, timer });
      this.socket.write(frame);
    });
  }

  /**
   * Answered from the hello `TcpFixture.next()` made (a unit's identity does not change
   * while it sits in its slot), which saves a round trip per unit.
   */
  async hello(): Promise<HelloResult> {
    if (this.first) return { ...this.first };
    if (this.helloFailure) throw this.helloFailure;
    const hello = await this.request({ op: "hello" });
    this.first = hello;
    return { ...hello };
  }

  genkey(alg: UnitKeyAlgorithm): Promise<GenkeyResult> {
    return this.request({ op: "genkey", alg });
  }

  install(certificatePem: string, chainPems: readonly string[]): Promise<InstallResult> {
    return this.request({ op: "install", certificate: certificatePem, chain: [...chainPems] });
  }

  status(): Promise<StatusResult> {
    return this.request({ op: "status" });
  }

  close(): Promise<void> {
    this.fail(this.disconnected("was closed by the station"));
    this.socket.destroy();
    return this.closed;
  }

  /**
   * Ends a link whose unit failed its first hello: the connection is dropped, and hello()
   * and every other call reject with that failure, so the station records it against the
   * unit in this slot instead of losing the unit (or the line) to a fixture error.
   */
  async failHello(e: UnitError): Promise<void> {
    this.helloFailure = e;
    this.fail(e);
    this.socket.destroy();
    await this.closed;
  }
}

function openSocket(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const where = `${host}:${port}`;
    const socket = connect({ host, port, noDelay: true });
    const done = (e?: UnitError) => {
      clearTimeout(timer);
      socket.off("error", onError);
      if (e) {
        socket.destroy();
        reject(e);
      } else {
        resolve(socket);
      }
    };
    const onError = (e: NodeJS.ErrnoException) =>
      done(new UnitError("FIXTURE_UNREACHABLE", `cannot reach the unit fixture at ${where} (${e.code ?? e.message}): check that it is running and the host and port are right`, { cause: e }));
    const timer = setTimeout(
      () => done(new UnitError("FIXTURE_UNREACHABLE", `the unit fixture at ${where} did not accept a connection within ${timeoutMs} ms: check that it is running and reachable`)),
      timeoutMs,
    );
    socket.once("error", onError);
    socket.once("connect", () => done());
  });
}

/**
 * A fixture reached over TCP (the simulator, or a real fixture's network bridge): each new
 * connection is the unit in the next slot. `next()` connects and says hello; the fixture
 * signals the end of the line by answering that hello with NO_MORE_UNITS (protocol.ts),
 * after which `next()` resolves undefined without connecting again. A unit that fails that
 * hello (silence, garbage, hang-up, another refusal) is still returned: its link's calls
 * reject with the failure. Only a fixture that cannot be reached rejects `next()`.
 */
export class TcpFixture implements UnitFixture {
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private exhausted = false;

  constructor(
    readonly host: string,
    readonly port: number,
    options: TcpFixtureOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_UNIT_TIMEOUT_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? this.timeoutMs;
  }

  async next(): Promise<UnitLink | undefined> {
    if (this.exhausted) return undefined;
    const socket = await openSocket(this.host, this.port, this.connectTimeoutMs);
    const link = new TcpUnitLink(socket, `${this.host}:${this.port}`, this.timeoutMs);
    try {
      await link.hello();
      return link;
    } catch (e) {
      if (e instanceof UnitError && e.code === "UNIT_REFUSED" && e.unitCode === "NO_MORE_UNITS") {
        await link.close();
        this.exhausted = true;
        return undefined;
      }
      if (e instanceof UnitError) {
        await link.failHello(e);
        return link;
      }
      await link.close();
      throw e;
    }
  }
}
