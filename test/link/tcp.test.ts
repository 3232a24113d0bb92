import { afterAll, describe, expect, it, vi } from "vitest";
import { createServer, type Server, type Socket } from "node:net";
import { FrameDecoder, MAX_FRAME_BYTES, TcpFixture, encodeFrame, type UnitLink } from "../../link/index.js";

const unhandled: unknown[] = [];
process.on("unhandledRejection", (e) => unhandled.push(e));

const servers: Server[] = [];
afterAll(async () => {
  for (const server of servers) {
    // Every link the tests opened was closed: the fake units soon hold no connection.
    expect(await settledConnections(server)).toBe(0);
    await new Promise((resolve) => server.close(resolve));
  }
  expect(unhandled).toEqual([]);
});

/** The server's open connections once closing ones have gone (up to a second). */
async function settledConnections(server: Server): Promise<number> {
  const open = () => new Promise<number>((resolve) => server.getConnections((_e, n) => resolve(n)));
  for (let i = 0; i < 50 && (await open()) > 0; i++) await new Promise((r) => setTimeout(r, 20));
  return open();
}

const HELLO = { serial: "SN000001", model: "Fake", hwType: "1.3.6.1.4.1.32473.1.1", firmware: "0.1", protocol: 1 };

type Req = { id: number; op: string } & Record<string, unknown>;

type Handler = (req: Req, socket: Socket, answer: (result: unknown) => void) => void;

