import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { createHash } from "node:crypto";
import type { AddressInfo } from "node:net";
import { systemClock, type Clock } from "../core/index.js";
import { assertSerialSyntax, assertStationId, checkChain, x509 } from "../pki/index.js";
import { stationOrigin, type InclusionBundle } from "../ledger/index.js";
import { DirectoryError, Refusal } from "./errors.js";
import { openDirectoryStore, type DirectoryStore, type PublishedCertificate } from "./store.js";
import { acceptUpload, type TrustAnchors, type UploadContext } from "./upload.js";
import { SIGNATURE_HEADER } from "./wire.js";
import { registerTileRoutes } from "./tiles.js";

export interface DirectoryLoggerOptions {
  /** pino level: "info" logs every request, "warn" only refusals and failures. */
  level?: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";
  /** Where the JSON log lines go (the CLI passes stderr). */
  stream?: { write(line: string): void };
}

export interface DirectoryOptions {
  /** The SQLite store; ignored when `store` is given. */
  dbPath?: string;
  /** Another DirectoryStore (e.g. PostgreSQL); the caller owns it and closes it. */
  store?: DirectoryStore;
  /** The pinned vendor root. */
  root: x509.X509Certificate;
  /** The factory CAs whose IDevIDs may be published; each must be a pathLen-0 CA under the root. */
  factoryCas: readonly x509.X509Certificate[];
  port: number;
  host?: string;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Library code never prints: without a logger the server logs nothing. */
  logger?: DirectoryLoggerOptions;
  /** POST /uploads bodies larger than this are refused with 413. */
  bodyLimitBytes?: number;
  /** How long a request may take, headers and body included. */
  requestTimeoutMs?: number;
  /** How far ahead of this server's clock a station's clock may run (certificate notBefore). */
  clockSkewMs?: number;
  /** Published certificates kept in memory for .crt/.der reads (0: none). */
  certificateCacheEntries?: number;
  clock?: Clock;
  /** Serve each station's C2SP tiles from DIR/STATION/ at /stations/STATION/tiles/ (see tiles.ts). */
  tilesDir?: string;
}

export interface RunningDirectory {
  /** Base URL, e.g. http://127.0.0.1:41234 (no trailing slash). */
  url: string;
  port: number;
  /** Stops accepting, finishes requests in flight, closes the store it opened. Idempotent. */
  close(): Promise<void>;
}

export const DIRECTORY_DEFAULTS = {
  host: "127.0.0.1",
  bodyLimitBytes: 8 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  clockSkewMs: 5 * 60_000,
  /** Published certificates kept in memory for .crt/.der reads (about 0.7 KB each). */
  certificateCacheEntries: 100_000,
} as const;

/**
 * The published certificates most recently read, by serial: a published certificate never
 * changes, so serving it from memory is always right, and it spares the SQLite read that
 * dominates a GET (bench/README.md, directory). Least recently used entries leave first;
 * unknown serials are never cached.
 */
class PublishedCache {
  private readonly entries = new Map<string, { der: Buffer; etag: string }>();
  constructor(private readonly max: number) {}

  get(serial: string): { der: Buffer; etag: string } | undefined {
    const hit = this.entries.get(serial);
    if (hit) {
      this.entries.delete(serial);
      this.entries.set(serial, hit);
    }
    return hit;
  }

  set(serial: string, value: { der: Buffer; etag: string }): void {
    if (this.max <= 0) return;
    this.entries.set(serial, value);
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
  }
}

/** What a 503 asks clients to wait: about how long a PostgreSQL restart or failover takes. */
const RETRY_AFTER_SECONDS = 2;

/** Published certificates never change (a conflicting one is never published), so caches may keep them. */
const CERTIFICATE_CACHE = "public, max-age=3600";
const PEM_TYPE = "application/pem-certificate-chain"; // RFC 8555 §9.1
const DER_TYPE = "application/pkix-cert"; // RFC 2585 §4.1

/** Checks the trust anchors once at start: a factory CA must be a CA directly under the root that may not certify further CAs. */
async function checkAnchors(anchors: TrustAnchors, at: Date): Promise<void> {
  if (anchors.factoryCas.length === 0) throw new DirectoryError("CONFIG_INVALID", "the directory needs at least one factory CA certificate");
  for (const ca of anchors.factoryCas) {
    const bc = ca.getExtension(x509.BasicConstraintsExtension);
    try {
      const path = await checkChain(ca, [], anchors.root, at);
      if (path.length !== 2) throw new Error("it is not directly below the root");
    } catch (e) {
      throw new DirectoryError("ANCHORS_INVALID", `factory CA ${ca.subject} does not chain to the vendor root: give the factory CA of this vendor`, { cause: e });
    }
    if (bc?.ca !== true || bc.pathLength !== 0) {
      throw new DirectoryError("ANCHORS_INVALID", `${ca.subject} is not a factory CA (a CA with pathLen 0): give the factory CA certificate, not ${ca.subject}`);
    }
  }
}

