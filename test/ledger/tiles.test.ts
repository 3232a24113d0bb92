import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Home, openDb, systemClock } from "../../core/index.js";
import { Hsm } from "../../hsm/index.js";
import { randomBytes } from "node:crypto";
import { Ledger, TileHasher, decodeBundle, emptyRoot, rootFromLeafHashes, stationOrigin, tileIndexPath, tilePath, verifyBundle, type InclusionBundle, type LedgerEvent } from "../../ledger/index.js";
import { idmintInProcess, oneLineError, run, scratch, type Run } from "../helpers.js";

const s = scratch("tiles");
const homeDir = join(s.dir, "home");
const home = new Home(homeDir);
const tiles = join(s.dir, "tiles");
const cli = (...args: string[]): Promise<Run> => idmintInProcess(["--home", homeDir, ...args]);
const origin = stationOrigin("station-1");
const SIZE = 70_000;

const event = (i: number): LedgerEvent =>
  i % 2 === 0
    ? { type: "serial.reserved", serial: `SN${String(i).padStart(7, "0")}`, allocationId: "alloc-1" }
    : { type: "certificate.issued", serial: `SN${String(i - 1).padStart(7, "0")}`, certificateSerial: String(i), certificateFingerprint: (i % 256).toString(16).padStart(2, "0").repeat(32) };

/** Appends `count` entries straight to the station's ledger (no line) and signs a checkpoint over them. */
async function grow(count: number): Promise<void> {
  const config = home.readConfig();
  const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
  const db = openDb(home.stationDbPath);
  try {
    const ledger = new Ledger(db, systemClock);
    const start = ledger.size();
    ledger.appendMany(Array.from({ length: count }, (_, i) => event(start + i)));
    await ledger.checkpoint(hsm.signer(config.keys.station), origin);
  } finally {
    db.close();
    hsm.close();
  }
}

