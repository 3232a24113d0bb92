import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Refusal } from "../device/index.js";
import { MAX_IN_FLIGHT, FrameDecoder, encodeFrame, parseRequest, safeText, type ParsedRequest, type UnitResponse } from "../link/index.js";
import type { SimUnit } from "./unit.js";

/**
 * The simulator's end of one connection: a fixture slot. It serves one unit at a time, the
 * next one in line when the station asks `next`, and none once the line is empty. When the
 * connection closes, a unit that was asked nothing but hello, and answered every hello,
 * goes back to the line: the station may never have read its answer (a `next` sent behind
 * an install that then timed out), and nothing about the unit changed.
 */
export class SimLink {
  private readonly decoder = new FrameDecoder();
  private readonly abort = new AbortController();
  private queued = 0;
  /** No further requests are read: dropped, closed, or NO_MORE_UNITS answered. */
  private done = false;
  /** Corks of the socket not yet undone (see onData and write). */
  private corked = 0;
  /** The unit in the slot was asked nothing but hello, and answered it. */
  private untouched = true;
  /** Settles when every request read so far has been handled. */
  tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly socket: Socket,
    private unit: SimUnit | undefined,
    /** The next unit in line for this slot, or undefined when the line is empty. */
    private readonly seat: () => SimUnit | undefined,
    private readonly slowMs: number,
    /** The link is closed; `unseen` is its unit if it goes back to the line. */
    onGone: (link: SimLink, unseen: SimUnit | undefined) => void,
  ) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => {
      // ECONNRESET and friends: "close" follows and cleans up.
    });
    socket.on("close", () => {
      this.done = true;
      this.abort.abort();
      void this.tail.then(() => onGone(this, this.untouched ? this.unit : undefined));
    });
  }

  /** Drops the connection at once (protocol violation, disconnect fault, simulator closing). */
  drop(): void {
    this.done = true;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.done) return;
    const { frames, error } = this.decoder.push(chunk);
    // Requests that came together (an install with a `next` behind it) are answered in one
    // write when their answers are ready together; see write().
    if (frames.length > 1) {
      this.socket.cork();
      this.corked++;
    }
    for (const frame of frames) {
      const parsed = parseRequest(frame);
      if (parsed.kind === "violation" || this.queued >= MAX_IN_FLIGHT) return this.drop();
      this.queued++;
      this.tail = this.tail.then(() => this.handle(parsed));
    }
    // After garbage nothing more is read; requests queued before it die with the connection.
    if (error) this.drop();
  }

  private async handle(p: Exclude<ParsedRequest, { kind: "violation" }>): Promise<void> {
    const id = p.kind === "refuse" ? p.id : p.request.id;
    const refuse = (code: string, message: string): UnitResponse => ({ v: 1, id, ok: false, error: { code, message } });
    try {
      if (this.done) return;
      // The station is done with this slot's unit, whatever its state: the next one in line takes the slot.
      if (p.kind === "request" && p.request.op === "next") {
        this.unit = this.seat();
        this.untouched = true;
      }
      if (p.kind === "refuse" || (p.request.op !== "hello" && p.request.op !== "next")) this.untouched = false;
      if (!this.unit) {
        // End of the line (docs/unit-link.md): answer once, then close.
        this.done = true;
        this.write(refuse("NO_MORE_UNITS", "the fixture has no more units"));
        this.socket.end();
        return;
      }
      if (p.kind === "refuse") return await this.reply(refuse(p.code, p.message));
      // `next` is answered with the new unit's hello.
      const request = p.request.op === "next" ? ({ v: 1, id, op: "hello" } as const) : p.request;
      let answer: UnitResponse;
      try {
        answer = { v: 1, id, ok: true, result: await this.unit.run(request) };
      } catch (e) {
        if (!(e instanceof Refusal)) {
          answer = refuse("INTERNAL", safeText(`unit ${this.unit.serial} failed: ${e instanceof Error ? e.message : String(e)}`));
        } else {
          answer = refuse(e.code, e.message);
        }
      }
      if (request.op === "genkey" && answer.ok) {
        if (this.unit.faults.has("disconnect")) return this.drop();
        if (this.unit.faults.has("garbage")) {
          // A length prefix of at least 0xff000000: never a valid frame, whatever follows.
          return this.write(Buffer.concat([Buffer.from([0xff]), randomBytes(31)]));
        }
      }
      // A unit that refused its hello was seen: the station acts on refusals (and may hang up).
      if (!answer.ok) this.untouched = false;
      await this.reply(answer);
    } catch {
      // Aborted by a close, or the socket failed: nothing left to answer, and a unit that
      // could not answer (a slow one) is not tried again.
      this.untouched = false;
      this.drop();
    } finally {
      this.queued--;
    }
  }

  private async reply(message: UnitResponse): Promise<void> {
    if (this.unit?.faults.has("slow")) await sleep(this.slowMs, undefined, { signal: this.abort.signal });
    this.write(encodeFrame(message));
  }

  private write(data: Buffer | UnitResponse): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.write(Buffer.isBuffer(data) ? data : encodeFrame(data));
    if (this.corked > 0) {
      // Flushed once the answers made in this turn are written: one that takes longer (a slow
      // unit's hello) must not hold back the answer before it.
      this.corked--;
      process.nextTick(() => this.socket.uncork());
    }
  }
}
