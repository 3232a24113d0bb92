import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { DEFAULT_HW_TYPE_OID, sha256Hex, systemClock, type Clock } from "../core/index.js";
import { PkiError, assertSerialSyntax, checkChain, parseCertificate, x509 } from "../pki/index.js";
import { certificationRequest, certificationRequestInfo, toPem } from "./csr.js";
import { UnitError } from "./errors.js";
import { UNIT_FAULTS, type FaultSpec, type UnitFault } from "./faults.js";
import { Pkcs11Keystore, SoftKeystore, type Pkcs11KeystoreOptions, type UnitKey, type UnitKeystore } from "./keystore.js";
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
  type UnitRefusalCode,
  type UnitRequest,
  type UnitResponse,
} from "./protocol.js";
import { ensureUnitDir, readUnitState, unitFiles, writeCommittedLater, writeUnitState, type KeyRef, type StoredUnitState, type UnitFiles } from "./store.js";

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
  /** Where each unit keeps its files: `<unitsDir>/<serial>/{key.pem,cert.pem,chain.pem,state.json}`. */
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

/** A unit's refusal of a request: becomes an `ok: false` answer, never a thrown error. */
class Refusal {
  constructor(
    readonly code: UnitRefusalCode,
    readonly message: string,
  ) {}
}

interface SimContext {
  keystore: UnitKeystore;
  root: x509.X509Certificate;
  clock: Clock;
  identity: { model: string; hwType: string; firmware: string };
  /** The last key made per algorithm: what a duplicate-key unit reuses. */
  lastKey: Map<UnitKeyAlgorithm, UnitKey>;
  line: Line;
  chains: ChainChecker;
}

const derKey = (c: x509.X509Certificate) => Buffer.from(c.rawData).toString("base64");

/**
 * pki's `checkChain` with a memory, because every unit on a line is handed the same
 * factory CA and @peculiar/x509 is slow (parsing a certificate ~0.5 ms, verifying the CA's
 * P-384 signature ~1.3 ms). A CA certificate that once chained to the root, byte for byte,
 * keeps doing so: later leaves are checked in full against it as the anchor, and only the
 * root's validity at `at` is rechecked here. Anything that fails the short path is checked
 * again the long way, so refusals carry checkChain's own reasons.
 */
class ChainChecker {
  private readonly parsed = new Map<string, x509.X509Certificate>();
  private readonly proven = new Set<string>();

  parse(pem: string): x509.X509Certificate {
    let cert = this.parsed.get(pem);
    if (!cert) {
      cert = parseCertificate(pem, "a chain certificate");
      if (this.parsed.size >= 32) this.parsed.clear();
      this.parsed.set(pem, cert);
    }
    return cert;
  }

  async check(leaf: x509.X509Certificate, chain: readonly x509.X509Certificate[], root: x509.X509Certificate, at: Date): Promise<void> {
    const rootValid = root.notBefore <= at && root.notAfter >= at;
    const anchor = chain.find((ca) => ca.subject === leaf.issuer && this.proven.has(derKey(ca)));
    if (anchor && rootValid) {
      try {
        await checkChain(leaf, [], anchor, at);
        return;
      } catch {
        // Checked again in full below, for checkChain's own reason.
      }
    }
    const path = await checkChain(leaf, chain, root, at);
    for (const ca of path.slice(1, -1)) this.proven.add(derKey(ca));
  }
}

function sameRef(a: KeyRef, b: KeyRef): boolean {
  return a.keystore === b.keystore && (a.keystore === "soft" || (b.keystore === "pkcs11" && a.object === b.object));
}

/** One simulated unit: its identity, its key and certificate, and what it does with each op. */
class SimUnit {
  private s: StoredUnitState;
  /** Why the unit cannot work (its state file is unreadable); it answers every request INTERNAL. */
  private readonly broken: string | undefined;

  constructor(
    private readonly ctx: SimContext,
    readonly index: number,
    readonly serial: string,
    readonly files: UnitFiles,
    readonly faults: ReadonlySet<UnitFault>,
  ) {
    // A unit that was keyed or provisioned by an earlier run keeps its state (power cycle).
    let stored: StoredUnitState | undefined;
    try {
      stored = readUnitState(files, serial);
    } catch (e) {
      this.broken = (e as Error).message;
    }
    this.s = stored ?? { v: 1, serial, state: "new" };
  }

