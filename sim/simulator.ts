import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { DEFAULT_HW_TYPE_OID, systemClock, type Clock } from "../core/index.js";
import { assertSerialSyntax, parseCertificate, x509 } from "../pki/index.js";
import { SimError } from "./errors.js";
import { UNIT_FAULTS, type FaultSpec, type UnitFault } from "./faults.js";
import {
  MAX_IN_FLIGHT,
  OID_SYNTAX,
  FrameDecoder,
  encodeFrame,
  isPlainText,
  parseRequest,
  safeText,
  type HelloResult,
  type OpResults,
  type ParsedRequest,
  type StatusResult,
  type UnitKeyAlgorithm,
  type UnitRequest,
  type UnitResponse,
  UNIT_OPS,
} from "../link/index.js";
import {
  InstallChecker,
  Pkcs11Keystore,
  Refusal,
  SoftKeystore,
  UnitFlash,
  certificationRequest,
  certificationRequestInfo,
  toPem,
  type KeyRef,
  type Pkcs11KeystoreOptions,
  type UnitKey,
  type UnitKeystore,
  type UnitRecord,
} from "../device/index.js";

export const SIM_HOST = "127.0.0.1";
export const SIM_LIMITS = {
  maxCount: 1_000_000,
  maxWidth: 20,
  maxPrefixChars: 40,
  maxSlowMs: 600_000,
} as const;

export type SimKeystoreOptions = { kind: "soft" } | ({ kind: "pkcs11" } & Pkcs11KeystoreOptions);

/** The units on the line as a serial range: `prefix + zero-padded(start + i, width)` for i < count. */
export interface SerialRange {
  count: number;
  prefix: string;
  start: number;
  /** Digits of the serial's number part (default 6: SN000042). */
  width?: number;
}

/** The units on the line as an explicit list, in line order (e.g. a station resuming half-done serials). */
export interface SerialList {
  serials: readonly string[];
}

export type UnitSimulatorOptions = (SerialRange | SerialList) & {
  /** Where the units keep their flash: one row per unit in `<unitsDir>/units.db` (see UnitFlash). */
  unitsDir: string;
  /** The vendor root certificate (PEM or DER) the units trust. */
  root: string | Uint8Array;
  model?: string;
  /** hwType OID the units report (default: RFC 5612 documentation arc, as core's DEFAULT_HW_TYPE_OID). */
  hwType?: string;
  firmware?: string;
  /** Where unit keys live (default soft). */
  keystore?: SimKeystoreOptions;
  faults?: readonly FaultSpec[];
  /** Delay of every answer of a unit with the `slow` fault (default 1000 ms). */
  slowMs?: number;
  /** TCP port on 127.0.0.1; 0 (default) picks a free one, see `port`. */
  port?: number;
  /** Time for the units' chain checks (default: the system clock). */
  clock?: Clock;
};

/** The serials of a line, by position, without materialising a range of a million. */
interface Line {
  count: number;
  serialAt(index: number): string;
  /** The position of `serial` on the line, if it is on it. */
  indexOf(serial: string): number | undefined;
  /** A serial the unit at `index` is not: what a wrong-serial unit puts in its CSR. */
  otherThan(index: number): string;
}

function rangeLine(r: SerialRange): Line {
  const count = wholeNumber("count", r.count, 1, SIM_LIMITS.maxCount);
  const width = wholeNumber("width", r.width ?? 6, 1, SIM_LIMITS.maxWidth);
  const start = wholeNumber("start", r.start, 0, Number.MAX_SAFE_INTEGER - count);
  const prefix = r.prefix;
  if (typeof prefix !== "string" || prefix.length > SIM_LIMITS.maxPrefixChars || !/^[A-Za-z0-9.-]*$/.test(prefix)) {
    throw fail(`prefix "${safeText(String(prefix), 60)}" is not valid: use at most ${SIM_LIMITS.maxPrefixChars} characters of A-Z a-z 0-9 . - (serialNumber is a PrintableString)`);
  }
  const last = start + count - 1;
  if (String(last).length > width) {
    throw fail(`serial numbers up to ${last} need more than ${width} digits: raise width or lower start/count`);
  }
  const serialAt = (i: number) => prefix + String(start + i).padStart(width, "0");
  try {
    assertSerialSyntax(serialAt(0));
  } catch (e) {
    throw fail(`serials like ${serialAt(0)} are not valid: ${(e as Error).message.replace(/^serial "[^"]*" is not valid: /, "")}`);
  }
  return {
    count,
    serialAt,
    indexOf: (serial) => {
      const digits = serial.slice(prefix.length);
      const n = Number(digits);
      return serial.startsWith(prefix) && /^[0-9]+$/.test(digits) && digits.length === width && n >= start && n <= last ? n - start : undefined;
    },
    otherThan: (i) => prefix + String(start + i + 1).padStart(width, "0"),
  };
}

