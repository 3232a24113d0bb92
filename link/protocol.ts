import { assertSerialSyntax } from "../pki/index.js";
import { UnitError } from "./errors.js";

// The unit link protocol, version 1: how a station talks to the unit in a fixture slot. The
// wire format, each op's fields, limits and refusals, and a worked byte-level example are in
// docs/unit-link.md, written for firmware writers; this file is its reference implementation.

export const PROTOCOL_VERSION = 1;

/** Largest frame payload (the JSON bytes after the length prefix) either side accepts. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Largest PEM (CSR or certificate) either side accepts in one field. */
export const MAX_PEM_CHARS = 16 * 1024;
/** Most CA certificates `install` accepts in `chain`. */
export const MAX_CHAIN_CERTS = 4;
/** Longest model, firmware or hwType string a unit may report. */
export const MAX_TEXT_CHARS = 128;
/** Longest error message kept from the other side (longer ones are cut). */
export const MAX_MESSAGE_CHARS = 512;
/** Largest request id: 2^31-1 fits every JSON number type a unit may parse into. */
export const MAX_REQUEST_ID = 0x7fff_ffff;
/** Most requests one connection may have queued at the unit. */
export const MAX_IN_FLIGHT = 16;

export const UNIT_KEY_ALGORITHMS = ["EC-P256", "RSA-2048"] as const;
export type UnitKeyAlgorithm = (typeof UNIT_KEY_ALGORITHMS)[number];

export const UNIT_STATES = ["new", "keyed", "provisioned"] as const;
export type UnitState = (typeof UNIT_STATES)[number];

export const UNIT_OPS = ["hello", "genkey", "install", "status", "next"] as const;
/** Most op names a hello may list. */
export const MAX_OPS = 16;
export type UnitOp = (typeof UNIT_OPS)[number];

/** The error codes the simulator answers with; a real unit may use others of the same syntax. */
export type UnitRefusalCode =
  | "BAD_REQUEST"
  | "UNSUPPORTED_VERSION"
  | "UNKNOWN_OP"
  | "UNSUPPORTED_ALG"
  | "NO_KEY"
  | "ALREADY_PROVISIONED"
  | "CERT_INVALID"
  | "CHAIN_INVALID"
  | "KEY_MISMATCH"
  | "SERIAL_MISMATCH"
  | "NO_MORE_UNITS"
  | "INTERNAL";

export interface HelloResult {
  serial: string;
  model: string;
  hwType: string;
  firmware: string;
  protocol: 1;
  /** The ops this unit (or its fixture slot) answers, when it says (docs/unit-link.md, Capabilities). */
  ops?: UnitOp[];
}
export interface GenkeyResult {
  csr: string;
}
export interface InstallResult {
  fingerprint: string;
}
export interface StatusResult {
  serial: string;
  state: UnitState;
  fingerprint?: string;
}
export interface OpResults {
  hello: HelloResult;
  genkey: GenkeyResult;
  install: InstallResult;
  status: StatusResult;
  next: HelloResult;
}

export type UnitRequestBody =
  | { op: "hello" }
  | { op: "genkey"; alg: UnitKeyAlgorithm }
  | { op: "install"; certificate: string; chain: string[] }
  | { op: "status" }
  | { op: "next" };
export type UnitRequest = { v: 1; id: number } & UnitRequestBody;

export type UnitResponse =
  | { v: 1; id: number; ok: true; result: unknown }
  | { v: 1; id: number; ok: false; error: { code: string; message: string } };