  async run(r: UnitRequest): Promise<OpResults[UnitRequest["op"]]> {
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
    return { serial: this.serial, ...this.ctx.identity, protocol: 1 };
  }

  status(): StatusResult {
    return this.s.state === "provisioned" ? { serial: this.serial, state: "provisioned", fingerprint: this.s.fingerprint! } : { serial: this.serial, state: this.s.state };
  }

  async genkey(alg: UnitKeyAlgorithm): Promise<{ csr: string }> {
    if (this.s.state === "provisioned") {
      throw new Refusal("ALREADY_PROVISIONED", `unit ${this.serial} already holds its IDevID (${this.s.fingerprint}) and never replaces that key`);
    }
    const { keystore, lastKey } = this.ctx;
    ensureUnitDir(this.files);
    const earlier = this.faults.has("duplicate-key") ? lastKey.get(alg) : undefined;
    const key = earlier ? keystore.adopt(this.serial, earlier, this.files) : await keystore.generate(this.serial, alg, this.files);
    lastKey.set(alg, key);
    const previous = this.s.keyOwned ? this.s.key : undefined;
    this.s = { v: 1, serial: this.serial, state: "keyed", alg, key: key.ref, keyOwned: !earlier, spki: key.spki.toString("base64") };
    writeUnitState(this.files, this.s);
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
    let cert: x509.X509Certificate;
    try {
      cert = parseCertificate(certificatePem, "the certificate");
    } catch {
      throw new Refusal("CERT_INVALID", "the certificate is not an X.509 certificate in PEM");
    }
    const fingerprint = sha256Hex(new Uint8Array(cert.rawData));
    if (s.state === "provisioned") {
      if (fingerprint === s.fingerprint) return { fingerprint };
      throw new Refusal("ALREADY_PROVISIONED", `unit ${this.serial} already holds another IDevID (${s.fingerprint}) and never replaces it`);
    }
    const chain = chainPems.map((pem, i) => {
      try {
        return this.ctx.chains.parse(pem);
      } catch {
        throw new Refusal("CERT_INVALID", `chain[${i}] is not an X.509 certificate in PEM`);
      }
    });
    try {
      await this.ctx.chains.check(cert, chain, this.ctx.root, this.ctx.clock.now());
    } catch (e) {
      if (e instanceof PkiError) throw new Refusal("CHAIN_INVALID", `the certificate does not chain to the vendor root unit ${this.serial} carries: ${e.message}`);
      throw e;
    }
    if (!Buffer.from(cert.publicKey.rawData).equals(Buffer.from(s.spki, "base64"))) {
      throw new Refusal("KEY_MISMATCH", `the certificate certifies another key than unit ${this.serial}'s current one: issue it for the key in the unit's latest CSR`);
    }
    // 802.1AR §8.6: the subject's serialNumber names the device. (The hardwareModuleName SAN
    // is not read here: decoding a fresh certificate's extensions costs ~0.9 ms a unit.)
    const serials = cert.subjectName.getField("2.5.4.5");
    if (serials.length !== 1 || serials[0] !== this.serial) {
      throw new Refusal("SERIAL_MISMATCH", `the certificate's subject serialNumber is ${serials.length ? serials.join(", ") : "missing"}, not ${this.serial}`);
    }
    // state.json, replaced atomically last, is what makes the unit provisioned.
    writeCommittedLater(this.files.cert, cert.toString("pem") + "\n");
    writeCommittedLater(this.files.chain, chain.map((c) => c.toString("pem") + "\n").join(""));
    this.s = { ...s, state: "provisioned", fingerprint };
    writeUnitState(this.files, this.s);
    return { fingerprint };
  }
}

