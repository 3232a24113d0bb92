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
 * The station's end of one TCP connection to a fixture: to one unit, or to a fixture slot
 * that seats unit after unit (`next`, see docs/unit-link.md). Requests may overlap (each carries
 * an id); each has its own timeout. A timed-out request's late answer is recognised by its
 * id and ignored, and the connection stays usable for that unit. Garbage from the other
 * side drops the connection; a dropped connection rejects everything outstanding and
 * everything asked later.
 */
class UnitConnection {
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Pending>();
  /** Ids of requests that timed out: their answers may still come and are dropped. */
  private readonly abandoned = new Set<number>();
  readonly closed: Promise<void>;
  private nextId = 1;
  /** Why the connection is dead, once it is. */
  ended: UnitError | undefined;
  /** The unit being served, once it said hello. */
  unit: HelloResult | undefined;
  /** A `next` sent behind the served unit's last request: the answer names the slot's next unit. */
  private seating: { id: number; answer: Promise<HelloResult> } | undefined;

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

  get who(): string {
    return this.whoIs(this.unit);
  }

  private whoIs(unit: HelloResult | undefined): string {
    return unit ? `unit ${unit.serial} at ${this.where}` : `the unit at ${this.where}`;
  }

  /** The error of a lost connection, naming `unit` (by default the one being served). */
  disconnected(what: string, cause?: unknown, unit = this.unit): UnitError {
    return new UnitError("UNIT_DISCONNECTED", `the connection to ${this.whoIs(unit)} ${what}: reseat the unit and retry`, { cause, serial: unit?.serial });
  }

  /**
   * Whether the fixture may seat another unit here: the unit offered `next`, and nothing is
   * outstanding or abandoned (a late answer must never meet the next unit's request).
   */
  get reusable(): boolean {
    const outstanding = this.pending.size - (this.seating && this.pending.has(this.seating.id) ? 1 : 0);
    return !this.ended && !this.socket.destroyed && outstanding === 0 && this.abandoned.size === 0 && this.offersNext;
  }

  get offersNext(): boolean {
    return this.unit?.ops?.includes("next") === true;
  }

  /**
   * Sends `body`, the served unit's last request, with `next` right behind it in one write:
   * the fixture answers in order, so the next unit is seated while the station is still
   * busy with this one's answer, which spares a round trip per unit. `takeSeating` hands
   * over the `next`'s answer.
   */
  requestThenSeat<O extends UnitOp>(body: UnitRequestBody & { op: O }): Promise<OpResults[O]> {
    this.socket.cork();
    try {
      const answer = this.request<O>(body);
      if (!this.ended && !this.seating) {
        const seating = this.send({ op: "next" });
        // Nobody may ever ask for it (the station closing, the connection dropped).
        seating.answer.catch(() => {});
        this.seating = seating;
      }
      return answer;
    } finally {
      this.socket.uncork();
    }
  }

  /** Whether a `next` was sent and its answer is not taken yet. */
  get seated(): boolean {
    return this.seating !== undefined;
  }

  /** The answer of a `next` already sent, if one was. */
  takeSeating(): Promise<HelloResult> | undefined {
    const seating = this.seating;
    this.seating = undefined;
    return seating?.answer;
  }

  /** An idle connection waiting in the fixture's pool keeps no process alive; one in use does. */
  hold(inUse: boolean): void {
    if (inUse) this.socket.ref();
    else this.socket.unref();
  }

