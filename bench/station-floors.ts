/**
 * The station benchmark's floors, what a unit costs without the line: (a) its bare work in this
 * process, one unit after another; (b) the OpenSSL CLI in one bash loop (RFC 8886 Appendix A).
 */
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { openDb, type IdmintConfig } from "../core/index.js";
import { Hsm } from "../hsm/index.js";
import { MB, perSecond } from "./measure.js";
import type { BenchContext, Figure } from "./types.js";

// JIT and the first WAL frames are paid before the clock starts.
const FLOOR_WARMUP = 20;

// ---------------------------------------------------------------------------------------------
// Floor (a): the bare work of a unit, in this process, one unit after another

export interface FloorSlice {
  units: number;
  perS: number;
  /** µs per unit of each part. */
  us: { keygen: number; unitSign: number; caSign: number; commit: number };
}

/** One slice of floor (a): `count` units of bare work into a database of its own. */
export async function floorBareSlice(ctx: BenchContext, config: IdmintConfig, count: number, slice: number): Promise<FloorSlice> {
  const db = openDb(join(ctx.dir, `floor-a-${slice}.db`));
  const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, env: process.env });
  try {
    db.exec("CREATE TABLE issued (serial TEXT PRIMARY KEY, certificate BLOB NOT NULL)");
    const insert = db.prepare("INSERT INTO issued (serial, certificate) VALUES (?, ?)");
    const commit = db.transaction((serial: string, cert: Buffer) => insert.run(serial, cert));
    const ca = hsm.signer(config.keys.factoryCa);
    // A CSR's CertificationRequestInfo is ~300 bytes, a certificate's TBSCertificate ~400; an
    // IDevID in PEM is ~900 bytes, which is what the row holds.
    const csrInfo = randomBytes(300);
    const tbs = randomBytes(400);
    const row = randomBytes(900);
    const parts = { keygen: 0, unitSign: 0, caSign: 0, commit: 0 };
    const unit = async (i: number, timed: boolean) => {
      csrInfo.writeUInt32BE(i, 0);
      tbs.writeUInt32BE(i, 0);
      let t = performance.now();
      const lap = (part: keyof typeof parts) => {
        const now = performance.now();
        if (timed) parts[part] += now - t;
        t = now;
      };
      const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      lap("keygen");
      sign("sha256", csrInfo, privateKey);
      lap("unitSign");
      await ca.sign(tbs);
      lap("caSign");
      commit.immediate(`SN${String(i).padStart(8, "0")}`, row);
      lap("commit");
    };
    for (let i = 0; i < FLOOR_WARMUP; i++) await unit(i, false);
    const t0 = performance.now();
    for (let i = FLOOR_WARMUP; i < FLOOR_WARMUP + count; i++) await unit(i, true);
    const ms = performance.now() - t0;
    const perS = perSecond(count, ms);
    const us = (part: keyof typeof parts) => (parts[part] * 1000) / count;
    ctx.log(`floor (a), slice ${slice}: ${count} units in ${ms.toFixed(0)} ms, ${perS.toFixed(0)} units/s (commit ${us("commit").toFixed(0)} µs)`);
    return { units: count, perS, us: { keygen: us("keygen"), unitSign: us("unitSign"), caSign: us("caSign"), commit: us("commit") } };
  } finally {
    hsm.close();
    db.close();
  }
}

/**
 * Floor (a) over its slices: the median slice is the floor. Its commit is an fsync, whose
 * latency swings from one minute to the next (bench/README.md), so one slice alone would make
 * the ratio a draw of the disk.
 */