function listLine(l: SerialList): Line {
  const serials = l.serials;
  if (!Array.isArray(serials) || serials.length < 1 || serials.length > SIM_LIMITS.maxCount) {
    throw fail(`the list of serials must hold 1 to ${SIM_LIMITS.maxCount} serials`);
  }
  const index = new Map<string, number>();
  serials.forEach((serial, i) => {
    try {
      assertSerialSyntax(serial);
    } catch (e) {
      throw fail((e as Error).message);
    }
    if (index.has(serial)) throw fail(`serial ${serial} is on the line twice: each unit has its own serial`);
    index.set(serial, i);
  });
  return {
    count: serials.length,
    serialAt: (i) => serials[i]!,
    indexOf: (serial) => index.get(serial),
    otherThan: (i) => (serials.length > 1 ? serials[(i + 1) % serials.length]! : `${serials[i]!}X`),
  };
}

interface SimContext {
  keystore: UnitKeystore;
  flash: UnitFlash;
  clock: Clock;
  identity: { model: string; hwType: string; firmware: string };
  /**
   * What a duplicate-key unit reuses, per algorithm: the key of the unit provisioned last,
   * which the station has certainly seen, else the key made last. (A key made last may still
   * be on its way to the station when the copy arrives there, and the station would refuse
   * its owner instead of the copy.)
   */
  lastKey: Map<UnitKeyAlgorithm, UnitKey>;
  provisionedKey: Map<UnitKeyAlgorithm, UnitKey>;
  line: Line;
  installs: InstallChecker;
}

function sameRef(a: KeyRef, b: KeyRef): boolean {
  return a.keystore === b.keystore && (a.keystore === "soft" || (b.keystore === "pkcs11" && a.object === b.object));
}

/** One simulated unit: its identity, its key and certificate, and what it does with each op. */
class SimUnit {
  private s: UnitRecord;
  /** The key this unit made or copied in this run (a unit keyed in an earlier run has only its record). */
  private key: UnitKey | undefined;
  /** Why the unit cannot work (its row is unreadable); it answers every request INTERNAL. */
  private readonly broken: string | undefined;
  /** The unit went back to the line once already (see SimLink). */
  seatedAgain = false;

  constructor(
    private readonly ctx: SimContext,
    readonly index: number,
    readonly serial: string,
    readonly faults: ReadonlySet<UnitFault>,
  ) {
    // A unit that was keyed or provisioned by an earlier run keeps its state (power cycle).
    let stored: UnitRecord | undefined;
    try {
      stored = ctx.flash.read(serial);
    } catch (e) {
      this.broken = (e as Error).message;
    }
    this.s = stored ?? { serial, state: "new" };
  }

  /** What the unit answers; `next` is its fixture slot's business (SimLink), not the unit's. */
  async run(r: Exclude<UnitRequest, { op: "next" }>): Promise<OpResults[UnitRequest["op"]]> {
    if (this.broken) throw new Refusal("INTERNAL", `unit ${this.serial} is broken: ${this.broken}`);
    switch (r.op) {
      case "hello":
        return this.hello();
      case "status":
        return this.status();
      case "genkey":
        return this.genkey(r.alg);
      case "install":
        return this.install(r.certificate, r.chain);
    }
  }

  hello(): HelloResult {
    return { serial: this.serial, ...this.ctx.identity, protocol: 1, ops: [...UNIT_OPS] };
  }

  status(): StatusResult {
    return this.s.state === "provisioned" ? { serial: this.serial, state: "provisioned", fingerprint: this.s.fingerprint! } : { serial: this.serial, state: this.s.state };
  }

  async genkey(alg: UnitKeyAlgorithm): Promise<{ csr: string }> {
    if (this.s.state === "provisioned") {
      throw new Refusal("ALREADY_PROVISIONED", `unit ${this.serial} already holds its IDevID (${this.s.fingerprint}) and never replaces that key`);
    }
    const { keystore, lastKey, provisionedKey } = this.ctx;
    const earlier = this.faults.has("duplicate-key") ? (provisionedKey.get(alg) ?? lastKey.get(alg)) : undefined;
    const key = earlier ?? (await keystore.generate(this.serial, alg));
    lastKey.set(alg, key);
    const previous = this.s.keyOwned ? this.s.key : undefined;
    const keyed = { serial: this.serial, alg, key: key.ref, keyOwned: !earlier, spki: key.spki };
    this.ctx.flash.saveKey(keyed, key.pkcs8);
    this.s = { ...keyed, state: "keyed" };
    this.key = key;
    if (previous && !sameRef(previous, key.ref)) {
      try {
        keystore.discard(previous);
      } catch {
        // A stale key left in the token blocks nothing (labels are unique); the new key is in place.
      }
    }
    // RFC 2986: the request names the unit's serial and is signed with the new key.
    const csrSerial = this.faults.has("wrong-serial") ? this.ctx.line.otherThan(this.index) : this.serial;
    const info = certificationRequestInfo(csrSerial, key.spki);
    const signature = Buffer.from(await key.sign(info));
    // One flipped bit in the last octet: still well-formed DER, no longer a valid signature.
    if (this.faults.has("bad-csr-signature")) signature.writeUInt8(signature.readUInt8(signature.length - 1) ^ 0x01, signature.length - 1);
    return { csr: toPem("CERTIFICATE REQUEST", certificationRequest(info, alg, signature)) };
  }

