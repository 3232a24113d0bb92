import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, request as httpRequest, type Server } from "node:http";
import { createServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Home, systemClock, systemRandom } from "../../core/index.js";
import { CEREMONY_ALGORITHMS, issueEndEntity, x509 } from "../../pki/index.js";
import { REPO } from "../helpers.js";
import { directoryCommandLine, pem, withHsm } from "./fixture.js";

/**
 * A second station of the same vendor in its own home: its own key (made in the vendor's
 * station token) certified by the vendor root for `stationId`, the vendor's certificates,
 * and the same HSM configuration, as a second factory line would be set up.
 */
export async function addStation(vendor: Home, dir: string, stationId: string): Promise<Home> {
  const home = new Home(join(dir, stationId));
  mkdirSync(join(home.root, "pki"), { recursive: true });
  const config = vendor.readConfig();
  const keyUri = config.keys.station.replace("object=station-key", `object=${stationId}-key`);
  const cert = await withHsm(vendor, async (hsm) => {
    const key = hsm.createKey(keyUri, CEREMONY_ALGORITHMS.station);
    return issueEndEntity({
      purpose: "station",
      issuer: { signer: hsm.signer(config.keys.root), certificate: new x509.X509Certificate(pem(vendor, "root")) },
      publicKeySpki: key.publicKeySpki,
      subject: { organization: config.profile.organization, organizationalUnit: "Station", commonName: stationId },
      clock: systemClock,
      random: systemRandom,
    });
  });
  for (const name of ["root", "factory-ca", "allocation-signer"] as const) copyFileSync(vendor.pkiFile(name), home.pkiFile(name));
  writeFileSync(home.pkiFile("station"), cert.toString("pem") + "\n");
  home.writeConfig({ ...config, keys: { ...config.keys, station: keyUri }, station: { id: stationId } });
  return home;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface Replica {
  url: string;
  child: ChildProcess;
  exit: Promise<number | null>;
}

/** `idmint directory serve` on a fixed port in its own process (its store from the home's idmint.json), once it listens. */
export function startReplica(home: string, port: number): Promise<Replica> {
  const child = spawn(process.execPath, directoryCommandLine(home, "serve", "--port", String(port), "--log-level", "error", "--json"), { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exit = new Promise<number | null>((resolve) => child.on("close", resolve));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", (line) => resolve({ url: (JSON.parse(line) as { url: string }).url, child, exit }));
    void exit.then((code) => reject(new Error(`directory serve exited ${code}: ${stderr}`)));
  });
}

/**
 * A round-robin HTTP front: each request goes to the next replica, as a load balancer sends
 * a station's successive uploads to different replicas. A replica that is down answers 502.
 * pause() holds new requests until resume(), so a test acts mid-burst without timing luck.
 */
export async function roundRobin(targets: () => string[]): Promise<{ url: string; pause: () => void; resume: () => void; close: () => Promise<void> }> {
  let next = 0;
  let held: Array<() => void> | undefined;
  const server: Server = createHttpServer((req, res) => {
    if (held) {
      held.push(() => server.emit("request", req, res));
      return;
    }
    const list = targets();
    const target = new URL(list[next++ % list.length]!);
    const out = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    out.on("error", () => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
      res.end('{"ok":false,"error":{"code":"INTERNAL","message":"replica unreachable"}}');
    });
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    pause: () => void (held ??= []),
    resume: () => {
      const waiting = held ?? [];
      held = undefined;
      for (const go of waiting) go();
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Runs the real binary asynchronously (the test keeps serving and killing while it runs). */
export function idmintAsync(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO, "bin", "idmint.js"), ...args], { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
