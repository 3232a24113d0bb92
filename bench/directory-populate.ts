/**
 * The directory benchmark's store, filled as accepted uploads fill it: a vendor PKI with software
 * keys, distinct IDevIDs re-signed from one `issueIdevid` template (idevid-template.ts), their
 * certificate.issued entries in a station ledger, its signed checkpoint and every inclusion
 * proof, written through the store's own `commitUpload`. A sample is checked as an upload is.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { DEFAULT_HW_TYPE_OID, sha256Hex, systemClock, systemRandom } from "../core/index.js";
import { openDirectoryStore, type PublishedCertificate } from "../directory/index.js";
import { encodeEntry, hashChildren, hashLeaf, inclusionProof, rootFromLeafHashes, signCheckpoint, stationOrigin, verifyInclusion, type Hash } from "../ledger/index.js";
import { NO_EXPIRY, checkChain, issueEndEntity, issueFactoryCa, issueIdevid, issueRoot, readHardwareModuleName, x509 } from "../pki/index.js";
import { IdevidTemplate } from "./idevid-template.js";
import { databaseMb } from "./measure.js";
import { softKey, type SoftKey } from "./soft-key.js";
import type { BenchContext, Figure } from "./types.js";

const ORG = "Bench Vendor";
const STATION = "station-1";
/** Certificates issued through `issueIdevid` to report what the pki path costs (not stored). */
const ISSUE_SAMPLE = 50;
/** Certificates (and inclusion proofs) checked as an upload would check them. */
const VALIDATE_SAMPLE = 64;
/** Certificates per `commitUpload` (one transaction each). */
const STORE_BATCH = 10_000;

export interface Populated {
  dbPath: string;
  rootPath: string;
  caPath: string;
  serials: string[];
  ders: Buffer[];
  stationSpki: Uint8Array;
  /** The vendor PKI's software keys, for benchmarks that make more stations and certificates. */
  pki: { root: x509.X509Certificate; rootSigner: SoftKey["signer"]; template: IdevidTemplate };
  figures: Figure[];
}

/**
 * All levels of the RFC 9162 tree over `n` leaf hashes, bottom-up, built as rootFromLeafHashes
 * builds them (pairs hashed, an unpaired last node carried up), so every inclusion proof is a
 * walk up the levels instead of ledger's O(n) `inclusionProof` per entry.
 */
function treeLevels(leaves: Buffer, n: number): Buffer[] {
  const levels = [leaves];
  let level = leaves;
  for (let width = n; width > 1; ) {
    const next = Math.ceil(width / 2);
    const up = Buffer.allocUnsafe(next * 32);
    for (let i = 0; i < next; i++) {
      const left = level.subarray(2 * i * 32, 2 * i * 32 + 32);
      if (2 * i + 1 < width) up.set(hashChildren(left, level.subarray(2 * i * 32 + 32, 2 * i * 32 + 64)), i * 32);
      else up.set(left, i * 32);
    }
    levels.push(up);
    level = up;
    width = next;
  }
  return levels;
}

/** PATH(index) bottom-up, the order `inclusionProof` returns and `verifyInclusion` takes. */
function proofFromLevels(levels: readonly Buffer[], index: number): Hash[] {
  const proof: Hash[] = [];
  let j = index;
  for (let l = 0; l < levels.length - 1; l++) {
    const sibling = j ^ 1;
    const level = levels[l]!;
    if (sibling * 32 < level.length) proof.push(Uint8Array.from(level.subarray(sibling * 32, sibling * 32 + 32)));
    j >>= 1;
  }
  return proof;
}