  async install(certificatePem: string, chainPems: readonly string[]): Promise<{ fingerprint: string }> {
    const s = this.s;
    if (s.state === "new" || s.spki === undefined) throw new Refusal("NO_KEY", `unit ${this.serial} has no key yet: send genkey first`);
    const { installs, flash, clock } = this.ctx;
    const offered = installs.offered(certificatePem);
    const { fingerprint } = offered;
    if (s.state === "provisioned") {
      if (fingerprint === s.fingerprint) return { fingerprint };
      throw new Refusal("ALREADY_PROVISIONED", `unit ${this.serial} already holds another IDevID (${s.fingerprint}) and never replaces it`);
    }
    const accepted = await installs.check(offered, chainPems, { serial: this.serial, spki: s.spki }, clock.now());
    // One row update, after every check: the unit is provisioned with all of it, or not at all.
    flash.saveInstall({ serial: this.serial, ...accepted, fingerprint });
    this.s = { ...s, state: "provisioned", ...accepted, fingerprint };
    if (this.key) this.ctx.provisionedKey.set(this.key.algorithm, this.key);
    return { fingerprint };
  }
}

/**
 * The simulator's end of one connection: a fixture slot. It serves one unit at a time, the
 * next one in line when the station asks `next`, and none once the line is empty. When the
 * connection closes, a unit that was asked nothing but hello, and answered every hello,
 * goes back to the line: the station may never have read its answer (a `next` sent behind
 * an install that then timed out), and nothing about the unit changed.
 */
class SimLink {
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

function fail(message: string, code: "SIM_OPTIONS" | "SIM_INPUT" = "SIM_OPTIONS"): SimError {
  return new SimError(code, message);
}

function wholeNumber(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw fail(`${name} ${String(v)} is out of range: give a whole number from ${min} to ${max}`);
  }
  return v;
}

/**
 * A factory line of simulated units behind a TCP fixture on 127.0.0.1: each accepted
 * connection is the next unit in line order (a serial range, or an explicit list), until
 * `count` units have been handed out (a unit whose connection closed is served again only
 * if it was asked nothing but hello, see SimLink);
 * later connections are told NO_MORE_UNITS. Every unit speaks the unit link protocol
 * (docs/unit-link.md), keeps its key in the chosen keystore and its state in the units' flash
 * under `unitsDir`, and misbehaves as its faults say.
 */
export class UnitSimulator {
  readonly host = SIM_HOST;
  readonly port: number;
  readonly count: number;
  readonly keystore: "soft" | "pkcs11";
  private readonly server: Server;
  private readonly ctx: SimContext;
  private readonly faults: Map<string, Set<UnitFault>>;
  private readonly slowMs: number;
  private readonly links = new Set<SimLink>();
  /** Units whose connection closed before they were asked anything but hello: served again first. */
  private readonly unseen: SimUnit[] = [];
  private nextIndex = 0;
  private closing: Promise<void> | undefined;

  private constructor(p: {
    server: Server;
    ctx: SimContext;
    options: UnitSimulatorOptions;
    faults: Map<string, Set<UnitFault>>;
    slowMs: number;
  }) {
    this.server = p.server;
    this.ctx = p.ctx;
    this.count = p.ctx.line.count;
    this.faults = p.faults;
    this.slowMs = p.slowMs;
    this.keystore = p.ctx.keystore.kind;
    this.port = (p.server.address() as AddressInfo).port;
  }