/** A server on 127.0.0.1 that hands each request frame of a connection to the handler `connected()` made for it. */
async function frameServer(connected: () => Handler): Promise<Server & { port: number }> {
  const server = createServer((socket) => {
    const handle = connected();
    const decoder = new FrameDecoder();
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      for (const frame of decoder.push(chunk).frames) {
        const req = frame as Req;
        handle(req, socket, (result) => !socket.destroyed && socket.write(encodeFrame({ v: 1, id: req.id, ok: true, result })));
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return Object.assign(server, { port: (server.address() as { port: number }).port });
}

/** A hand-driven unit: hello is answered properly, everything else by `script`. */
async function fakeUnit(script: Handler): Promise<TcpFixture & { port: number }> {
  const { port } = await frameServer(() => (req, socket, answer) => (req.op === "hello" ? answer(HELLO) : script(req, socket, answer)));
  return Object.assign(new TcpFixture("127.0.0.1", port, { timeoutMs: 150 }), { port });
}

async function link(fixture: TcpFixture): Promise<UnitLink> {
  const l = await fixture.next();
  if (!l) throw new Error("no unit");
  return l;
}

describe("TcpFixture and its links, against hand-driven units", () => {
  it("times a request out, ignores its late answer, and keeps the link usable", async () => {
    let first = true;
    const fixture = await fakeUnit((req, _socket, answer) => {
      const result = { serial: "SN000001", state: "new" };
      if (first) {
        first = false;
        setTimeout(() => answer(result), 300);
      } else {
        answer(result);
      }
    });
    const l = await link(fixture);
    await expect(l.status()).rejects.toMatchObject({ code: "UNIT_TIMEOUT", serial: "SN000001", message: expect.stringContaining("unit SN000001 at 127.0.0.1") });
    expect(await l.status()).toEqual({ serial: "SN000001", state: "new" });
    await new Promise((r) => setTimeout(r, 250)); // the late answer arrives and is dropped
    expect(await l.status()).toEqual({ serial: "SN000001", state: "new" });
    await l.close();
  });

  it("an oversized frame, an answer to nothing, a malformed result or a changed serial is UNIT_PROTOCOL", async () => {
    const fixture = await fakeUnit((req, socket, answer) => {
      if (req.op === "status") {
        const header = Buffer.alloc(4);
        header.writeUInt32BE(MAX_FRAME_BYTES + 1);
        socket.write(header);
      } else if (req.op === "genkey") {
        socket.write(encodeFrame({ v: 1, id: 9999, ok: true, result: {} }));
      } else if (req.alg === undefined && req.op === "install" && (req.certificate as string) === "bad-shape") {
        answer({ fingerprint: "not hex" });
      } else {
        answer({ fingerprint: "0".repeat(64) });
      }
    });
    await expect((await link(fixture)).status()).rejects.toMatchObject({ code: "UNIT_PROTOCOL", message: expect.stringMatching(/a frame of 65537 bytes, over the 65536-byte limit/) });
    await expect((await link(fixture)).genkey("EC-P256")).rejects.toMatchObject({ code: "UNIT_PROTOCOL", message: expect.stringMatching(/answer to request 9999, which is not outstanding/) });
    await expect((await link(fixture)).install("bad-shape", [])).rejects.toMatchObject({ code: "UNIT_PROTOCOL", message: expect.stringMatching(/install result with no SHA-256 hex fingerprint/) });

    const liar = await fakeUnit((_req, _socket, answer) => answer({ serial: "SN000002", state: "new" }));
    await expect((await link(liar)).status()).rejects.toMatchObject({ code: "UNIT_PROTOCOL", message: expect.stringMatching(/naming serial SN000002, not SN000001/) });
  });

  it("refuses a hello whose fields are not what the protocol allows", async () => {
    const tooManyOps = Array.from({ length: 17 }, () => "hello");
    for (const bad of [{ ...HELLO, serial: "../../etc" }, { ...HELLO, hwType: "not.an.oid" }, { ...HELLO, model: "x\u001b[2J" }, { ...HELLO, protocol: 2 }, { ...HELLO, firmware: "y".repeat(500) }, { ...HELLO, ops: "next" }, { ...HELLO, ops: tooManyOps }, { ...HELLO, ops: [7] }]) {
      const server = createServer((socket) => {
        socket.on("error", () => {});
        socket.once("data", (chunk: Buffer) => {
          const id = (new FrameDecoder().push(chunk).frames[0] as Req).id;
          socket.write(encodeFrame({ v: 1, id, ok: true, result: bad }));
        });
      });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const fixture = new TcpFixture("127.0.0.1", (server.address() as { port: number }).port, { timeoutMs: 1000 });
      const l = await link(fixture);
      await expect(l.hello()).rejects.toMatchObject({ code: "UNIT_PROTOCOL", message: expect.stringMatching(/the unit at 127\.0\.0\.1:\d+ broke the link protocol \(a hello result with /) });
      await expect(l.status()).rejects.toMatchObject({ code: "UNIT_PROTOCOL" });
      await l.close();
    }
  });

  it("keeps a refusing unit's code and makes its message one safe line", async () => {
    const fixture = await fakeUnit((req, socket) => {
      socket.write(encodeFrame({ v: 1, id: req.id, ok: false, error: { code: "KEY_MISMATCH", message: "line one\nline two\u202e\u0007" } }));
    });
    const l = await link(fixture);
    const e = await l.install("x", []).catch((err: unknown) => err);
    expect(e).toMatchObject({ code: "UNIT_REFUSED", unitCode: "KEY_MISMATCH", serial: "SN000001" });
    expect((e as Error).message).toBe("unit SN000001 at 127.0.0.1:" + (fixture as unknown as { port: number }).port + " refused install: KEY_MISMATCH: line one line two  ");
    await l.close();
  });

  it("a unit that hangs up rejects what is outstanding with UNIT_DISCONNECTED; close() does the same and is idempotent", async () => {
    const fixture = await fakeUnit((req, socket) => {
      if (req.op === "genkey") socket.destroy();
    });
    const a = await link(fixture);
    await expect(a.genkey("RSA-2048")).rejects.toMatchObject({ code: "UNIT_DISCONNECTED", message: expect.stringMatching(/unit SN000001 .* was closed by the unit: reseat the unit and retry/) });
    await a.close();

    const b = await link(fixture);
    const pending = expect(b.status()).rejects.toMatchObject({ code: "UNIT_DISCONNECTED", message: expect.stringMatching(/closed by the station/) });
    await b.close();
    await b.close();
    await pending;
    await expect(b.status()).rejects.toMatchObject({ code: "UNIT_DISCONNECTED" });
  });

  it("a fixture nobody listens on is FIXTURE_UNREACHABLE", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    await new Promise((resolve) => server.close(resolve));
    await expect(new TcpFixture("127.0.0.1", port).next()).rejects.toMatchObject({ code: "FIXTURE_UNREACHABLE", kind: "unavailable", message: expect.stringMatching(/ECONNREFUSED/) });
  });
});

const SLOT_OPS = ["hello", "genkey", "install", "status", "next"];

/**
 * A hand-driven fixture whose connections are slots (its hellos list `next`): the slots seat
 * `serials` in order; status is answered, and `lateStatus` serials answer it too late;
 * install is answered after `installMs`.
 */
async function fakeSlots(
  serials: string[],
  lateStatus: string[] = [],
  installMs = 20,
): Promise<{ fixture: TcpFixture; accepted: () => number; open: () => Promise<number>; hangUp: () => void; log: string[] }> {
  let seated = 0;
  let accepted = 0;
  const sockets = new Set<Socket>();
  // What the slots saw and did, in order: "next SN000002" on arrival, "installed SN000001" when answered.
  const log: string[] = [];
  const server = await frameServer(() => {
    accepted++;
    let serial = serials[seated++];
    // A slot answers its requests in the order they came, as the protocol has it.
    let answered = Promise.resolve();
    const after = (ms: number, then: () => void) => {
      answered = answered.then(() => new Promise<void>((resolve) => setTimeout(resolve, ms))).then(then);
    };
    return (req, socket, answer) => {
      sockets.add(socket);
      if (req.op === "next") {
        log.push(`next ${serial}`);
        serial = serials[seated++];
      }
      const s = serial;
      if (s === undefined) {
        after(0, () => socket.end(encodeFrame({ v: 1, id: req.id, ok: false, error: { code: "NO_MORE_UNITS", message: "the fixture has no more units" } })));
      } else if (req.op === "hello" || req.op === "next") {
        after(0, () => answer({ ...HELLO, serial: s, ops: SLOT_OPS }));
      } else if (req.op === "status") {
        after(lateStatus.includes(s) ? 300 : 0, () => answer({ serial: s, state: "new" }));
      } else if (req.op === "install") {
        after(installMs, () => {
          log.push(`installed ${s}`);
          answer({ fingerprint: "ab".repeat(32) });
        });
      }
    };
  });
  return {
    fixture: new TcpFixture("127.0.0.1", server.port, { timeoutMs: 150 }),
    accepted: () => accepted,
    open: () => settledConnections(server),
    hangUp: () => sockets.forEach((socket) => socket.destroy()),
    log,
  };
}

describe("TcpFixture over fixture slots (hello lists next)", () => {
  it("serves unit after unit on one connection; a closed link stays closed for good", async () => {
    const { fixture, accepted } = await fakeSlots(["SN000001", "SN000002", "SN000003"]);
    const a = await link(fixture);
    expect(await a.hello()).toMatchObject({ serial: "SN000001", ops: SLOT_OPS });
    expect(await a.status()).toEqual({ serial: "SN000001", state: "new" });
    await a.close();
    const b = await link(fixture);
    expect((await b.hello()).serial).toBe("SN000002");
    await expect(a.status()).rejects.toMatchObject({ code: "UNIT_DISCONNECTED", message: expect.stringMatching(/closed by the station/) });
    expect(await b.status()).toEqual({ serial: "SN000002", state: "new" });
    await b.close();
    const c = await link(fixture);
    expect((await c.hello()).serial).toBe("SN000003");
    await c.close();
    expect(await fixture.next()).toBeUndefined();
    expect(await fixture.next()).toBeUndefined();
    expect(accepted()).toBe(1);
  });

  it("does not reuse a connection with a request that timed out: its late answer must not meet the next unit", async () => {
    const { fixture, accepted } = await fakeSlots(["SN000001", "SN000002"], ["SN000001"]);
    const a = await link(fixture);
    await expect(a.status()).rejects.toMatchObject({ code: "UNIT_TIMEOUT" });
    await a.close();
    const b = await link(fixture);
    expect((await b.hello()).serial).toBe("SN000002");
    expect(accepted()).toBe(2);
    await b.close();
    await fixture.close();
  });

  it("keeps one connection per slot in use, drops the idle ones on close(), and then has no unit to give", async () => {
    const { fixture, accepted, open } = await fakeSlots(["SN000001", "SN000002", "SN000003"]);
    const [a, b] = [await link(fixture), await link(fixture)];
    expect([(await a.hello()).serial, (await b.hello()).serial]).toEqual(["SN000001", "SN000002"]);
    await Promise.all([a.close(), b.close()]);
    expect(accepted()).toBe(2);
    await fixture.close();
    await fixture.close();
    expect(await open()).toBe(0);
    expect(await fixture.next()).toBeUndefined();
  });

  it("lets go of a kept connection the fixture closed while it waited, and connects again", async () => {
    const { fixture, accepted, open, hangUp } = await fakeSlots(["SN000001", "SN000002"]);
    await (await link(fixture)).close();
    hangUp();
    expect(await open()).toBe(0);
    const b = await link(fixture);
    expect((await b.hello()).serial).toBe("SN000002");
    expect(accepted()).toBe(2);
    await b.close();
    await fixture.close();
  });

  it("a last install has next sent right behind it: the slot seats the next unit before the install is answered", async () => {
    const { fixture, accepted, log } = await fakeSlots(["SN000001", "SN000002", "SN000003"]);
    const a = await link(fixture);
    expect(await a.install("cert", [], { last: true })).toEqual({ fingerprint: "ab".repeat(32) });
    expect(log).toEqual(["next SN000001", "installed SN000001"]);
    // Nothing more goes to a unit after its last request: the connection may be the next unit's by now.
    await expect(a.status()).rejects.toMatchObject({ code: "LINK_MISUSE", message: expect.stringMatching(/status for unit SN000001 after its last request/) });
    await a.close();
    const b = await link(fixture);
    expect((await b.hello()).serial).toBe("SN000002");
    expect(log).toEqual(["next SN000001", "installed SN000001"]);
    // Without `last`, next waits for the link to close.
    await b.install("cert", []);
    expect(await b.status()).toEqual({ serial: "SN000002", state: "new" });
    await b.close();
    const c = await link(fixture);
    expect(log).toEqual(["next SN000001", "installed SN000001", "installed SN000002", "next SN000002"]);
    // The last unit's seating answer is NO_MORE_UNITS: the line ends without connecting again.
    await c.install("cert", [], { last: true });
    await c.close();
    expect(await fixture.next()).toBeUndefined();
    expect(accepted()).toBe(1);
  });

  it("a unit seated behind a last install is still taken after another slot found the line empty", async () => {
    const { fixture, log } = await fakeSlots(["SN000001", "SN000002", "SN000003"]);
    const [a, b] = [await link(fixture), await link(fixture)];
    await a.install("cert", [], { last: true });
    await b.install("cert", [], { last: true });
    expect(log).toEqual(["next SN000001", "installed SN000001", "next SN000002", "installed SN000002"]);
    // b's slot was told NO_MORE_UNITS, a's seated SN000003; b's is asked first, and undefined comes only after a's unit.
    await b.close();
    await a.close();
    const taken: Array<string | undefined> = [];
    for (let i = 0; i < 3; i++) {
      const l = await fixture.next();
      taken.push(l && (await l.hello()).serial);
      await l?.close();
    }
    expect(taken).toEqual(["SN000003", undefined, undefined]);
    await fixture.close();
  });

  /** a's slot seats SN000002 behind a's last install, a not closed yet; another slot connects and is told NO_MORE_UNITS. */
  async function emptyLineBehindSeatedUnit() {
    const { fixture, accepted } = await fakeSlots(["SN000001", "SN000002"]);
    const a = await link(fixture);
    await a.install("cert", [], { last: true });
    const asked = fixture.next();
    await vi.waitFor(() => expect(accepted()).toBe(2), { timeout: 10_000 });
    return { fixture, a, asked };
  }

  it("once the line is found empty, a unit seated on a connection still in use is waited for: undefined means no unit will come", async () => {
    const { fixture, a, asked } = await emptyLineBehindSeatedUnit();
    await a.close();
    const b = await asked;
    expect(b && (await b.hello()).serial).toBe("SN000002");
    await b?.close();
    expect(await fixture.next()).toBeUndefined();
    await fixture.close();
  });

  it("close() ends a next() that waits for a connection in use", async () => {
    const { fixture, a, asked } = await emptyLineBehindSeatedUnit();
    await fixture.close();
    expect(await asked).toBeUndefined();
    await a.close();
  });

  it("does not reuse a connection whose last install timed out; the seating answer behind it is not taken", async () => {
    const { fixture, accepted, log } = await fakeSlots(["SN000001", "SN000002", "SN000003"], [], 300);
    const a = await link(fixture);
    await expect(a.install("cert", [], { last: true })).rejects.toMatchObject({ code: "UNIT_TIMEOUT" });
    await a.close();
    // A new connection; SN000002 was seated on the dropped one (a fixture puts it back: see the simulator).
    const b = await link(fixture);
    expect((await b.hello()).serial).toBe("SN000003");
    expect(log).toEqual(["next SN000001"]);
    expect(accepted()).toBe(2);
    await b.close();
    await fixture.close();
  });

  it("keeps the ops it knows from a hello and leaves out names of later versions", async () => {
    const fixture = await fakeUnit(() => {});
    const server = createServer((socket) => {
      socket.on("error", () => {});
      socket.once("data", (chunk: Buffer) => {
        const id = (new FrameDecoder().push(chunk).frames[0] as Req).id;
        socket.write(encodeFrame({ v: 1, id, ok: true, result: { ...HELLO, ops: ["hello", "teleport", "status"] } }));
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const l = await link(new TcpFixture("127.0.0.1", (server.address() as { port: number }).port, { timeoutMs: 1000 }));
    expect((await l.hello()).ops).toEqual(["hello", "status"]);
    await l.close();
    // A unit that lists no ops is one connection per unit, as protocol 1 began.
    const plain = await link(fixture);
    expect((await plain.hello()).ops).toBeUndefined();
    await plain.close();
  });
});

describe("FrameDecoder", () => {
  const frames = [{ a: 1 }, { b: "ü".repeat(1000) }, { c: [1, 2, 3] }];
  const stream = Buffer.concat(frames.map((f) => encodeFrame(f)));

  it("finds the same frames however the stream is split", () => {
    for (const size of [1, 2, 3, 5, 64, stream.length]) {
      const d = new FrameDecoder();
      const got: unknown[] = [];
      for (let i = 0; i < stream.length; i += size) got.push(...d.push(stream.subarray(i, i + size)).frames);
      expect(got).toEqual(frames);
    }
  });

  it("accepts exactly 64 KiB, refuses one byte more before reading it, and keeps frames before garbage", () => {
    const big = { x: "y".repeat(MAX_FRAME_BYTES - 8) };
    expect(Buffer.byteLength(JSON.stringify(big))).toBe(MAX_FRAME_BYTES);
    expect(new FrameDecoder().push(encodeFrame(big)).frames).toEqual([big]);
    expect(() => encodeFrame({ x: "y".repeat(MAX_FRAME_BYTES) })).toThrow(/larger than the 65536-byte frame limit/);

    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME_BYTES + 1);
    const r = new FrameDecoder().push(Buffer.concat([encodeFrame({ ok: 1 }), header]));
    expect(r.frames).toEqual([{ ok: 1 }]);
    expect(r.error).toMatchObject({ code: "UNIT_PROTOCOL" });
  });

  it("refuses empty frames, invalid UTF-8, non-JSON and non-objects, and stays failed", () => {
    const raw = (payload: Buffer) => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(payload.length);
      return Buffer.concat([h, payload]);
    };
    for (const [bytes, why] of [
      [Buffer.alloc(4), /empty frame/],
      [raw(Buffer.from([0x7b, 0xff, 0x7d])), /not UTF-8 JSON/],
      [raw(Buffer.from("{nope")), /not UTF-8 JSON/],
      [raw(Buffer.from("[1]")), /not a JSON object/],
      [raw(Buffer.from("null")), /not a JSON object/],
    ] as const) {
      const d = new FrameDecoder();
      expect(d.push(bytes).error?.message).toMatch(why);
      expect(d.push(encodeFrame({ fine: true }))).toMatchObject({ frames: [], error: { code: "UNIT_PROTOCOL" } });
    }
  });
});