const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;
export const OID_SYNTAX = /^[0-2](\.(0|[1-9][0-9]{0,9})){1,30}$/;
const FINGERPRINT = /^[0-9a-f]{64}$/;
// C0/C1 controls, line/paragraph separators and bidi overrides: nothing that could break a
// one-line error or disguise what a terminal shows.
// eslint-disable-next-line no-control-regex
const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** A protocol violation; the message says what was wrong, a link adds who sent it. */
function protocolError(why: string): UnitError {
  return new UnitError("UNIT_PROTOCOL", why);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isId(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= MAX_REQUEST_ID;
}

/** Text from the other side made safe for one line of output. */
export function safeText(v: string, max = MAX_MESSAGE_CHARS): string {
  const clean = v.replace(UNSAFE_TEXT, " ");
  return clean.length > max ? clean.slice(0, max) + "…" : clean;
}

/** A non-empty string of at most `max` characters with nothing `safeText` would replace. */
export function isPlainText(v: unknown, max = MAX_TEXT_CHARS): v is string {
  return typeof v === "string" && v.length >= 1 && v.length <= max && v.replace(UNSAFE_TEXT, "") === v;
}

function isPem(v: unknown, label: string): v is string {
  return typeof v === "string" && v.length <= MAX_PEM_CHARS && v.includes(`-----BEGIN ${label}-----`);
}

/** One frame for `message`: length prefix and UTF-8 JSON. */
export function encodeFrame(message: object): Buffer {
  const json = Buffer.from(JSON.stringify(message), "utf8");
  if (json.length > MAX_FRAME_BYTES) throw protocolError(`a ${json.length}-byte message is larger than the ${MAX_FRAME_BYTES}-byte frame limit`);
  const frame = Buffer.allocUnsafe(4 + json.length);
  frame.writeUInt32BE(json.length, 0);
  json.copy(frame, 4);
  return frame;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Cuts a byte stream into frames and parses each as a JSON object. `push` returns the
 * frames completed so far and, once the stream broke the protocol, the error: frames
 * before the garbage still count, nothing after it does, and the connection must be
 * dropped. Buffers at most one frame plus one read, and copies each byte at most once
 * however the peer splits its writes.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The payload length of the frame being read, once its prefix is in. */
  private need: number | undefined;
  private failed: UnitError | undefined;

  push(chunk: Buffer): { frames: Array<Record<string, unknown>>; error?: UnitError } {
    const frames: Array<Record<string, unknown>> = [];
    if (this.failed) return { frames, error: this.failed };
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    try {
      for (;;) {
        if (this.need === undefined) {
          if (this.buffered < 4) break;
          const n = this.take(4).readUInt32BE(0);
          if (n === 0) throw protocolError("an empty frame");
          if (n > MAX_FRAME_BYTES) throw protocolError(`a frame of ${n} bytes, over the ${MAX_FRAME_BYTES}-byte limit`);
          this.need = n;
        }
        if (this.buffered < this.need) break;
        const payload = this.take(this.need);
        this.need = undefined;
        let value: unknown;
        try {
          value = JSON.parse(utf8.decode(payload));
        } catch {
          throw protocolError("a frame that is not UTF-8 JSON");
        }
        if (!isObject(value)) throw protocolError("a frame that is not a JSON object");
        frames.push(value);
      }
    } catch (e) {
      this.failed = e as UnitError;
      this.chunks = [];
      this.buffered = 0;
      return { frames, error: this.failed };
    }
    return { frames };
  }

  /** Removes and returns the next n buffered bytes (n <= buffered). */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let offset = 0;
    let i = 0;
    while (offset < n) {
      const c = this.chunks[i]!;
      const part = Math.min(c.length, n - offset);
      c.copy(out, offset, 0, part);
      offset += part;
      if (part === c.length) i++;
      else this.chunks[i] = c.subarray(part);
    }
    this.chunks = this.chunks.slice(i);
    this.buffered -= n;
    return out;
  }
}

/**
 * What the unit makes of one request frame: a request to run, a refusal to answer (the id
 * is readable), or a protocol error (it is not: the connection is dropped).
 */
export type ParsedRequest =
  | { kind: "request"; request: UnitRequest }
  | { kind: "refuse"; id: number; code: UnitRefusalCode; message: string }
  | { kind: "violation"; message: string };

/** The unit's view of a request frame. Everything in it is attacker-controlled. */
export function parseRequest(frame: Record<string, unknown>): ParsedRequest {
  const id = frame.id;
  if (!isId(id)) return { kind: "violation", message: `a request without an integer id in 0..${MAX_REQUEST_ID}` };
  const refuse = (code: UnitRefusalCode, message: string): ParsedRequest => ({ kind: "refuse", id, code, message });
  if (frame.v !== PROTOCOL_VERSION) return refuse("UNSUPPORTED_VERSION", `this unit speaks protocol version ${PROTOCOL_VERSION} only`);
  const op = frame.op;
  if (typeof op !== "string" || !(UNIT_OPS as readonly string[]).includes(op)) {
    return refuse("UNKNOWN_OP", `op must be one of ${UNIT_OPS.join(", ")}`);
  }
  switch (op as UnitOp) {
    case "hello":
    case "status":
    case "next":
      return { kind: "request", request: { v: 1, id, op: op as "hello" | "status" | "next" } };
    case "genkey": {
      const alg = frame.alg;
      if (typeof alg !== "string" || !(UNIT_KEY_ALGORITHMS as readonly string[]).includes(alg)) {
        return refuse("UNSUPPORTED_ALG", `alg must be one of ${UNIT_KEY_ALGORITHMS.join(", ")}`);
      }
      return { kind: "request", request: { v: 1, id, op: "genkey", alg: alg as UnitKeyAlgorithm } };
    }
    case "install": {
      const { certificate, chain } = frame;
      if (typeof certificate !== "string" || certificate.length === 0 || certificate.length > MAX_PEM_CHARS) {
        return refuse("BAD_REQUEST", `certificate must be a PEM string of at most ${MAX_PEM_CHARS} characters`);
      }
      if (!Array.isArray(chain) || chain.length > MAX_CHAIN_CERTS || !chain.every((c) => typeof c === "string" && c.length > 0 && c.length <= MAX_PEM_CHARS)) {
        return refuse("BAD_REQUEST", `chain must be an array of at most ${MAX_CHAIN_CERTS} PEM strings`);
      }
      return { kind: "request", request: { v: 1, id, op: "install", certificate, chain: chain as string[] } };
    }
  }
}

