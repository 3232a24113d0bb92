/**
 * The directory benchmark's two servers, each a child process of directory-server.ts, seen from
 * the benchmark: start, CPU time over IPC, stop; and the check that both answer the same bytes.
 */
import { fork, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { verifyBundle, type InclusionBundle } from "../ledger/index.js";
import type { Populated } from "./directory-populate.js";
import { PEM_TYPE, pemOf, type ServerCommand, type ServerMessage } from "./directory-wire.js";
import type { BenchContext } from "./types.js";

/** Paths fetched from both servers to check they answer the same bytes. */
const COMPARE_SAMPLE = 200;

const HERE = dirname(fileURLToPath(import.meta.url));
const PROJECT = dirname(HERE);
const SERVER_SCRIPT = join(HERE, "directory-server.ts");

export class ServerChild {
  private readonly pending: Array<(m: ServerMessage & { type: "cpu" }) => void> = [];
  private exited: string | undefined;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    readonly port: number,
  ) {
    child.on("message", (m: ServerMessage) => {
      if (m.type === "cpu") this.pending.shift()?.(m);
    });
    child.on("exit", (code, signal) => {
      this.exited = `exited (${code ?? signal})`;
    });
  }

  static start(name: string, args: string[], execArgv: string[] = []): Promise<ServerChild> {
    const child = fork(SERVER_SCRIPT, args, { cwd: PROJECT, execArgv: ["--import", "tsx", ...execArgv], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null, signal: string | null) => reject(new Error(`the ${name} server exited (${code ?? signal}) before it listened`));
      child.once("exit", onExit);
      child.once("error", reject);
      child.on("message", function ready(m: ServerMessage) {
        if (m.type !== "ready") return;
        child.off("message", ready);
        child.off("exit", onExit);
        resolve(new ServerChild(name, child, m.port));
      });
    });
  }

  /** CPU time (user + system) the child has used, in ms. */
  cpuMs(): Promise<number> {
    if (this.exited) return Promise.reject(new Error(`the ${this.name} server ${this.exited}`));
    return new Promise((resolve) => {
      this.pending.push((m) => resolve((m.user + m.system) / 1000));
      this.child.send({ type: "cpu" } satisfies ServerCommand);
    });
  }

  /** Asks the child to close and exit; kills it if it has not within 10 s. */
  async stop(): Promise<void> {
    if (this.exited || this.child.exitCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    try {
      this.child.send({ type: "stop" } satisfies ServerCommand);
    } catch {
      // The channel is already closed: the child is on its way out.
    }
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await gone;
    clearTimeout(timer);
  }
}

/** Both servers answer the same paths with the same bytes, and the JSON route's proofs verify. */
export async function compareServers(ctx: BenchContext, p: Populated, directory: ServerChild, baseline: ServerChild): Promise<number> {
  const picks = [0, p.serials.length - 1, ...Array.from({ length: COMPARE_SAMPLE }, () => Math.floor(Math.random() * p.serials.length))];
  let bytes = 0;
  for (const i of picks) {
    const path = `/certificates/${p.serials[i]!}.crt`;
    const [d, b] = await Promise.all([fetch(`http://127.0.0.1:${directory.port}${path}`), fetch(`http://127.0.0.1:${baseline.port}${path}`)]);
    const [dBody, bBody] = [Buffer.from(await d.arrayBuffer()), Buffer.from(await b.arrayBuffer())];
    if (d.status !== 200 || b.status !== 200) throw new Error(`GET ${path}: directory ${d.status}, baseline ${b.status}`);
    if (d.headers.get("content-type") !== PEM_TYPE || b.headers.get("content-type") !== PEM_TYPE) throw new Error(`GET ${path}: content types ${d.headers.get("content-type")} and ${b.headers.get("content-type")}`);
    if (!dBody.equals(bBody)) throw new Error(`GET ${path}: the directory and the baseline answer different bytes`);
    if (!dBody.toString("latin1").startsWith(pemOf(p.ders[i]!))) throw new Error(`GET ${path}: the directory does not answer the certificate stored for ${p.serials[i]}`);
    bytes += dBody.length;
  }
  // The JSON route reads the checkpoint too: its bundle must verify with only the station key.
  for (const i of [0, p.serials.length - 1]) {
    const res = await fetch(`http://127.0.0.1:${directory.port}/certificates/${p.serials[i]!}`);
    const info = (await res.json()) as { proof: InclusionBundle };
    const { entry } = verifyBundle(info.proof, p.stationSpki);
    if (entry.index !== i) throw new Error(`GET /certificates/${p.serials[i]}: the proof is for entry ${entry.index}, not ${i}`);
  }
  ctx.log(`servers: ${picks.length} paths answered identically (${(bytes / picks.length).toFixed(0)} bytes on average), JSON proofs verify`);
  return bytes / picks.length;
}