/** The simulator's end of one connection: one unit, or none when the line is empty. */
class SimLink {
  private readonly decoder = new FrameDecoder();
  private readonly abort = new AbortController();
  private queued = 0;
  /** No further requests are read: dropped, closed, or NO_MORE_UNITS answered. */
  private done = false;
  /** Settles when every request read so far has been handled. */
  tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly socket: Socket,
    private readonly unit: SimUnit | undefined,
    private readonly slowMs: number,
    onGone: (link: SimLink) => void,
  ) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => {
      // ECONNRESET and friends: "close" follows and cleans up.
    });
    socket.on("close", () => {
      this.done = true;
      this.abort.abort();
      void this.tail.then(() => onGone(this));
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
      if (!this.unit) {
        // End of the line (see protocol.ts): answer once, then close.
        this.done = true;
        this.write(refuse("NO_MORE_UNITS", "the fixture has no more units"));
        this.socket.end();
        return;
      }
      if (p.kind === "refuse") return await this.reply(refuse(p.code, p.message));
      let answer: UnitResponse;
      try {
        answer = { v: 1, id, ok: true, result: await this.unit.run(p.request) };
      } catch (e) {
        if (!(e instanceof Refusal)) {
          answer = refuse("INTERNAL", safeText(`unit ${this.unit.serial} failed: ${e instanceof Error ? e.message : String(e)}`));
        } else {
          answer = refuse(e.code, e.message);
        }
      }
      if (p.request.op === "genkey" && answer.ok) {
        if (this.unit.faults.has("disconnect")) return this.drop();
        if (this.unit.faults.has("garbage")) {
          // A length prefix of at least 0xff000000: never a valid frame, whatever follows.
          return this.write(Buffer.concat([Buffer.from([0xff]), randomBytes(31)]));
        }
      }
      await this.reply(answer);
    } catch {
      // Aborted by a close, or the socket failed: nothing left to answer.
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
  }
}

function fail(message: string, kind?: "usage" | "input"): UnitError {
  return new UnitError("SIM_OPTIONS", message, kind ? { kind } : undefined);
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
 * `count` units have been handed out (a unit whose connection dropped is not served again);
 * later connections are told NO_MORE_UNITS. Every unit speaks the unit link protocol
 * (protocol.ts), keeps its key in the chosen keystore and its files under `unitsDir`, and
 * misbehaves as its faults say.
 */
export class UnitSimulator {
  readonly host = SIM_HOST;
  readonly port: number;
  readonly count: number;
  readonly keystore: "soft" | "pkcs11";
  private readonly server: Server;
  private readonly ctx: SimContext;
  private readonly unitsDir: string;
  private readonly faults: Map<string, Set<UnitFault>>;
  private readonly slowMs: number;
  private readonly links = new Set<SimLink>();
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
    this.unitsDir = p.options.unitsDir;
    this.faults = p.faults;
    this.slowMs = p.slowMs;
    this.keystore = p.ctx.keystore.kind;
    this.port = (p.server.address() as AddressInfo).port;
  }

  /** Checks the options, opens the keystore and listens; rejects with a one-line UnitError (or the pki/hsm error) otherwise. */
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
      throw fail(`the vendor root (${root.subject}) is not a CA certificate: give the vendor root certificate (HOME/pki/root.pem)`, "input");
    }
    try {
      mkdirSync(options.unitsDir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fail(`cannot create the units directory ${options.unitsDir} (${(e as NodeJS.ErrnoException).code ?? "error"}): give a writable home`, "input");
    }

    const keystore: UnitKeystore = options.keystore?.kind === "pkcs11" ? Pkcs11Keystore.open(options.keystore) : new SoftKeystore();
    const ctx: SimContext = { keystore, root, clock: options.clock ?? systemClock, identity: { model, hwType, firmware }, lastKey: new Map(), line, chains: new ChainChecker() };
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
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE") throw new UnitError("SIM_LISTEN", `port ${port} on ${SIM_HOST} is in use: pick another port, or 0 for any free one`, { cause: e });
      if (code === "EACCES") throw new UnitError("SIM_LISTEN", `not allowed to listen on port ${port}: pick a port above 1023, or 0 for any free one`, { cause: e });
      throw new UnitError("SIM_LISTEN", `cannot listen on ${SIM_HOST}:${port} (${code ?? (e as Error).message}): pick another port`, { cause: e });
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

  /** The directory of a unit's files (see `unitFiles`). */
  files(serial: string): UnitFiles {
    return unitFiles(this.unitsDir, serial);
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    let unit: SimUnit | undefined;
    if (this.nextIndex < this.count) {
      const index = this.nextIndex++;
      const serial = this.serialAt(index);
      unit = new SimUnit(this.ctx, index, serial, this.files(serial), this.faults.get(serial) ?? new Set());
    }
    const link = new SimLink(socket, unit, this.slowMs, (l) => this.links.delete(l));
    this.links.add(link);
  }

  /** Stops listening, drops every connection, waits for the work under way, closes the keystore. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const link of this.links) link.drop();
      await Promise.allSettled([...this.links].map((l) => l.tail));
      await closed;
      this.ctx.keystore.close();
    })();
    return this.closing;
  }
}
