import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pkcs11js from "pkcs11js";
import { createHash, createPublicKey, verify } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Home, type IdmintConfig } from "../../core/index.js";
import { Hsm, Pkcs11Module, parsePkcs11Uri, readPin, type CheckReport } from "../../hsm/index.js";
import { idmint, idmintBounded, oneLineError, scratch } from "../helpers.js";
import { startHsmLink, type HsmLink, type LinkStats } from "../fixtures/hsm-link.js";
import { P11KIT_MISSING, startP11KitServer, type P11KitServer } from "../fixtures/p11kit.js";

// The latency-and-fault link (test/fixtures/hsm-link.ts) between p11-kit's client module and a
// p11-kit server in front of SoftHSM: what it does to real PKCS#11 calls, from the real binary
// and from this process. Time is only ever asserted as a lower bound.

const s = scratch("hsm-link");
const HOLD_MS = 3_600_000;
let home: string;
let config: IdmintConfig;
let server: P11KitServer | undefined;
let link: HsmLink | undefined;

afterAll(async () => {
  delete process.env.P11_KIT_SERVER_ADDRESS;
  await link?.close();
  await server?.stop();
  s.cleanup();
});

const check = (...args: string[]) => idmint(["--home", home, "hsm", "check", "--json", ...args], { env: link!.env });