export async function populate(ctx: BenchContext, count: number): Promise<Populated> {
  const t0 = performance.now();
  const clock = systemClock;
  const random = systemRandom;
  const rootKey = softKey("P-384");
  const root = await issueRoot({ signer: rootKey.signer, subject: { organization: ORG, commonName: `${ORG} Root CA` }, clock, random });
  const caKey = softKey("P-256");
  const factoryCa = await issueFactoryCa({ issuer: { signer: rootKey.signer, certificate: root }, publicKeySpki: caKey.signer.publicKeySpki, subject: { organization: ORG, commonName: `${ORG} Factory CA` }, clock, random });
  const stationKey = softKey("P-256");
  const stationCert = await issueEndEntity({
    purpose: "station",
    issuer: { signer: rootKey.signer, certificate: root },
    publicKeySpki: stationKey.signer.publicKeySpki,
    subject: { organization: ORG, organizationalUnit: "Station", commonName: STATION },
    clock,
    random,
  });
  const rootPath = join(ctx.dir, "root.pem");
  const caPath = join(ctx.dir, "factory-ca.pem");
  writeFileSync(rootPath, root.toString("pem"));
  writeFileSync(caPath, factoryCa.toString("pem"));

  // One unit key for every certificate: the directory never looks at it on a read.
  const unitSpki = softKey("P-256").signer.publicKeySpki;
  const width = Math.max(6, String(count).length);
  const serialOf = (i: number) => `SN${String(i + 1).padStart(width, "0")}`;
  const idevid = (serial: string) =>
    issueIdevid({ issuer: { signer: caKey.signer, certificate: factoryCa }, publicKeySpki: unitSpki, serial, organization: ORG, hwTypeOid: DEFAULT_HW_TYPE_OID, clock, random });

  // What issuing every certificate through pki would cost, for the record (after a JIT warm-up).
  for (let i = 0; i < ISSUE_SAMPLE / 5; i++) await idevid(`SW${String(i).padStart(width, "0")}`);
  const tSample = performance.now();
  for (let i = 0; i < ISSUE_SAMPLE; i++) await idevid(`ST${String(i).padStart(width, "0")}`);
  const issueIdevidMs = (performance.now() - tSample) / ISSUE_SAMPLE;
  const template = new IdevidTemplate(Buffer.from((await idevid(`SN${"0".repeat(width)}`)).rawData), `SN${"0".repeat(width)}`, caKey.privateKey);
  ctx.log(`populate: issueIdevid ${issueIdevidMs.toFixed(2)} ms/certificate (mean of ${ISSUE_SAMPLE}), ${((issueIdevidMs * count) / 1000).toFixed(0)} s for ${count}: re-signing a template instead`);

  // Certificates and their certificate.issued entries, indexes 0..count-1 of the station's ledger.
  const tIssue = performance.now();
  const serials = new Array<string>(count);
  const ders = new Array<Buffer>(count);
  const entries = new Array<Buffer>(count);
  const fingerprints = new Array<string>(count);
  const certSerials = new Array<string>(count);
  const leaves = Buffer.allocUnsafe(count * 32);
  let time = clock.now().toISOString();
  for (let start = 0; start < count; start += STORE_BATCH) {
    const end = Math.min(count, start + STORE_BATCH);
    const rnd = randomBytes(16 * (end - start));
    time = clock.now().toISOString();
    for (let i = start; i < end; i++) {
      const certSerial = rnd.subarray((i - start) * 16, (i - start + 1) * 16);
      certSerial[0] = (certSerial[0]! & 0x7f) | 0x40; // as newCertificateSerial: positive, no leading zero octet
      const serial = serialOf(i);
      const der = template.issue(serial, certSerial);
      const fingerprint = sha256Hex(der);
      const certificateSerial = certSerial.toString("hex");
      const entry = encodeEntry({ index: i, time, event: { type: "certificate.issued", serial, certificateSerial, certificateFingerprint: fingerprint } });
      leaves.set(hashLeaf(entry), i * 32);
      serials[i] = serial;
      ders[i] = der;
      entries[i] = entry;
      fingerprints[i] = fingerprint;
      certSerials[i] = certificateSerial;
    }
    ctx.log(`populate: ${end}/${count} certificates issued`);
  }
  const issueS = (performance.now() - tIssue) / 1000;

  // The station's tree, its signed checkpoint, and the proofs.
  const tTree = performance.now();
  const levels = treeLevels(leaves, count);
  const root32 = Uint8Array.from(levels.at(-1)!.subarray(0, 32));
  const leafArray = Array.from({ length: count }, (_, i): Hash => leaves.subarray(i * 32, i * 32 + 32));
  if (!Buffer.from(rootFromLeafHashes(leafArray)).equals(Buffer.from(root32))) throw new Error("the tree levels' root differs from ledger's rootFromLeafHashes");
  for (const i of [0, Math.floor(count / 3), count - 1]) {
    const mine = proofFromLevels(levels, i).map((h) => Buffer.from(h).toString("hex"));
    const ledgers = inclusionProof(leafArray, i, count).map((h) => Buffer.from(h).toString("hex"));
    if (mine.join() !== ledgers.join()) throw new Error(`the inclusion proof of entry ${i} differs from ledger's inclusionProof`);
  }
  const origin = stationOrigin(STATION);
  const note = await signCheckpoint({ origin, size: count, root: root32 }, stationKey.signer);
  const treeS = (performance.now() - tTree) / 1000;

  // A sample checked as acceptUpload checks an uploaded certificate.
  const at = new Date();
  const sample = new Set([0, count - 1, ...Array.from({ length: VALIDATE_SAMPLE }, () => Math.floor(Math.random() * count))]);
  for (const i of sample) {
    const serial = serials[i]!;
    const cert = new x509.X509Certificate(new Uint8Array(ders[i]!));
    const path = await checkChain(cert, [factoryCa], root, at);
    const hmn = readHardwareModuleName(cert);
    const wrong =
      path.length !== 3
        ? "it does not chain through the factory CA"
        : cert.subjectName.getField("2.5.4.5")[0] !== serial || cert.subjectName.getField("CN")[0] !== serial
          ? `its subject is ${cert.subject}`
          : hmn?.hwSerialNum !== serial || hmn.hwType !== DEFAULT_HW_TYPE_OID
            ? "its hardwareModuleName is wrong"
            : cert.serialNumber.toLowerCase() !== certSerials[i]
              ? "its serial number is not the entry's"
              : cert.notAfter.getTime() !== NO_EXPIRY.getTime()
                ? "it expires"
                : !verifyInclusion(i, count, hashLeaf(entries[i]!), proofFromLevels(levels, i), root32)
                  ? "its inclusion proof does not verify"
                  : undefined;
    if (wrong) throw new Error(`populate: the certificate of ${serial} is not a valid IDevID: ${wrong}`);
  }
  ctx.log(`populate: ${sample.size} certificates checked (chain, profile, entry, inclusion proof)`);

  // Stored as accepted uploads are: the checkpoint with the first batch, then batches against it.
  const tStore = performance.now();
  const dbPath = join(ctx.dir, "directory.db");
  const store = openDirectoryStore(dbPath);
  try {
    const checkpoint = { size: count, root: root32, note, stationCertificate: stationCert.toString("pem") };
    for (let start = 0; start < count; start += STORE_BATCH) {
      const end = Math.min(count, start + STORE_BATCH);
      const now = clock.now().toISOString();
      const certificates: PublishedCertificate[] = [];
      for (let i = start; i < end; i++) {
        certificates.push({
          serial: serials[i]!,
          der: ders[i]!,
          fingerprint: fingerprints[i]!,
          certificateSerial: certSerials[i]!,
          station: STATION,
          ledgerIndex: i,
          entry: entries[i]!,
          checkpointSize: count,
          inclusionProof: proofFromLevels(levels, i),
          issuedAt: time,
          publishedAt: now,
        });
      }
      const outcome = await store.commitUpload({ station: STATION, expected: start === 0 ? undefined : { size: count, root: root32 }, checkpoint, certificates, at: now });
      if (!outcome.ok || outcome.published.length !== end - start) throw new Error(`populate: commitUpload of certificates ${start}-${end - 1} did not publish them all: ${JSON.stringify(outcome).slice(0, 200)}`);
    }
  } finally {
    await store.close();
  }
  const storeS = (performance.now() - tStore) / 1000;
  const totalS = (performance.now() - t0) / 1000;
  const dbMb = databaseMb(dbPath);
  ctx.log(`populate: ${count} certificates in ${totalS.toFixed(1)} s (issue ${issueS.toFixed(1)} s, tree ${treeS.toFixed(1)} s, store ${storeS.toFixed(1)} s), ${dbMb.toFixed(0)} MB`);
  return {
    dbPath,
    rootPath,
    caPath,
    serials,
    ders,
    stationSpki: stationKey.signer.publicKeySpki,
    pki: { root, rootSigner: rootKey.signer, template },
    figures: [
      { key: "populate.certs", label: "populate: certificates stored", value: count, unit: "certs" },
      { key: "populate.issueidevid_ms", label: `populate: pki issueIdevid, mean of ${ISSUE_SAMPLE} (not used to fill)`, value: issueIdevidMs, unit: "ms/cert", digits: 2 },
      { key: "populate.issue_s", label: "populate: template re-signed per certificate, with entries", value: issueS, unit: "s", digits: 1 },
      { key: "populate.tree_s", label: "populate: ledger tree, checks, signed checkpoint", value: treeS, unit: "s", digits: 1 },
      { key: "populate.store_s", label: `populate: commitUpload, ${STORE_BATCH} per transaction`, value: storeS, unit: "s", digits: 1 },
      { key: "populate.total_s", label: "populate: total wall time", value: totalS, unit: "s", digits: 1 },
      { key: "populate.db_mb", label: "populate: directory.db + WAL on disk", value: dbMb, unit: "MB", digits: 1 },
    ],
  };
}