  /** Ends the connection with `e`: every outstanding request rejects with it; later ones too. */
  fail(e: UnitError): void {
    this.ended ??= e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.ended);
    }
    this.pending.clear();
    this.abandoned.clear();
  }

  /** Fails with `e` and drops the connection; resolves once it is closed. */
  drop(e: UnitError): Promise<void> {
    this.fail(e);
    this.socket.destroy();
    return this.closed;
  }

  private violation(e: unknown): void {
    const why = e instanceof UnitError ? e.message : String(e);
    this.fail(new UnitError("UNIT_PROTOCOL", `${this.who} broke the link protocol (${why}); the link was dropped: check the unit's firmware, then reseat it`, { cause: e, serial: this.unit?.serial }));
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

  /** Settles the request a frame answers; false when the frame broke the protocol (the connection is then dropped). */
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
      p.reject(new UnitError("UNIT_REFUSED", `${this.who} refused ${p.op}: ${code}: ${message}`, { unitCode: code, serial: this.unit?.serial }));
      return true;
    }
    let result;
    try {
      result = parseResult(p.op, response.result);
      // `next` names a new unit; every other answer is about the unit being served.
      if ((p.op === "status" || p.op === "hello") && this.unit && (result as StatusResult).serial !== this.unit.serial) {
        throw new UnitError("UNIT_PROTOCOL", `a ${p.op} naming serial ${(result as StatusResult).serial}, not ${this.unit.serial} as in its hello`);
      }
    } catch (e) {
      // A wrongly shaped answer fails its request with the same error as the connection.
      this.pending.set(response.id, p);
      this.violation(e);
      return false;
    }
    p.resolve(result as never);
    return true;
  }

  request<O extends UnitOp>(body: UnitRequestBody & { op: O }): Promise<OpResults[O]> {
    return this.send<O>(body).answer;
  }

  private send<O extends UnitOp>(body: UnitRequestBody & { op: O }): { id: number; answer: Promise<OpResults[O]> } {
    const id = this.nextId;
    if (this.ended) return { id, answer: Promise.reject(this.ended) };
    if (this.pending.size >= MAX_IN_FLIGHT) {
      return { id, answer: Promise.reject(new UnitError("LINK_MISUSE", `more than ${MAX_IN_FLIGHT} requests outstanding to ${this.who}: wait for answers first`)) };
    }
    this.nextId = this.nextId >= MAX_REQUEST_ID ? 1 : this.nextId + 1;
    let frame: Buffer;
    try {
      frame = encodeFrame({ v: 1, id, ...body });
    } catch (e) {
      return { id, answer: Promise.reject(new UnitError("UNIT_PROTOCOL", `the ${body.op} request for ${this.who} is too large for one frame (${(e as Error).message}): send a shorter chain`, { cause: e })) };
    }
    const answer = new Promise<OpResults[O]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.abandoned.add(id);
        reject(new UnitError("UNIT_TIMEOUT", `${this.who} did not answer ${body.op} within ${this.timeoutMs} ms: check the unit, or allow a longer timeout`, { serial: this.unit?.serial }));
      }, this.timeoutMs);
      this.pending.set(id, { op: body.op, resolve: resolve as (v: never) => void, reject, timer });
      this.socket.write(frame);
    });
    return { id, answer };
  }
}

/**
 * One unit, as the station drives it over a connection of the fixture's. Once closed, the
 * link is done with its unit for good, even when the connection goes on to the next unit.
 */
class TcpUnitLink implements UnitLink {
  private released: Promise<void> | undefined;
  /** Set by a last install: the connection may be seating the next unit already. */
  private finished = false;

  constructor(
    private readonly connection: UnitConnection,
    private readonly unit: HelloResult | undefined,
    /** Why the unit's first hello failed, if it did: every call rejects with it. */
    private readonly helloFailure: UnitError | undefined,
    private readonly release: (c: UnitConnection) => Promise<void>,
    /** Whether the fixture will ask this connection's slot for another unit. */
    private readonly slotMaySeat: () => boolean = () => false,
  ) {}

  private request<O extends UnitOp>(body: UnitRequestBody & { op: O }): Promise<OpResults[O]> {
    if (this.helloFailure) return Promise.reject(this.helloFailure);
    if (this.finished) {
      return Promise.reject(new UnitError("LINK_MISUSE", `${body.op} for unit ${this.unit!.serial} after its last request: the slot may hold the next unit by now`, { serial: this.unit!.serial }));
    }
    if (this.released) {
      // The connection may serve another unit by now: its state is not this unit's.
      const ownEnd = this.connection.unit === this.unit ? this.connection.ended : undefined;
      return Promise.reject(ownEnd ?? this.connection.disconnected("was closed by the station", undefined, this.unit));
    }
    return this.connection.request<O>(body);
  }

  /** Answered from the hello `TcpFixture.next()` made (a unit's identity does not change while it sits in its slot), which saves a round trip per unit. */
  async hello(): Promise<HelloResult> {
    if (this.helloFailure) throw this.helloFailure;
    return { ...this.unit! };
  }

  genkey(alg: UnitKeyAlgorithm): Promise<GenkeyResult> {
    return this.request({ op: "genkey", alg });
  }

  install(certificatePem: string, chainPems: readonly string[], options: { last?: boolean } = {}): Promise<InstallResult> {
    const body = { op: "install" as const, certificate: certificatePem, chain: [...chainPems] };
    const seat = options.last === true && !this.finished && !this.released && !this.helloFailure && this.connection.offersNext && this.slotMaySeat();
    const answer = seat ? this.connection.requestThenSeat(body) : this.request(body);
    if (options.last) this.finished = true;
    return answer;
  }

  status(): Promise<StatusResult> {
    return this.request({ op: "status" });
  }

