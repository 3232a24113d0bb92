/**
 * Vouchers for a whole order (bench/README.md, "vouchers"): `issueVouchers` with the MASA key
 * in SoftHSM, the ledger in SQLite and one file per voucher, as `vouchers issue --order`
 * runs, beside `openssl cms -sign` in one bash loop over the same voucher JSON.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { openSignedData } from "../cms/index.js";
import { Home, openDb, systemClock } from "../core/index.js";
import { initEmbeddedHsm, withHsm } from "../hsm/index.js";
import { Ledger } from "../ledger/index.js";
import { initCa, parseCertificate } from "../pki/index.js";
import { defaultMasaKeyUri, issueVouchers, writeVoucherFiles, type ProvisionedUnit } from "../vouchers/index.js";
import { MB, perSecond } from "./measure.js";
import type { BenchContext, Benchmark, Figure } from "./types.js";

const WARMUP = 200;
const OPENSSL_LOOP = `set -e
while read -r s; do
  openssl cms -sign -in "json/$s.json" -signer masa.pem -inkey masa.key -binary -nodetach -outform DER \\
    -econtent_type 1.2.840.113549.1.9.16.1.40 -out "out/$s.vcj"
done < serials.txt
`;

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", maxBuffer: 64 * MB });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const unitsOf = (count: number, from = 1): ProvisionedUnit[] =>
  Array.from({ length: count }, (_, i) => ({ serial: `SN${String(from + i).padStart(8, "0")}`, model: "Bench Router", order: "BENCH-1" }));

export const vouchersBenchmark: Benchmark = {
  name: "vouchers",
  async run(ctx: BenchContext): Promise<Figure[]> {
    const count = ctx.param("BENCH_VOUCHERS", 10_000);
    const opensslCount = Math.min(count, ctx.param("BENCH_VOUCHERS_OPENSSL", 300));
    const home = new Home(join(ctx.dir, "home"));
    initEmbeddedHsm(home);
    const ceremony = home.readConfig();
    const hsmOptions = { module: ceremony.hsm.module, softhsmConf: ceremony.hsm.softhsmConf, env: process.env };
    await withHsm(hsmOptions, (hsm) => initCa(home, ceremony, "station-1", hsm, defaultMasaKeyUri(ceremony)));
    const config = home.readConfig();
    const cert = (name: "masa" | "factory-ca") => parseCertificate(readFileSync(home.pkiFile(name)), home.pkiFile(name));
    sh("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "owner.key", "-subj", "/O=Bench Owner/CN=owner", "-days", "30", "-out", "owner.pem"], ctx.dir);
    const ownerCert = parseCertificate(readFileSync(join(ctx.dir, "owner.pem")), "owner.pem");
    const out = join(ctx.dir, "vouchers");
    mkdirSync(out);

    const db = openDb(home.stationDbPath);
    let ms: number;
    let inMemoryMs: number;
    try {
      const ledger = new Ledger(db, systemClock);
      [ms, inMemoryMs] = await withHsm(hsmOptions, async (hsm) => {
        const issue = (units: ProvisionedUnit[], toFiles = true) =>
          issueVouchers({
            units,
            request: { target: { order: "BENCH-1" }, ownerCert, assertion: "verified" },
            masa: { signer: hsm.signer(config.keys.masa!), certificate: cert("masa") },
            factoryCa: cert("factory-ca"),
            ledger,
            clock: systemClock,
            handOver: (vouchers) => (toFiles ? writeVoucherFiles(out, vouchers, (der) => der) : undefined),
          });
        // JIT, the first session and the first WAL frames, before the clock starts.
        await issue(unitsOf(WARMUP, count + 1));
        const t0 = performance.now();
        await issue(unitsOf(count));
        const t1 = performance.now();
        // The same vouchers again, kept in memory: what signing and the ledger cost without the files.
        await issue(unitsOf(count), false);
        return [t1 - t0, performance.now() - t1];
      });
    } finally {
      db.close();
    }
    const perS = perSecond(count, ms);
    ctx.log(`idmint: ${count} vouchers in ${ms.toFixed(0)} ms, ${perS.toFixed(0)} vouchers/s`);
    // Every voucher is checked by openssl against the vendor root: the last one here, to keep the bench short.
    const last = unitsOf(1, count)[0]!.serial;
    sh("openssl", ["cms", "-verify", "-inform", "DER", "-in", join(out, `${last}.vcj`), "-CAfile", home.pkiFile("root"), "-out", "/dev/null"], ctx.dir);

    // The OpenSSL loop signs the same voucher JSON (taken out of idmint's vouchers), with a P-256 key in a file.
    const dir = join(ctx.dir, "openssl");
    mkdirSync(join(dir, "json"), { recursive: true });
    mkdirSync(join(dir, "out"));
    const serials = unitsOf(opensslCount).map((u) => u.serial);
    for (const s of serials) writeFileSync(join(dir, "json", `${s}.json`), openSignedData(readFileSync(join(out, `${s}.vcj`)), s).content);
    writeFileSync(join(dir, "serials.txt"), serials.join("\n") + "\n");
    writeFileSync(join(dir, "loop.sh"), OPENSSL_LOOP, { mode: 0o700 });
    sh("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "masa.key", "-subj", "/O=Bench Vendor/CN=Bench MASA", "-days", "30", "-out", "masa.pem"], dir);
    const t0 = performance.now();
    sh("bash", [join(dir, "loop.sh")], dir);
    const opensslMs = performance.now() - t0;
    sh("openssl", ["cms", "-verify", "-inform", "DER", "-in", join(dir, "out", `${serials[serials.length - 1]}.vcj`), "-CAfile", "masa.pem", "-purpose", "any", "-out", "/dev/null"], dir);
    const opensslPerS = perSecond(opensslCount, opensslMs);
    ctx.log(`openssl cms -sign loop: ${opensslCount} vouchers in ${opensslMs.toFixed(0)} ms, ${opensslPerS.toFixed(0)} vouchers/s`);
    return [
      { key: "vouchers", label: "vouchers for one order (issueVouchers, MASA key in SoftHSM, ledger, a file each)", value: count, unit: "vouchers" },
      { key: "per_s", label: "idmint: throughput", value: perS, unit: "vouchers/s", digits: 0 },
      { key: "ms_per_voucher", label: "idmint: per voucher", value: ms / count, unit: "ms", digits: 3 },
      { key: "in_memory.per_s", label: "idmint without the files (signed, in the ledger, kept in memory)", value: perSecond(count, inMemoryMs), unit: "vouchers/s", digits: 0 },
      { key: "openssl.vouchers", label: "openssl cms -sign loop: vouchers", value: opensslCount, unit: "vouchers" },
      { key: "openssl.per_s", label: "openssl cms -sign loop: throughput", value: opensslPerS, unit: "vouchers/s", digits: 0 },
      { key: "ratio_openssl", label: "idmint / openssl cms -sign loop", value: perS / opensslPerS, unit: "x", digits: 1, target: { op: ">=", value: 20 } },
    ];
  },
};
