import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import type { ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Home } from "../core/index.js";
import { DashboardError } from "./errors.js";
import { StatusSource, type DashboardStatus } from "./status.js";

/** How often the page gets the line's state (server-sent events); the station publishes twice as often. */
const PUSH_MS = 1_000;
/** /api/status answers from a status this fresh rather than reading again: many pollers cost one read. */
const STATUS_FRESH_MS = 500;

export interface DashboardOptions {
  home: Home;
  port: number;
  /** The address to listen on: 127.0.0.1 unless the line's network must see it. */
  host?: string;
}

export interface DashboardServer {
  url: string;
  port: number;
  /** Ends the event streams, the server and the store's read-only handle. Idempotent. */
  close(): Promise<void>;
}

/** The page's files: beside this module in the sources, two levels up from dist/dashboard/. */
function pageDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return [join(here, "page"), join(here, "..", "..", "dashboard", "page")].find((d) => existsSync(join(d, "index.html"))) ?? join(here, "page");
}

/** Every file the page loads, read once: the page, its script and style, and uPlot from node_modules (no CDN). */
function assets(): Map<string, { type: string; body: Buffer }> {
  const dir = pageDir();
  const uplot = dirname(createRequire(import.meta.url).resolve("uplot/dist/uPlot.iife.min.js"));
  const files: Array<[string, string, string]> = [
    ["/", join(dir, "index.html"), "text/html; charset=utf-8"],
    ["/app.js", join(dir, "app.js"), "text/javascript; charset=utf-8"],
    ["/style.css", join(dir, "style.css"), "text/css; charset=utf-8"],
    ["/vendor/uPlot.iife.min.js", join(uplot, "uPlot.iife.min.js"), "text/javascript; charset=utf-8"],
    ["/vendor/uPlot.min.css", join(uplot, "uPlot.min.css"), "text/css; charset=utf-8"],
  ];
  return new Map(files.map(([route, path, type]) => [route, { type, body: readFileSync(path) }]));
}

function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/**
 * The line's dashboard: the page and its JSON API (`/api/status`, `/api/events`), reading
 * the station's state only (its live file and its store, read-only). One timer reads the
 * state for every open page, so five screens cost the station what one does.
 */
export async function startDashboard(o: DashboardOptions): Promise<DashboardServer> {
  const { default: Fastify } = await import("fastify");
  const files = assets();
  const source = new StatusSource(o.home);
  const streams = new Set<ServerResponse>();
  let last: DashboardStatus | undefined;
  let lastAt = 0;
  const read = (): DashboardStatus => {
    if (!last || Date.now() - lastAt >= STATUS_FRESH_MS) {
      last = source.read();
      lastAt = Date.now();
    }
    return last;
  };
  const push = () => {
    if (streams.size === 0) return;
    const event = `data: ${JSON.stringify(read())}\n\n`;
    for (const s of streams) s.write(event);
  };
  const timer = setInterval(push, PUSH_MS);

  const app = Fastify({ logger: false });
  app.addHook("onRequest", async (_request, reply) => {
    void reply.header("x-content-type-options", "nosniff").header("content-security-policy", "default-src 'self'; style-src 'self' 'unsafe-inline'");
  });
  for (const [route, file] of files) app.get(route, (_request, reply) => reply.type(file.type).header("cache-control", "no-cache").send(file.body));
  app.get("/api/status", (_request, reply) => reply.header("cache-control", "no-store").send(read()));
  app.get("/api/events", (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive", "x-content-type-options": "nosniff" });
    res.write(`retry: 2000\ndata: ${JSON.stringify(read())}\n\n`);
    streams.add(res);
    request.raw.on("close", () => streams.delete(res));
  });

  const host = o.host ?? "127.0.0.1";
  try {
    await app.listen({ port: o.port, host });
  } catch (e) {
    clearInterval(timer);
    source.close();
    await app.close().catch(() => undefined);
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "EADDRINUSE" ? "the address is in use" : code === "EACCES" ? "permission denied" : code === "EADDRNOTAVAIL" ? "no such local address" : (e as Error).message;
    throw new DashboardError("LISTEN_FAILED", `cannot listen on ${hostForUrl(host)}:${o.port}: ${why}; choose another --listen or --port`, { cause: e });
  }
  const port = (app.server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${hostForUrl(host)}:${port}`,
    port,
    close: () =>
      (closing ??= (async () => {
        clearInterval(timer);
        // Open event streams would hold the server's close for ever.
        for (const s of streams) s.end();
        streams.clear();
        try {
          await app.close();
        } finally {
          source.close();
        }
      })()),
  };
}