/** The station's view of a response frame (the envelope; see `parseResult` for the result). */
export function parseResponse(frame: Record<string, unknown>): UnitResponse {
  if (frame.v !== PROTOCOL_VERSION) throw protocolError(`a response of protocol version ${JSON.stringify(frame.v)?.slice(0, 16)}, not ${PROTOCOL_VERSION}`);
  if (!isId(frame.id)) throw protocolError("a response without a valid id");
  if (frame.ok === true) {
    if (!("result" in frame)) throw protocolError("an ok response without a result");
    return { v: 1, id: frame.id, ok: true, result: frame.result };
  }
  if (frame.ok === false) {
    const error = frame.error;
    if (!isObject(error) || typeof error.code !== "string" || !ERROR_CODE.test(error.code) || typeof error.message !== "string") {
      throw protocolError("an error response without { code: A-Z0-9_, message }");
    }
    return { v: 1, id: frame.id, ok: false, error: { code: error.code, message: safeText(error.message) } };
  }
  throw protocolError("a response whose ok is neither true nor false");
}

function isSerial(v: unknown): v is string {
  if (typeof v !== "string") return false;
  try {
    assertSerialSyntax(v);
    return true;
  } catch {
    return false;
  }
}

/** Checks an ok response's result against the op it answers. */
export function parseResult<O extends UnitOp>(op: O, result: unknown): OpResults[O] {
  const bad = (what: string) => protocolError(`a ${op} result with ${what}`);
  if (!isObject(result)) throw bad("no object");
  switch (op) {
    case "hello":
    case "next": {
      const { serial, model, hwType, firmware, protocol, ops } = result;
      if (!isSerial(serial)) throw bad("an invalid serial");
      if (!isPlainText(model, MAX_TEXT_CHARS)) throw bad("an invalid model");
      if (typeof hwType !== "string" || hwType.length > MAX_TEXT_CHARS || !OID_SYNTAX.test(hwType)) throw bad("an invalid hwType OID");
      if (!isPlainText(firmware, MAX_TEXT_CHARS)) throw bad("an invalid firmware");
      if (protocol !== PROTOCOL_VERSION) throw bad(`protocol other than ${PROTOCOL_VERSION}`);
      const hello: HelloResult = { serial, model, hwType, firmware, protocol: 1 };
      if (ops !== undefined) {
        if (!Array.isArray(ops) || ops.length > MAX_OPS || !ops.every((o) => typeof o === "string" && o.length <= MAX_TEXT_CHARS)) throw bad(`ops that are not a list of at most ${MAX_OPS} names`);
        // Names this station does not know are a later version's: kept out, not refused.
        hello.ops = (ops as string[]).filter((o): o is UnitOp => (UNIT_OPS as readonly string[]).includes(o));
      }
      return hello as OpResults[O];
    }
    case "genkey": {
      if (!isPem(result.csr, "CERTIFICATE REQUEST")) throw bad(`no PEM CERTIFICATE REQUEST of at most ${MAX_PEM_CHARS} characters`);
      return { csr: result.csr } satisfies GenkeyResult as OpResults[O];
    }
    case "install": {
      if (typeof result.fingerprint !== "string" || !FINGERPRINT.test(result.fingerprint)) throw bad("no SHA-256 hex fingerprint");
      return { fingerprint: result.fingerprint } satisfies InstallResult as OpResults[O];
    }
    case "status": {
      const { serial, state, fingerprint } = result;
      if (!isSerial(serial)) throw bad("an invalid serial");
      if (typeof state !== "string" || !(UNIT_STATES as readonly string[]).includes(state)) throw bad("an unknown state");
      if (state === "provisioned") {
        if (typeof fingerprint !== "string" || !FINGERPRINT.test(fingerprint)) throw bad("state provisioned but no SHA-256 hex fingerprint");
        return { serial, state, fingerprint } satisfies StatusResult as OpResults[O];
      }
      if (fingerprint !== undefined) throw bad(`a fingerprint in state ${state}`);
      return { serial, state: state as UnitState } satisfies StatusResult as OpResults[O];
    }
  }
  throw bad("an unknown op");
}