/** Polls the link until `done` holds for its stats, and returns them; every wait here is for a state the link reaches, never for time. */
async function until(done: (stats: LinkStats) => boolean): Promise<LinkStats> {
  for (;;) {
    const stats = await link!.stats();
    if (done(stats)) return stats;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(P11KIT_MISSING !== undefined)(`the HSM link: delay and faults between p11-kit's client and server${P11KIT_MISSING ? ` (skipped: ${P11KIT_MISSING})` : ""}`, () => {
  beforeAll(async () => {
    home = join(s.dir, "home");
    for (const args of [["hsm", "init"], ["ca", "init"]]) {
      const r = idmint(["--home", home, ...args]);
      if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
    }
    const h = new Home(home);
    server = await startP11KitServer(s.dir, h.softhsmConfPath);
    // A network HSM's home names only its client module.
    config = h.readConfig();
    h.writeConfig({ ...config, hsm: { module: server.module } });
    link = await startHsmLink(server.socket, { dir: s.dir });
  });

  it("at 0 ms: hsm check passes for every role through the link, one connection, every request answered", async () => {
    const r = check();
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as CheckReport).roles.every((c) => c.ok)).toBe(true);
    const stats = await link!.stats();
    expect(stats).toMatchObject({ accepted: 1, refused: 0, peakInFlight: 1 });
    expect(stats.requests).toBeGreaterThan(10);
    expect(stats.replies).toBe(stats.requests);
  });

  it("at 10 ms per hop: the sign's round trip is at least 20 ms (a lower bound only), and each chunk was held at least 10 ms", async () => {
    await link!.setDelay(10);
    try {
      const r = check("--role", "factory-ca");
      expect(r.code, r.stderr).toBe(0);
      expect((JSON.parse(r.stdout) as CheckReport).roles[0]!.roundTripMs).toBeGreaterThanOrEqual(20);
      expect((await link!.stats()).meanHoldMs).toBeGreaterThanOrEqual(10);
    } finally {
      await link!.setDelay(0);
    }
  });

  it("cut() with a signer open in this process: the sign fails CKR_DEVICE_ERROR and keeps failing (no reconnection); a reopened module works", async () => {
    process.env.P11_KIT_SERVER_ADDRESS = link!.env.P11_KIT_SERVER_ADDRESS;
    let hsm = Hsm.open({ module: server!.module });
    try {
      const signer = hsm.signer(config.keys.factoryCa);
      expect((await signer.sign(Buffer.from("before"))).length).toBe(64);
      await link!.cut();
      expect((await link!.stats()).open).toBe(0);
      for (const message of ["after", "again"]) {
        await expect(signer.sign(Buffer.from(message))).rejects.toMatchObject({ code: "PKCS11", message: expect.stringMatching(/while signing \(CKR_DEVICE_ERROR\)/) });
      }
      // The client module reconnects only at C_Initialize.
      expect((await link!.stats()).accepted).toBe(0);
      hsm.close();
      hsm = Hsm.open({ module: server!.module });
      expect((await hsm.signer(config.keys.factoryCa).sign(Buffer.from("reopened"))).length).toBe(64);
    } finally {
      hsm.close();
      delete process.env.P11_KIT_SERVER_ADDRESS;
    }
  });

  it("cut() while the binary waits for the HSM's answer: hsm check exits 4 with one line", async () => {
    // The earlier tests' connections are closed first, so that the one open below is this run's.
    await until((stats) => stats.open === 0);
    // Held, the client's connection waits for the server's first byte; the cut is its answer.
    await link!.setDelay(HOLD_MS);
    const running = idmintBounded(["--home", home, "hsm", "check", "--role", "factory-ca"], { env: link!.env, limitMs: 60_000 });
    try {
      await until((stats) => stats.open === 1);
    } finally {
      await link!.setDelay(0);
      await link!.cut();
    }
    const r = await running;
    expect(r.code, r.stderr).toBe(4);
    expect(oneLineError(r)).toMatch(/factory-ca: cannot initialise PKCS#11 module .*p11-kit-client\.so \(CKR_DEVICE_ERROR\): the HSM behind it did not answer: check that it .* is up and reachable/);
  });

  it("refuse(): hsm check exits 4 with one line while the link refuses, and passes once refuse(0) ends it", async () => {
    await link!.refuse(HOLD_MS);
    // A window of counters that starts with the refusal.
    await link!.stats();
    try {
      const r = check("--role", "factory-ca");
      expect(r.code).toBe(4);
      // An HSM that accepts and closes fails the client's C_Initialize; one that does not answer at all shows no token (remote.test.ts).
      expect(oneLineError(r)).toMatch(/cannot initialise PKCS#11 module .*p11-kit-client\.so \(CKR_DEVICE_ERROR\): the HSM behind it did not answer/);
      const stats = await link!.stats();
      expect(stats).toMatchObject({ accepted: 0, open: 0 });
      expect(stats.refused).toBeGreaterThanOrEqual(1);
    } finally {
      await link!.refuse(0);
    }
    const r = check("--role", "factory-ca");
    expect(r.code, r.stderr).toBe(0);
  });

  it("close() ends the link's process and removes its socket; a second close() is a no-op", async () => {
    const other = await startHsmLink(server!.socket, { dir: s.dir });
    expect(existsSync(other.socket)).toBe(true);
    await other.close();
    expect(() => process.kill(other.pid, 0)).toThrow(/ESRCH/);
    expect(existsSync(other.socket)).toBe(false);
    await other.close();
    await expect(other.stats()).rejects.toThrow(/closed/);
  });

  it("signatures from several threads of one process overlap on the link: more than one request held at once on one connection, every signature valid", async () => {
    process.env.P11_KIT_SERVER_ADDRESS = link!.env.P11_KIT_SERVER_ADDRESS;
    const mod = Pkcs11Module.acquire(server!.module);
    const p11 = mod.p11;
    const uri = parsePkcs11Uri(config.keys.factoryCa);
    const sessions: Buffer[] = [];
    try {
      const slot = mod.findSlot({ label: uri.token })!.slot;
      for (let i = 0; i < 8; i++) sessions.push(p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION));
      p11.C_Login(sessions[0]!, pkcs11js.CKU_USER, readPin(uri.pinSource, "factory-ca"));
      p11.C_FindObjectsInit(sessions[0]!, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_LABEL, value: uri.object! },
      ]);
      const [key] = p11.C_FindObjects(sessions[0]!, 1);
      p11.C_FindObjectsFinal(sessions[0]!);
      for (const session of sessions) p11.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, key!);
      const message = Buffer.from("eight signatures at once");
      const digest = createHash("sha256").update(message).digest();
      // The earlier tests' connections are closed first: the one left is this process's.
      await until((stats) => stats.open === 1);

      // Held, every C_Sign that libuv's threads (4 by default) send stays on the link, so the overlap is seen, not raced for.
      await link!.setDelay(HOLD_MS);
      const signing = Promise.all(sessions.map((session) => p11.C_SignAsync(session, digest, Buffer.alloc(64))));
      let held: LinkStats;
      try {
        held = await until((stats) => stats.inFlight >= 2);
      } finally {
        await link!.setDelay(0);
      }
      const signatures = await signing;
      // p11-kit's client multiplexes the threads' calls on its one socket.
      expect(held.open).toBe(1);
      const publicKey = createPublicKey(readFileSync(new Home(home).pkiFile("factory-ca")));
      for (const signature of signatures) expect(verify("sha256", message, { key: publicKey, dsaEncoding: "ieee-p1363" }, signature)).toBe(true);
    } finally {
      for (const session of sessions) p11.C_CloseSession(session);
      mod.release();
      delete process.env.P11_KIT_SERVER_ADDRESS;
    }
  });
});