function hostForUrl(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** RFC 9110 §13.1.2: If-None-Match uses the weak comparison; "*" matches any current representation. */
function notModified(request: FastifyRequest, etag: string): boolean {
  const header = request.headers["if-none-match"];
  if (typeof header !== "string") return false;
  return header.split(",").some((t) => {
    const tag = t.trim();
    return tag === "*" || tag.replace(/^W\//, "") === etag;
  });
}

function refusalBody(r: Refusal, requestId: string): Record<string, unknown> {
  return {
    ok: false,
    error: { code: r.reason, message: r.message, ...(r.serial !== undefined ? { serial: r.serial } : {}) },
    ...(r.acceptedSize !== undefined ? { acceptedSize: r.acceptedSize } : {}),
    requestId,
  };
}

/** STYLE practice 4: the log gets the internal cause, the station a safe message. */
function refusalLog(r: Refusal): Record<string, unknown> {
  return { reason: r.reason, serial: r.serial, detail: r.detail, cause: r.cause instanceof Error ? r.cause.message : r.cause };
}

function sendRefusal(request: FastifyRequest, reply: FastifyReply, r: Refusal): FastifyReply {
  const log = { ...refusalLog(r), status: r.status };
  if (r.status >= 500) request.log.error(log, "upload failed");
  else request.log.warn(log, `upload refused: ${r.message}`);
  return reply.code(r.status).header("cache-control", "no-store").send(refusalBody(r, request.id));
}

function inclusionBundle(cert: PublishedCertificate, checkpoint: { note: string; stationCertificate: string }): InclusionBundle {
  return {
    format: "idmint-inclusion/1",
    origin: stationOrigin(cert.station),
    index: cert.ledgerIndex,
    entry: Buffer.from(cert.entry).toString("base64"),
    checkpoint: checkpoint.note,
    proof: cert.inclusionProof.map((h) => Buffer.from(h).toString("base64")),
    stationCertificate: checkpoint.stationCertificate,
  };
}

type Format = "pem" | "der" | "json";

/** `{serial}.crt` / `.pem` / `.der` / `{serial}`: the candidates a name can mean, in order (a serial may itself contain dots). */
function candidates(name: string): Array<{ serial: string; format: Format }> {
  const valid = (s: string) => {
    try {
      assertSerialSyntax(s);
      return true;
    } catch {
      return false;
    }
  };
  const out: Array<{ serial: string; format: Format }> = [];
  const m = /^(.+)\.(crt|pem|der)$/.exec(name);
  if (m && valid(m[1]!)) out.push({ serial: m[1]!, format: m[2] === "der" ? "der" : "pem" });
  if (valid(name)) out.push({ serial: name, format: "json" });
  return out;
}

function pemOf(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END CERTIFICATE-----\n`;
}

function routes(app: FastifyInstance, store: DirectoryStore, ctx: UploadContext, bodyLimitBytes: number, cache: PublishedCache): void {
  const caPems = ctx.anchors.factoryCas.map((ca) => ({ subject: Buffer.from(AsnConvert.serialize(AsnConvert.parse(ca.rawData, Certificate).tbsCertificate.subject)), pem: pemOf(new Uint8Array(ca.rawData)) }));
  // The issuer is read from the DER without a full parse: this sits on the hot read path.
  const issuerPem = (der: Uint8Array): string => {
    if (caPems.length === 1) return caPems[0]!.pem;
    const issuer = Buffer.from(AsnConvert.serialize(AsnConvert.parse(der, Certificate).tbsCertificate.issuer));
    return caPems.find((c) => c.subject.equals(issuer))?.pem ?? "";
  };
  const notFound = (reply: FastifyReply, what: string) =>
    reply.code(404).header("cache-control", "no-store").send({ ok: false, error: { code: "NOT_FOUND", message: `the directory holds no ${what}` } });
  const badName = (reply: FastifyReply, what: string) =>
    reply.code(400).header("cache-control", "no-store").send({ ok: false, error: { code: "MALFORMED", message: `that is not a valid ${what}` } });

  // RFC 8886 §3.2 / §4.2: an operator fetches a device's certificate by its serial number.
  app.get<{ Params: { name: string } }>("/certificates/:name", async (request, reply) => {
    const options = candidates(request.params.name);
    if (options.length === 0) return badName(reply, "serial (1-64 of A-Z a-z 0-9 . -)");
    for (const { serial, format } of options) {
      if (format !== "json") {
        let hit = cache.get(serial);
        if (!hit) {
          const published = await store.published(serial);
          if (!published) continue;
          hit = { der: Buffer.from(published.der), etag: `"${published.fingerprint}"` };
          cache.set(serial, hit);
        }
        reply.header("etag", hit.etag).header("cache-control", CERTIFICATE_CACHE);
        if (notModified(request, hit.etag)) return reply.code(304).send();
        if (format === "der") return reply.type(DER_TYPE).send(hit.der);
        // application/pem-certificate-chain: the device certificate first, then its factory CA,
        // so an operator needs only the vendor root to check it (RFC 8555 §9.1 order).
        return reply.type(PEM_TYPE).send(pemOf(hit.der) + issuerPem(hit.der));
      }
      const cert = await store.certificate(serial);
      if (!cert) continue;
      const etag = `"${cert.fingerprint}"`;
      reply.header("etag", etag).header("cache-control", CERTIFICATE_CACHE);
      if (notModified(request, etag)) return reply.code(304).send();
      const checkpoint = await store.checkpointAt(cert.station, cert.checkpointSize);
      if (!checkpoint) throw new DirectoryError("STORE_INCONSISTENT", `published ${serial} refers to checkpoint ${cert.checkpointSize} of ${cert.station}, which the store lacks`);
      const base = `/certificates/${encodeURIComponent(serial)}`;
      return reply.type("application/json").send({
        serial: cert.serial,
        fingerprint: cert.fingerprint,
        certificateSerial: cert.certificateSerial,
        station: cert.station,
        issuedAt: cert.issuedAt,
        publishedAt: cert.publishedAt,
        ledgerIndex: cert.ledgerIndex,
        links: { pem: `${base}.crt`, der: `${base}.der` },
        // An idmint-inclusion/1 bundle: `idmint ledger verify-proof` checks it with only the vendor root.
        proof: inclusionBundle(cert, checkpoint),
      });
    }
    return notFound(reply, `certificate for ${options[0]!.serial}`);
  });

  app.get<{ Params: { id: string } }>("/stations/:id/checkpoint", async (request, reply) => {
    const id = request.params.id;
    try {
      assertStationId(id);
    } catch {
      return badName(reply, "station id");
    }
    const cp = await store.latestCheckpoint(id);
    if (!cp) return notFound(reply, `checkpoint of station ${id}`);
    const etag = `"${cp.size}-${createHash("sha256").update(cp.note).digest("hex").slice(0, 32)}"`;
    reply.header("etag", etag).header("cache-control", "no-cache");
    if (notModified(request, etag)) return reply.code(304).send();
    return reply.type("text/plain; charset=utf-8").send(cp.note);
  });

  // Uploads get their own context: every body arrives as raw bytes (the signature is over
  // exactly those), whatever its content type, and bodies over the limit are cut off (413).
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: bodyLimitBytes }, (_request, body, done) => done(null, body));
    scope.post("/uploads", { bodyLimit: bodyLimitBytes }, async (request, reply) => {
      const body = request.body;
      if (!Buffer.isBuffer(body) || body.length === 0) return sendRefusal(request, reply, new Refusal("MALFORMED", "the upload has no body: send an idmint-upload/1 document"));
      const signature = request.headers[SIGNATURE_HEADER];
      try {
        const { receipt, refusals } = await acceptUpload(ctx, body, typeof signature === "string" ? signature : undefined);
        for (const r of refusals) request.log.warn(refusalLog(r), `certificate refused: ${r.message}`);
        request.log.info(
          { station: receipt.station, checkpointSize: receipt.checkpoint.size, published: receipt.published.length, alreadyPublished: receipt.alreadyPublished.length, refused: refusals.length },
          "upload accepted",
        );
        // 207: a client that only knows "200 = all published" cannot take this answer for one.
        return reply.code(refusals.length > 0 ? 207 : 200).header("cache-control", "no-store").send(receipt);
      } catch (e) {
        if (e instanceof Refusal) return sendRefusal(request, reply, e);
        throw e;
      }
    });
  });
}

/** Starts the directory (RFC 8886 key server): public reads of published IDevIDs, signed uploads from stations. */
export async function startDirectory(options: DirectoryOptions): Promise<RunningDirectory> {
  const clock = options.clock ?? systemClock;
  const anchors: TrustAnchors = { root: options.root, factoryCas: options.factoryCas };
  await checkAnchors(anchors, clock.now());
  if (!options.store && !options.dbPath) throw new DirectoryError("CONFIG_INVALID", "the directory needs a store: give dbPath");
  const ownsStore = !options.store;
  const store = options.store ?? openDirectoryStore(options.dbPath!);
  const bodyLimitBytes = options.bodyLimitBytes ?? DIRECTORY_DEFAULTS.bodyLimitBytes;
  const ctx: UploadContext = { anchors, store, clock, clockSkewMs: options.clockSkewMs ?? DIRECTORY_DEFAULTS.clockSkewMs };

  // Loaded here, not at the top: every other idmint command would pay for it at start-up.
  const { default: Fastify } = await import("fastify");
  const app = Fastify({
    logger: options.logger ? { level: options.logger.level ?? "info", stream: options.logger.stream } : false,
    bodyLimit: bodyLimitBytes,
    requestTimeout: options.requestTimeoutMs ?? DIRECTORY_DEFAULTS.requestTimeoutMs,
    // Long enough for any valid name, so a long bad one is answered 400 by the handler, not 404 by the router.
    routerOptions: { maxParamLength: 512 },
    ...(options.tls ? { https: { cert: options.tls.cert, key: options.tls.key } } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  app.addHook("onRequest", async (_request, reply) => {
    void reply.header("x-content-type-options", "nosniff");
  });
  app.setNotFoundHandler((_request, reply) => reply.code(404).header("cache-control", "no-store").send({ ok: false, error: { code: "NOT_FOUND", message: "no such resource" } }));
  app.setErrorHandler((error: { statusCode?: number; code?: string; message?: string }, request, reply) => {
    if (error.statusCode === 413 || error.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      return sendRefusal(request, reply, new Refusal("TOO_LARGE", `the upload is larger than ${bodyLimitBytes} bytes: send fewer certificates per upload`, { detail: error.message }));
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return sendRefusal(request, reply, new Refusal("MALFORMED", "the request is malformed", { detail: `${error.code ?? ""} ${error.message ?? ""}` }));
    }
    // The database is down or restarting: the client retries later, and this replica recovers by itself.
    if (error instanceof DirectoryError && error.code === "STORE_UNAVAILABLE") {
      request.log.warn({ cause: error.message }, "store unavailable");
      const r = new Refusal("UNAVAILABLE", "the directory's database is unavailable: retry later");
      return reply.code(503).header("cache-control", "no-store").header("retry-after", String(RETRY_AFTER_SECONDS)).send(refusalBody(r, request.id));
    }
    request.log.error({ err: error }, "request failed");
    return reply.code(500).header("cache-control", "no-store").send({ ok: false, error: { code: "INTERNAL", message: "internal error; the directory logged the cause" }, requestId: request.id });
  });
  const cacheEntries = options.certificateCacheEntries ?? DIRECTORY_DEFAULTS.certificateCacheEntries;
  const cache = new PublishedCache(cacheEntries);
  // Preloaded oldest first, so the newest certificates are the last to be evicted.
  if (cacheEntries > 0) for (const c of (await store.recentCertificates(cacheEntries)).reverse()) cache.set(c.serial, { der: Buffer.from(c.der), etag: `"${c.fingerprint}"` });
  routes(app, store, ctx, bodyLimitBytes, cache);
  if (options.tilesDir) registerTileRoutes(app, options.tilesDir);

  const host = options.host ?? DIRECTORY_DEFAULTS.host;
  try {
    await app.listen({ port: options.port, host });
  } catch (e) {
    await app.close().catch(() => undefined);
    if (ownsStore) await store.close();
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "EADDRINUSE" ? "the address is in use" : code === "EACCES" ? "permission denied" : code === "EADDRNOTAVAIL" ? "no such local address" : (e as Error).message;
    throw new DirectoryError("LISTEN_FAILED", `cannot listen on ${hostForUrl(host)}:${options.port}: ${why}; choose another --host or --port`, { cause: e });
  }
  const port = (app.server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `${options.tls ? "https" : "http"}://${hostForUrl(host)}:${port}`,
    port,
    close: () => {
      closing ??= (async () => {
        try {
          await app.close();
        } finally {
          if (ownsStore) await store.close();
        }
      })();
      return closing;
    },
  };
}