async function tilesJson(out = tiles): Promise<{ size: number; previousSize: number; fullTiles: number; partialTiles: number; bundles: number }> {
  const r = await cli("ledger", "tiles", "--out", out, "--json");
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

beforeAll(async () => {
  for (const args of [["hsm", "init"], ["ca", "init"]]) {
    const r = await cli(...args);
    if (r.code !== 0) throw new Error(r.stderr);
  }
  await grow(SIZE);
});
afterAll(() => s.cleanup());

describe("C2SP tile paths", () => {
  it("encodes the tile index as 3-digit elements, all but the last prefixed with x", () => {
    expect(tileIndexPath(0)).toBe("000");
    expect(tileIndexPath(999)).toBe("999");
    expect(tileIndexPath(1000)).toBe("x001/000");
    expect(tileIndexPath(1234067)).toBe("x001/x234/067");
    expect(tilePath(0, 273, 112)).toBe("tile/0/273.p/112");
    expect(tilePath("entries", 1234067)).toBe("tile/entries/x001/x234/067");
    expect(tilePath(1, 5, 256)).toBe("tile/1/005");
  });
});

describe("TileHasher", () => {
  it("hashes to the RFC 9162 root at every size around the tile edges, also when resumed from its partial tiles", () => {
    const leaves = Array.from({ length: 66_000 }, () => new Uint8Array(randomBytes(32)));
    for (const size of [0, 1, 2, 3, 255, 256, 257, 511, 512, 513, 65_535, 65_536, 65_537, 66_000]) {
      const whole = new TileHasher();
      for (let i = 0; i < size; i++) whole.add(leaves[i]!);
      const expected = Buffer.from(rootFromLeafHashes(leaves, 0, size));
      expect(Buffer.from(whole.root(emptyRoot())).equals(expected), `size ${size}`).toBe(true);
      const half = Math.floor(size / 2);
      const first = new TileHasher();
      for (let i = 0; i < half; i++) first.add(leaves[i]!);
      const resumed = new TileHasher(half, first.partials());
      for (let i = half; i < size; i++) resumed.add(leaves[i]!);
      expect(Buffer.from(resumed.root(emptyRoot())).equals(expected), `size ${size} resumed at ${half}`).toBe(true);
    }
  });
});

describe("idmint ledger tiles", () => {
  let proof: InclusionBundle;

  it("writes the tiles of a 70,000-entry ledger as C2SP lays them out, with the signed checkpoint", async () => {
    const config = home.readConfig();
    const p = await cli("ledger", "prove", "--serial", "SN0012344");
    expect(p.code).toBe(0);
    proof = JSON.parse(p.stdout) as InclusionBundle;

    const r = await tilesJson();
    // C2SP's own example: 273 full level-0 tiles, a partial of 112, one full level-1 tile,
    // a partial level-1 tile of 17, a partial level-2 tile of 1.
    expect(r).toMatchObject({ size: SIZE, previousSize: 0, fullTiles: 274, partialTiles: 3, bundles: 274 });
    for (const path of ["tile/0/272", "tile/0/273.p/112", "tile/1/000", "tile/1/001.p/17", "tile/2/000.p/1", "tile/entries/272", "tile/entries/273.p/112"]) {
      expect(existsSync(join(tiles, path)), path).toBe(true);
    }
    expect(statSync(join(tiles, "tile/0/000")).size).toBe(8192);
    const bundle = decodeBundle(readFileSync(join(tiles, "tile/entries/273.p/112")))!;
    expect(bundle).toHaveLength(112);
    expect(bundle[0]!.toString("utf8")).toMatch(/^idmint-ledger\/1 69888 serial.reserved /);
    const db = openDb(home.stationDbPath);
    try {
      expect(readFileSync(join(tiles, "checkpoint"), "utf8")).toBe(new Ledger(db, systemClock).latestCheckpoint()!.note);
    } finally {
      db.close();
    }
    expect(config.station.id).toBe("station-1");
  });

  it("is checked by Go's golang.org/x/mod/sumdb/tlog: tree hash equals the signed root, 100 random inclusion proofs verify", (ctx) => {
    const go = goTlog();
    if (!go.ok) return ctx.skip(go.why);
    const r = go.check(tiles, 100);
    expect(r.code, r.stderr).toBe(0);
    const checkpointRoot = readFileSync(join(tiles, "checkpoint"), "utf8").split("\n")[2];
    expect(JSON.parse(r.stdout)).toEqual({ size: SIZE, treeHash: checkpointRoot, proofs: 100 });

    // One byte changed in a level-1 tile: Go's tile reader no longer reaches the signed root.
    const copy = join(s.dir, "tampered");
    run("cp", ["-r", tiles, copy]);
    const tile = join(copy, "tile/1/000");
    const bytes = readFileSync(tile);
    bytes[100] = bytes[100]! ^ 1;
    writeFileSync(tile, bytes);
    const bad = go.check(copy, 5);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/malformed|invalid|mismatch|inconsistent/i);
  }, 120_000);

  it("adds only the new tiles on the next run; full tiles stay untouched, and the earlier proof still verifies", async () => {
    const full = join(tiles, "tile/0/100");
    const before = statSync(full).mtimeMs;
    await grow(300);
    const r = await tilesJson();
    // 70,300 entries: level-0 tile 273 fills; level 1 still has one full tile (already written).
    expect(r).toMatchObject({ size: SIZE + 300, previousSize: SIZE, fullTiles: 1, partialTiles: 3, bundles: 2 });
    expect(existsSync(join(tiles, "tile/0/273"))).toBe(true);
    expect(existsSync(join(tiles, "tile/0/274.p/156"))).toBe(true);
    expect(statSync(full).mtimeMs).toBe(before);
    expect(await tilesJson()).toMatchObject({ size: SIZE + 300, previousSize: SIZE + 300, fullTiles: 0, bundles: 0 });

    const config = home.readConfig();
    const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
    try {
      expect(verifyBundle(proof, hsm.signer(config.keys.station).publicKeySpki).entry.index).toBe(12345);
    } finally {
      hsm.close();
    }
    const go = goTlog();
    if (go.ok) expect(go.check(tiles, 20).code).toBe(0);
  }, 120_000);

  it("station report refuses to carry a ledger of more than 50,000 entries inside the report, and hands it over as tiles", async () => {
    const whole = await cli("station", "report", "--out", join(s.dir, "whole.json"));
    expect(whole.code).toBe(2);
    expect(oneLineError(whole)).toMatch(/too many to carry inside one report .*add --tiles DIR/);
    expect(existsSync(join(s.dir, "whole.json"))).toBe(false);
    const r = await cli("station", "report", "--out", join(s.dir, "small.json"), "--tiles", tiles, "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: "idmint-usage-report/2", tiles });
    expect(statSync(join(s.dir, "small.json")).size).toBeLessThan(10_000);
  });

  it("refuses a folder holding another log's tiles, and a folder whose partial tiles were removed", async () => {
    const foreign = join(s.dir, "foreign");
    mkdirSync(foreign);
    writeFileSync(join(foreign, "checkpoint"), "idmint.station/other\n1\n" + "A".repeat(43) + "=\n\n\u2014 idmint.station/other AAAA\n");
    const r = await cli("ledger", "tiles", "--out", foreign);
    expect(r.code).toBe(3);
    expect(oneLineError(r)).toMatch(/holds tiles of another log/);

    const cut = join(s.dir, "cut");
    run("cp", ["-r", tiles, cut]);
    run("rm", ["-r", join(cut, "tile/2")]);
    await grow(10);
    const c = await cli("ledger", "tiles", "--out", cut);
    expect(c.code).toBe(3);
    expect(oneLineError(c)).toMatch(/tile\/2\/000\.p\/1 is missing or cut short/);
  });
});

const GO_PROGRAM = `package main

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// tlog puts the tile height in its paths (tile/8/L/N); C2SP does not (tile/L/N).
type dirTiles struct{ dir string }

func (d dirTiles) Height() int { return 8 }
func (d dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}
func (d dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := os.ReadFile(filepath.Join(d.dir, "tile", strings.TrimPrefix(t.Path(), "tile/8/")))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func fail(f string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, f+"\\n", a...)
	os.Exit(1)
}

func main() {
	dir := os.Args[1]
	proofs, _ := strconv.Atoi(os.Args[2])
	f, err := os.Open(filepath.Join(dir, "checkpoint"))
	if err != nil {
		fail("%v", err)
	}
	sc := bufio.NewScanner(f)
	sc.Scan()
	sc.Scan()
	size, _ := strconv.ParseInt(sc.Text(), 10, 64)
	sc.Scan()
	rootBytes, _ := base64.StdEncoding.DecodeString(sc.Text())
	var root tlog.Hash
	copy(root[:], rootBytes)
	reader := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, dirTiles{dir})
	th, err := tlog.TreeHash(size, reader)
	if err != nil {
		fail("tree hash: %v", err)
	}
	if th != root {
		fail("tree hash mismatch: %v != %v", th, root)
	}
	rng := rand.New(rand.NewSource(21))
	for i := 0; i < proofs; i++ {
		n := rng.Int63n(size)
		t := tlog.Tile{H: 8, L: -1, N: n / 256, W: 256}
		if rest := size - t.N*256; rest < 256 {
			t.W = int(rest)
		}
		path := "entries/" + strings.TrimPrefix(t.Path(), "tile/8/data/")
		bundle, err := os.ReadFile(filepath.Join(dir, "tile", path))
		if err != nil {
			fail("%v", err)
		}
		var entry []byte
		for k := int64(0); k <= n%256; k++ {
			l := int(binary.BigEndian.Uint16(bundle))
			entry, bundle = bundle[2:2+l], bundle[2+l:]
		}
		p, err := tlog.ProveRecord(size, n, reader)
		if err != nil {
			fail("prove %d: %v", n, err)
		}
		if err := tlog.CheckRecord(p, size, root, n, tlog.RecordHash(entry)); err != nil {
			fail("inclusion of %d: %v", n, err)
		}
	}
	json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"size": size, "treeHash": base64.StdEncoding.EncodeToString(th[:]), "proofs": proofs})
}
`;

/** Debian's Go with golang-golang-x-mod-dev, offline in GOPATH mode; the program is built once. */
function goTlog(): { ok: true; check: (dir: string, proofs: number) => Run } | { ok: false; why: string } {
  const gopath = "/usr/share/gocode";
  if (run("sh", ["-c", "command -v go"]).code !== 0) return { ok: false, why: "no Go here: install golang-go and golang-golang-x-mod-dev (softhsm-config/ensure-deps.sh does)" };
  if (!existsSync(join(gopath, "src/golang.org/x/mod/sumdb/tlog"))) return { ok: false, why: "golang.org/x/mod/sumdb/tlog missing: install golang-golang-x-mod-dev" };
  const src = join(s.dir, "gotlog");
  const bin = join(src, "gotlog");
  if (!existsSync(bin)) {
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, "main.go"), GO_PROGRAM);
    const env = { ...process.env, GO111MODULE: "off", GOPATH: gopath, GOCACHE: join(s.dir, "gocache"), GOFLAGS: "" };
    const b = run("go", ["build", "-o", bin, "."], { cwd: src, env });
    if (b.code !== 0) throw new Error(`go build: ${b.stderr}`);
  }
  return { ok: true, check: (dir, proofs) => run(bin, [dir, String(proofs)]) };
}
