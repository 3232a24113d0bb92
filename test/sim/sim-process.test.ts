import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { IdmintError } from "../../core/index.js";
import { checkCsr } from "../../pki/index.js";
import { TcpFixture } from "../../link/index.js";
import { SIM_HOST, SimError, UnitSimulator, startSimulatorProcess, type SimProcessOptions, type SimulatorProcess } from "../../sim/index.js";
import { REPO, scratch } from "../helpers.js";
import { makePki, type TestPki } from "../fixtures/pki-fixture.js";

const s = scratch("sim-process");
let pki: TestPki;
let sim: SimulatorProcess;

const line = (unitsDir: string): SimProcessOptions => ({ unitsDir: join(s.dir, unitsDir), root: pki.rootPem, count: 3, prefix: "SN", start: 1 });

beforeAll(async () => {
  pki = await makePki();
  sim = await startSimulatorProcess({ ...line("units"), model: "Router X1" });
});

afterAll(async () => {
  await sim?.close();
  s.cleanup();
});

/** Whether `pid` is a live process; a zombie nobody has reaped yet counts as gone. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw e;
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] !== "Z";
  } catch {
    return false;
  }
}

async function gone(pid: number, deadlineMs = 20_000): Promise<boolean> {
  for (const until = Date.now() + deadlineMs; Date.now() < until; await sleep(50)) if (!alive(pid)) return true;
  return !alive(pid);
}

describe("startSimulatorProcess", () => {
  it("serves the units from a process of its own over TCP", async () => {
    expect(sim).toMatchObject({ count: 3, port: expect.any(Number) });
    expect(sim.pid).not.toBe(process.pid);
    expect(alive(sim.pid)).toBe(true);
    const fixture = new TcpFixture(SIM_HOST, sim.port, { timeoutMs: 5000 });
    for (const serial of ["SN000001", "SN000002"]) {
      const link = (await fixture.next())!;
      expect(await link.hello()).toMatchObject({ serial, model: "Router X1" });
      const { csr } = await link.genkey("EC-P256");
      const cert = await pki.issue((await checkCsr(csr, serial)).publicKeySpki, serial);
      await link.install(cert.toString("pem"), pki.chainPems);
      expect(await link.status()).toMatchObject({ serial, state: "provisioned" });
      await link.close();
    }
  });

  it("a failed start comes back as the error the simulator raised, on one line", async () => {
    const cases: [SimProcessOptions, string][] = [
      [{ ...line("bad-count"), count: 0 }, "SIM_OPTIONS"],
      [{ ...line("busy-port"), port: sim.port }, "SIM_LISTEN"],
      [{ ...line("bad-root"), root: "not a certificate" }, "CERT_INVALID"],
    ];
    const outcomes = await Promise.all(cases.map(([options]) => startSimulatorProcess(options).then(() => undefined, (e: unknown) => e)));
    for (const [i, [options, code]] of cases.entries()) {
      const inProcess = await UnitSimulator.start(options).then(
        async (s) => {
          await s.close();
          return undefined;
        },
        (e: IdmintError) => e,
      );
      const e = outcomes[i] as IdmintError;
      expect(e, code).toBeInstanceOf(code === "CERT_INVALID" ? IdmintError : SimError);
      expect({ code: e.code, kind: e.kind, message: e.message }).toEqual({ code, kind: inProcess!.kind, message: inProcess!.message });
      expect(e.message).not.toMatch(/\n/);
    }
  });

  it("close() ends the child; a child that died is reported by close()", async () => {
    await sim.close();
    expect(alive(sim.pid)).toBe(false);
    await sim.close();

    const doomed = await startSimulatorProcess(line("doomed"));
    process.kill(doomed.pid, "SIGKILL");
    await expect(doomed.close()).rejects.toThrow(`the unit simulator process (pid ${doomed.pid}) ended unexpectedly (signal SIGKILL)`);
  });

  it("the child ends when its parent is SIGKILLed (a parent run by node --import tsx)", async () => {
    const root = join(s.dir, "root.pem");
    writeFileSync(root, pki.rootPem);
    const parent = spawn(process.execPath, ["--import", "tsx", join(REPO, "test/fixtures/sim-parent.ts"), join(s.dir, "orphan"), root], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    parent.stderr.on("data", (d) => (stderr += d));
    const started = await new Promise<{ pid: number; port: number }>((resolve, reject) => {
      parent.stdout.once("data", (d: Buffer) => resolve(JSON.parse(d.toString("utf8"))));
      parent.once("exit", (code) => reject(new Error(`sim-parent exited with ${code}: ${stderr}`)));
    });
    const link = (await new TcpFixture(SIM_HOST, started.port, { timeoutMs: 5000 }).next())!;
    expect(await link.hello()).toMatchObject({ serial: "SN000001" });
    await link.close();
    expect(alive(started.pid)).toBe(true);

    parent.kill("SIGKILL");
    expect(await gone(started.pid)).toBe(true);
  });
});
