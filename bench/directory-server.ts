/**
 * The child process of the directory benchmark (started by directory-children.ts): one HTTP
 * server, on a loopback port of its own, driven by IPC from the benchmark. Not a benchmark
 * itself (run.ts lists those explicitly).
 *
 *   node --import tsx bench/directory-server.ts directory DB|postgres://… ROOT_PEM FACTORY_CA_PEM
 *   node --import tsx bench/directory-server.ts baseline  DB FACTORY_CA_PEM
 *
 * `directory` is `startDirectory` as `idmint directory serve` calls it, but without a logger
 * (the library's default; `directory serve` logs every request at its default level "info",
 * which measures pino and a pipe rather than the directory). `baseline` is the floor: a bare
 * node:http server answering each `/certificates/{serial}.crt` with the directory's exact
 * bytes for that path (the IDevID's PEM then the factory CA's), built at start from the same
 * store and held in a Map, so a request costs a lookup and a write.
 *
 * IPC (directory-wire.ts): the child sends { type: "ready", port } once it listens; it answers
 * { type: "cpu" } with its process.cpuUsage(), and { type: "stop" } by closing and exiting (so
 * `--cpu-prof` writes its profile). It exits on its own if the benchmark goes away.
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import Database from "better-sqlite3";
import { openStore, parseStoreLocation, startDirectory } from "../directory/index.js";
import { x509 } from "../pki/index.js";
import { PEM_TYPE, pemOf, type ServerCommand, type ServerMessage } from "./directory-wire.js";

/** `db` is an SQLite path, or a postgres:// URL (directory-pg.ts: each replica a child of its own). */
async function serveDirectory(db: string, rootPem: string, caPem: string): Promise<() => Promise<void>> {
  const store = await openStore(parseStoreLocation(db));
  const dir = await startDirectory({
    store,
    root: new x509.X509Certificate(readFileSync(rootPem, "utf8")),
    factoryCas: [new x509.X509Certificate(readFileSync(caPem, "utf8"))],
    port: 0,
  });
  send({ type: "ready", port: dir.port });
  return async () => {
    await dir.close();
    await store.close();
  };
}

async function serveBaseline(dbPath: string, caPemPath: string): Promise<() => Promise<void>> {
  const caPem = pemOf(new Uint8Array(new x509.X509Certificate(readFileSync(caPemPath, "utf8")).rawData));
  const bodies = new Map<string, Buffer>();
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    for (const row of db.prepare("SELECT serial, der FROM directory_certificates").iterate() as IterableIterator<{ serial: string; der: Buffer }>) {
      bodies.set(`/certificates/${row.serial}.crt`, Buffer.from(pemOf(row.der) + caPem));
    }
  } finally {
    db.close();
  }
  const server = createServer((req, res) => {
    const body = req.method === "GET" && req.url !== undefined ? bodies.get(req.url) : undefined;
    if (body === undefined) {
      res.writeHead(404, { "content-length": 0 }).end();
      return;
    }
    res.writeHead(200, { "content-type": PEM_TYPE, "content-length": body.length }).end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  send({ type: "ready", port: (server.address() as AddressInfo).port });
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}

function send(m: ServerMessage): void {
  process.send?.(m);
}

async function main(): Promise<void> {
  if (!process.send) throw new Error("bench/directory-server.ts is started by bench/directory-children.ts over IPC, not by hand");
  const [mode, ...args] = process.argv.slice(2);
  let close: () => Promise<void>;
  if (mode === "directory" && args.length === 3) close = await serveDirectory(args[0]!, args[1]!, args[2]!);
  else if (mode === "baseline" && args.length === 2) close = await serveBaseline(args[0]!, args[1]!);
  else throw new Error(`usage: directory-server.ts directory DB ROOT CA | baseline DB CA (got ${process.argv.slice(2).join(" ")})`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await close();
    // process.exit, not a natural end: the IPC channel would keep the process alive, and
    // --cpu-prof writes its profile on exit either way.
    process.exit(0);
  };
  process.on("message", (m: ServerCommand) => {
    if (m.type === "cpu") {
      const u = process.cpuUsage();
      send({ type: "cpu", user: u.user, system: u.system });
    } else if (m.type === "stop") void stop();
  });
  // The benchmark died or was interrupted: nobody will ever send "stop".
  process.on("disconnect", () => void stop());
}

main().catch((e: unknown) => {
  console.error(`directory-server: ${(e as Error).stack ?? String(e)}`);
  process.exit(1);
});