  close(): Promise<void> {
    this.released ??= this.release(this.connection);
    return this.released;
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
 * A fixture reached over TCP (the simulator, or a real fixture's network bridge). A new
 * connection serves the unit in the next free slot; `next()` connects and says hello. When
 * that unit offers `next` (docs/unit-link.md) its connection is kept once the station is done
 * with the unit, and a later `next()` asks it for the next unit instead of connecting again:
 * K slots keep K connections. The fixture signals the end of the line by answering hello or
 * next with NO_MORE_UNITS, after which `next()` connects no more: it hands out the units
 * already seated behind last installs (waiting for those on connections still in use) and
 * then resolves undefined, for good.
 * A unit that fails that first exchange (silence, garbage, hang-up, another refusal) is
 * still returned: its link's calls reject with the failure. Only a fixture that cannot be
 * reached rejects `next()`. A kept connection the fixture closed meanwhile is let go, and
 * `next()` connects again. `close()` drops the connections kept for reuse.
 */
export class TcpFixture implements UnitFixture {
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly where: string;
  /** Connections whose fixture slot may seat another unit, waiting for a `next()`. */
  private readonly idle: UnitConnection[] = [];
  /** Connections lent to links: one may be seating a unit behind its last install. */
  private readonly lent = new Set<UnitConnection>();
  /** `next()` calls waiting for a lent connection to come back. */
  private readonly returning: Array<() => void> = [];
  private exhausted = false;
  private closed = false;

  constructor(
    readonly host: string,
    readonly port: number,
    options: TcpFixtureOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_UNIT_TIMEOUT_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? this.timeoutMs;
    this.where = `${host}:${port}`;
  }

  async next(): Promise<UnitLink | undefined> {
    for (;;) {
      if (this.closed) return undefined;
      // A unit already seated behind a last install goes first, even once another slot found the line empty.
      const seatedAt = this.idle.findIndex((c) => c.seated);
      let kept: UnitConnection | undefined;
      let seating: Promise<HelloResult> | undefined;
      if (seatedAt >= 0) {
        kept = this.idle.splice(seatedAt, 1)[0]!;
        seating = kept.takeSeating();
      } else {
        if (this.exhausted) {
          // Undefined must mean no unit will come (a merged line stops asking): a seated unit may still be on its way back.
          if (![...this.lent].some((c) => c.seated)) return undefined;
          await new Promise<void>((resolve) => this.returning.push(resolve));
          continue;
        }
        kept = this.idle.pop();
        // A kept connection the fixture closed while it waited is of no use: let it go.
        while (kept?.ended) kept = this.idle.pop();
      }
      const connection = kept ?? new UnitConnection(await openSocket(this.host, this.port, this.connectTimeoutMs), this.where, this.timeoutMs);
      connection.hold(true);
      connection.unit = undefined;
      try {
        connection.unit = await (seating ?? connection.request(kept ? { op: "next" } : { op: "hello" }));
        this.lent.add(connection);
        return new TcpUnitLink(connection, connection.unit, undefined, (c) => this.release(c), () => !this.exhausted && !this.closed);
      } catch (e) {
        if (e instanceof UnitError && e.code === "UNIT_REFUSED" && e.unitCode === "NO_MORE_UNITS") {
          this.exhausted = true;
          const unseated = this.idle.filter((c) => !c.seated);
          this.idle.splice(0, this.idle.length, ...this.idle.filter((c) => c.seated));
          await Promise.all([connection, ...unseated].map((c) => c.drop(c.disconnected("was closed by the station"))));
          continue;
        }
        if (kept && e instanceof UnitError && e.code === "UNIT_DISCONNECTED") {
          // The fixture closed the kept connection as `next` went out: nothing was seated on it.
          await connection.drop(e);
          continue;
        }
        if (e instanceof UnitError) {
          await connection.drop(e);
          return new TcpUnitLink(connection, undefined, e, () => Promise.resolve());
        }
        await connection.drop(connection.disconnected("was closed by the station", e));
        throw e;
      }
    }
  }

  /** Drops the connections kept for reuse; `next()` then resolves undefined. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    await Promise.all(this.idle.splice(0).map((c) => c.drop(c.disconnected("was closed by the station"))));
  }

  /** A link's close(): its connection goes back to the pool when its slot can seat another unit (or has seated one already), else it is dropped. */
  private release(connection: UnitConnection): Promise<void> {
    this.lent.delete(connection);
    if (connection.reusable && !this.closed && (!this.exhausted || connection.seated)) {
      connection.hold(false);
      this.idle.push(connection);
      this.wake();
      return Promise.resolve();
    }
    this.wake();
    return connection.drop(connection.disconnected("was closed by the station"));
  }

  private wake(): void {
    for (const resolve of this.returning.splice(0)) resolve();
  }
}
