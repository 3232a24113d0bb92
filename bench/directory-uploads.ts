/**
 * Upload throughput of directory replicas: stations of software keys, each with a real station
 * ledger (certificate.issued entries for certificates re-signed from the populate template) and
 * its signed checkpoint, every batch built with `buildUpload` and signed with `signUpload`
 * before anything is measured. A run sends each station's batches one after another (a station
 * uploads one batch at a time), all stations at once, batch i of station k to replica
 * (i + k) mod R, into a database none of these serials is in.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { openDb, sha256Hex, systemClock, systemRandom } from "../core/index.js";
import { buildUpload, signUpload, type SignedUpload } from "../directory/client/index.js";
import { openStore, parseStoreLocation } from "../directory/index.js";
import { Ledger, stationOrigin, type LedgerEvent } from "../ledger/index.js";
import { issueEndEntity } from "../pki/index.js";
import type { Populated } from "./directory-populate.js";
import { pemOf } from "./directory-wire.js";
import { softKey } from "./soft-key.js";
import type { BenchContext } from "./types.js";

export interface StationUploads {
  station: string;
  serials: string[];
  /** Signed bodies, the first one first (it sets the station's checkpoint). */
  batches: SignedUpload[];
}

export async function prepareUploads(ctx: BenchContext, p: Populated, stations: number, perStation: number, batch: number): Promise<StationUploads[]> {
  const out: StationUploads[] = [];
  for (let k = 1; k <= stations; k++) {
    const station = `upload-${k}`;
    const key = softKey("P-256");
    const cert = await issueEndEntity({
      purpose: "station",
      issuer: { signer: p.pki.rootSigner, certificate: p.pki.root },
      publicKeySpki: key.signer.publicKeySpki,
      subject: { organization: p.pki.root.subjectName.getField("O")[0] ?? "Bench Vendor", organizationalUnit: "Station", commonName: station },
      clock: systemClock,
      random: systemRandom,
    });
    const certPem = cert.toString("pem");
    const db = openDb(join(ctx.dir, `${station}.db`), { synchronous: "NORMAL" });
    try {
      const ledger = new Ledger(db, systemClock);
      const serials: string[] = [];
      const pems: string[] = [];
      const events: LedgerEvent[] = [];
      for (let i = 0; i < perStation; i++) {
        // As long as the template's serials (it re-signs in place): U, the station, a counter.
        const serial = `U${k}${String(i + 1).padStart(p.serials[0]!.length - 1 - String(k).length, "0")}`;
        const certSerial = randomBytes(16);
        certSerial[0] = (certSerial[0]! & 0x7f) | 0x40;
        const der = p.pki.template.issue(serial, certSerial);
        serials.push(serial);
        pems.push(pemOf(der));
        events.push({ type: "certificate.issued", serial, certificateSerial: certSerial.toString("hex"), certificateFingerprint: sha256Hex(der) });
      }
      ledger.appendMany(events);
      const checkpoint = await ledger.checkpoint(key.signer, stationOrigin(station));
      const batches: SignedUpload[] = [];
      for (let start = 0; start < perStation; start += batch) {
        const certificates = serials.slice(start, start + batch).map((serial, j) => ({ serial, certificate: pems[start + j]! }));
        batches.push(await signUpload(buildUpload({ ledger, station, checkpoint, previousSize: 0, certificates }), key.signer, certPem));
      }
      out.push({ station, serials, batches });
    } finally {
      db.close();
    }
  }
  ctx.log(`uploads: ${stations} stations × ${perStation} certificates, ${out[0]?.batches.length ?? 0} signed uploads each`);
  return out;
}

/** Registers every station's serials with the directory, as `directory allocations add` would after verifying the lists. */
export async function allocate(location: string, uploads: readonly StationUploads[]): Promise<void> {
  const store = await openStore(parseStoreLocation(location));
  try {
    for (const u of uploads) await store.addAllocation({ allocationId: `alloc-${u.station}`, station: u.station, digest: sha256Hex(Buffer.from(u.serials.join(","))), serials: u.serials }, new Date().toISOString());
  } finally {
    await store.close();
  }
}

/** Sends every upload to the replicas (one batch at a time per station); certificates accepted per second. */
export async function sendUploads(replicaUrls: readonly string[], uploads: readonly StationUploads[]): Promise<{ certsPerS: number; seconds: number; certificates: number }> {
  let certificates = 0;
  const t0 = performance.now();
  await Promise.all(
    uploads.map(async (u, k) => {
      for (let i = 0; i < u.batches.length; i++) {
        const url = replicaUrls[(i + k) % replicaUrls.length]!;
        const signed = u.batches[i]!;
        const res = await fetch(`${url}/uploads`, { method: "POST", headers: { "content-type": "application/json", "idmint-signature": signed.signature }, body: new Uint8Array(signed.body) });
        const receipt = (await res.json()) as { published?: string[]; error?: unknown };
        if (res.status !== 200) throw new Error(`upload ${i} of ${u.station} to ${url}: ${res.status} ${JSON.stringify(receipt).slice(0, 300)}`);
        certificates += receipt.published!.length;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { certsPerS: certificates / seconds, seconds, certificates };
}