  /** Checks the options, opens the keystore and listens; rejects with a one-line SimError (or the device, pki or hsm error) otherwise. */
  static async start(options: UnitSimulatorOptions): Promise<UnitSimulator> {
    const line = "serials" in options ? listLine(options) : rangeLine(options);
    const port = wholeNumber("port", options.port ?? 0, 0, 65535);
    const slowMs = wholeNumber("slow-ms", options.slowMs ?? 1000, 0, SIM_LIMITS.maxSlowMs);
    const model = options.model ?? "Simulated Unit";
    const firmware = options.firmware ?? "idmint-sim 1";
    const hwType = options.hwType ?? DEFAULT_HW_TYPE_OID;
    if (!isPlainText(model)) throw fail(`model "${safeText(String(model), 40)}" is not valid: give 1-128 printable characters`);
    if (!isPlainText(firmware)) throw fail(`firmware "${safeText(String(firmware), 40)}" is not valid: give 1-128 printable characters`);
    if (typeof hwType !== "string" || !OID_SYNTAX.test(hwType)) throw fail(`hwType "${safeText(String(hwType), 40)}" is not an OID: write it like 1.3.6.1.4.1.32473.1.1`);

    const faults = new Map<string, Set<UnitFault>>();
    for (const { serial, fault } of options.faults ?? []) {
      if (!(UNIT_FAULTS as readonly string[]).includes(fault)) throw fail(`fault kind "${fault}" is unknown: use one of ${UNIT_FAULTS.join(", ")}`);
      if (line.indexOf(serial) === undefined) {
        throw fail(`a fault names serial ${safeText(serial, 70)}, which this simulator does not serve (${line.serialAt(0)} to ${line.serialAt(line.count - 1)})`);
      }
      faults.set(serial, (faults.get(serial) ?? new Set()).add(fault));
    }

    const root = parseCertificate(options.root, "the vendor root");
    if (root.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
      throw fail(`the vendor root (${root.subject}) is not a CA certificate: give the vendor root certificate (HOME/pki/root.pem)`, "SIM_INPUT");
    }
    try {
      mkdirSync(options.unitsDir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fail(`cannot create the units directory ${options.unitsDir} (${(e as NodeJS.ErrnoException).code ?? "error"}): give a writable home`, "SIM_INPUT");
    }

    const flash = UnitFlash.open(options.unitsDir);
    let keystore: UnitKeystore;
    try {
      keystore = options.keystore?.kind === "pkcs11" ? Pkcs11Keystore.open(options.keystore) : new SoftKeystore();
    } catch (e) {
      flash.close();
      throw e;
    }
    const ctx: SimContext = { keystore, flash, clock: options.clock ?? systemClock, identity: { model, hwType, firmware }, lastKey: new Map(), provisionedKey: new Map(), line, installs: new InstallChecker(root) };
    let sim: UnitSimulator | undefined;
    const server = createServer({ noDelay: true }, (socket) => {
      if (sim) sim.accept(socket);
      else socket.destroy();
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: SIM_HOST, port, exclusive: true }, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (e) {
      keystore.close();
      flash.close();
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE") throw new SimError("SIM_LISTEN", `port ${port} on ${SIM_HOST} is in use: pick another port, or 0 for any free one`, { cause: e });
      if (code === "EACCES") throw new SimError("SIM_LISTEN", `not allowed to listen on port ${port}: pick a port above 1023, or 0 for any free one`, { cause: e });
      throw new SimError("SIM_LISTEN", `cannot listen on ${SIM_HOST}:${port} (${code ?? (e as Error).message}): pick another port`, { cause: e });
    }
    server.on("error", () => {
      // Accept failures (EMFILE...) cost one connection; the station sees it as unreachable and retries.
    });
    sim = new UnitSimulator({ server, ctx, options, faults, slowMs });
    return sim;
  }

  /** The serial of the unit at position `index` on the line (0-based). */
  serialAt(index: number): string {
    return this.ctx.line.serialAt(index);
  }

  /** How many units have been handed to connections so far. */
  get served(): number {
    return this.nextIndex;
  }

  /** Connections open now, one per fixture slot in use. */
  get connections(): number {
    return this.links.size;
  }

  /** The next unit in line, or undefined once every unit was handed out. */
  private seat(): SimUnit | undefined {
    const again = this.unseen.shift();
    if (again) return again;
    if (this.nextIndex >= this.count) return undefined;
    const index = this.nextIndex++;
    const serial = this.serialAt(index);
    return new SimUnit(this.ctx, index, serial, this.faults.get(serial) ?? new Set());
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const link = new SimLink(socket, this.seat(), () => this.seat(), this.slowMs, (l, unseen) => {
      this.links.delete(l);
      // Once only: a station that keeps hanging up on a unit's hello never gets it a third time.
      if (unseen && !unseen.seatedAgain) {
        unseen.seatedAgain = true;
        this.unseen.push(unseen);
      }
    });
    this.links.add(link);
  }

  /** Stops listening, drops every connection, waits for the work under way, closes the keystore and the flash. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const link of this.links) link.drop();
      await Promise.allSettled([...this.links].map((l) => l.tail));
      await closed;
      this.ctx.keystore.close();
      this.ctx.flash.close();
    })();
    return this.closing;
  }
}