export function floorBare(slices: readonly FloorSlice[]): { perS: number; figures: Figure[] } {
  const sorted = [...slices].sort((x, y) => x.perS - y.perS);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return {
    perS: median.perS,
    figures: [
      { key: "floor_a.units", label: "floor (a) bare work: units per slice", value: median.units, unit: "units" },
      { key: "floor_a.slices", label: "floor (a) bare work: slices (before K=1, after K=1, after K=8)", value: slices.length, unit: "slices" },
      { key: "floor_a.per_s", label: "floor (a) bare work: throughput, median slice", value: median.perS, unit: "units/s", digits: 1 },
      { key: "floor_a.per_s_min", label: "floor (a) bare work: slowest slice", value: sorted[0]!.perS, unit: "units/s", digits: 1 },
      { key: "floor_a.per_s_max", label: "floor (a) bare work: fastest slice", value: sorted[sorted.length - 1]!.perS, unit: "units/s", digits: 1 },
      { key: "floor_a.keygen_us", label: "floor (a), median slice: P-256 keygen (node:crypto)", value: median.us.keygen, unit: "µs/unit", digits: 1 },
      { key: "floor_a.unit_sign_us", label: "floor (a), median slice: unit signs 300 B (node:crypto)", value: median.us.unitSign, unit: "µs/unit", digits: 1 },
      { key: "floor_a.ca_sign_us", label: "floor (a), median slice: CA signs 400 B (pkcs11js, SoftHSM)", value: median.us.caSign, unit: "µs/unit", digits: 1 },
      { key: "floor_a.commit_us", label: "floor (a), median slice: one-row commit (WAL, synchronous=FULL)", value: median.us.commit, unit: "µs/unit", digits: 1 },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Floor (b): the OpenSSL CLI, one bash loop

const OPENSSL_LOOP = `#!/usr/bin/env bash
# Per unit, what RFC 8886 Appendix A does with the OpenSSL CLI: a key, a CSR, a certificate.
set -euo pipefail
cd "$1"
for ((i = 1; i <= $2; i++)); do
  printf -v serial 'SN%08d' "$i"
  openssl ecparam -genkey -name prime256v1 -out k.pem
  openssl req -new -key k.pem -subj "/serialNumber=$serial" -out r.csr
  openssl x509 -req -in r.csr -CA ca.pem -CAkey ca.key -set_serial "$i" -days 3650 -out c.pem
done
`;

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", maxBuffer: 64 * MB });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr.trim().split("\n").slice(-3).join(" / ")}`);
  return r.stdout;
}

export function floorOpenssl(ctx: BenchContext, count: number): { perS: number; figures: Figure[] } {
  const dir = join(ctx.dir, "openssl");
  mkdirSync(dir, { recursive: true });
  // A P-256 CA like the factory CA, made before the clock starts.
  sh("openssl", ["ecparam", "-genkey", "-name", "prime256v1", "-out", "ca.key"], dir);
  sh("openssl", ["req", "-x509", "-new", "-key", "ca.key", "-subj", "/O=Bench Vendor/CN=Bench Factory CA", "-days", "3650", "-out", "ca.pem"], dir);
  const script = join(dir, "loop.sh");
  writeFileSync(script, OPENSSL_LOOP, { mode: 0o700 });
  const t0 = performance.now();
  sh("bash", [script, dir, String(count)], dir);
  const ms = performance.now() - t0;
  // The loop really issued: the last certificate chains to the CA and names the last serial.
  sh("openssl", ["verify", "-CAfile", "ca.pem", "c.pem"], dir);
  const subject = sh("openssl", ["x509", "-in", "c.pem", "-noout", "-subject"], dir);
  const lastSerial = `SN${String(count).padStart(8, "0")}`;
  if (!subject.includes(lastSerial)) throw new Error(`the OpenSSL loop's last certificate names ${subject.trim()}, not ${lastSerial}`);
  const perS = perSecond(count, ms);
  ctx.log(`floor (b): ${count} units in ${ms.toFixed(0)} ms, ${perS.toFixed(1)} units/s`);
  return {
    perS,
    figures: [
      { key: "floor_b.units", label: "floor (b) OpenSSL CLI loop: units", value: count, unit: "units" },
      { key: "floor_b.per_s", label: "floor (b) OpenSSL CLI loop: throughput", value: perS, unit: "units/s", digits: 1 },
      { key: "floor_b.ms_per_unit", label: "floor (b): per unit (3 openssl processes)", value: ms / count, unit: "ms/unit", digits: 1 },
    ],
  };
}
