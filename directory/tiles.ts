import { createReadStream, existsSync, statSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance, FastifyReply } from "fastify";
import { assertStationId } from "../pki/index.js";

// C2SP tlog-tiles resources under a log's prefix: hash tiles of level 0-63 or entry bundles,
// the index in 3-digit elements (all but the last with an "x"), a partial tile's width 1-255.
const TILE_PATH = /^tile\/(?:[1-5]?\d|6[0-3]|entries)\/(?:x\d{3}\/)*\d{3}(?:\.p\/(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-5]))?$/;
// A tile, full or partial, never changes once written (C2SP tlog-tiles: "This endpoint is immutable").
const IMMUTABLE = "public, max-age=31536000, immutable";

/**
 * Serves each station's ledger as C2SP tlog-tiles, static, from `tilesDir/STATION/` (the folder
 * `idmint ledger tiles --out` writes at the station, copied here): the log's prefix is
 * `/stations/STATION/tiles`, with its own `checkpoint` (the one those tiles are written up to,
 * which the directory's uploaded checkpoint need not be) and its `tile/...` resources.
 */
export function registerTileRoutes(app: FastifyInstance, tilesDir: string): void {
  const send = (reply: FastifyReply, station: string, path: string, type: string, cache: string) => {
    try {
      assertStationId(station);
    } catch {
      return reply.code(400).header("cache-control", "no-store").send({ ok: false, error: { code: "BAD_NAME", message: "the station id is malformed" } });
    }
    const file = join(tilesDir, station, path);
    if (!existsSync(file) || !statSync(file).isFile()) {
      return reply.code(404).header("cache-control", "no-store").send({ ok: false, error: { code: "NOT_FOUND", message: `no ${path} for station ${station}` } });
    }
    return reply.type(type).header("cache-control", cache).send(createReadStream(file));
  };
  app.get<{ Params: { id: string } }>("/stations/:id/tiles/checkpoint", (request, reply) => send(reply, request.params.id, "checkpoint", "text/plain; charset=utf-8", "no-cache"));
  app.get<{ Params: { id: string; "*": string } }>("/stations/:id/tiles/*", (request, reply) => {
    const path = request.params["*"];
    if (!TILE_PATH.test(path)) return reply.code(404).header("cache-control", "no-store").send({ ok: false, error: { code: "NOT_FOUND", message: "not a C2SP tile path" } });
    return send(reply, request.params.id, path, "application/octet-stream", IMMUTABLE);
  });
}
