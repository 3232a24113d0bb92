/**
 * The directory's read path under load, beside a floor measured in the same run:
 *
 *  1. Population: a real vendor PKI (root, factory CA, station certificate; software keys, as
 *     test/fixtures/pki-fixture.ts makes them), BENCH_DIRECTORY_CERTS distinct IDevIDs signed by
 *     the factory CA, a station ledger of their certificate.issued entries, a checkpoint signed
 *     by the station key, and every certificate with its entry and RFC 9162 inclusion proof
 *     stored through the store's own `commitUpload`, as an accepted upload stores it. Uploads
 *     themselves are not used (the line makes ~80 units/s, so 100,000 would take 20 minutes),
 *     and neither is `issueIdevid` per certificate (2-7 ms each through @peculiar/x509 on a
 *     2-core VM, minutes for 100,000; measured on a sample and reported). Instead one IDevID
 *     is issued with `issueIdevid` as a template, and each certificate is that TBSCertificate
 *     with its own serial (subject CN and serialNumber, hardwareModuleName hwSerialNum) and
 *     its own random certificate serial number, signed with the factory CA key by node:crypto.
 *     Every certificate is distinct and real: a sample is checked as an upload checks it
 *     (chain to the root through the factory CA, profile fields, entry, inclusion proof).
 *  2. Two servers, each in a child process (bench/directory-server.ts): the directory
 *     (`startDirectory` on the populated store) and a minimal node:http server answering each
 *     path with the same bytes from a Map. Both are checked to send identical bodies.
 *  3. Load: autocannon in this process, GET /certificates/SNxxxxxx.crt with a uniformly random
 *     serial per request, a warm-up for each server, then BENCH_DIRECTORY_ROUNDS rounds that
 *     alternate which server goes first. Medians of requests/s and of p99 latency; the ratio
 *     of the directory's requests/s to the floor's (the target), and of their CPU time per
 *     request (capacity per core, whichever side was the bottleneck).
 *
 * Why the servers are children and the load generator is not: on one event loop, autocannon's
 * request building and response parsing would queue behind the server's handlers and the
 * other way round, so the rate would be of the pair and the latency would include the
 * generator's own work. Two processes put them on two cores (this benchmark needs at least
 * two to mean anything). The server, not autocannon, goes into the child because it is the
 * subject: it can be profiled on its own (BENCH_DIRECTORY_CPU_PROF=dir starts both children
 * with --cpu-prof), it reports its own CPU time per round over IPC, and the autocannon
 * results (and every latency, for an exact p99) stay in this process without serialization.
 * Each server's CPU share per round tells whether it was the bottleneck: a floor well below
 * 100% while autocannon is near 100% is limited by the load generator, which makes the
 * requests/s ratio look better than it is. "Other processes' CPU" (from /proc/stat, Linux
 * only) shows a round that shared the machine with something else, e.g. a test suite.
 */
import { fork, type ChildProcess } from "node:child_process";
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { DEFAULT_HW_TYPE_OID, sha256Hex, systemClock, systemRandom } from "../core/index.js";
import { openDirectoryStore, type PublishedCertificate } from "../directory/index.js";
import type { Signer } from "../hsm/index.js";
import {
  encodeEntry,
  hashChildren,
  hashLeaf,
  inclusionProof,
  rootFromLeafHashes,
  signCheckpoint,
  stationOrigin,
  verifyBundle,
  verifyInclusion,
  type Hash,
  type InclusionBundle,
} from "../ledger/index.js";
import { NO_EXPIRY, checkChain, issueEndEntity, issueFactoryCa, issueIdevid, issueRoot, readHardwareModuleName, x509 } from "../pki/index.js";
import type { ServerCommand, ServerMessage } from "./directory-server.js";
import type { BenchContext, Benchmark, Figure } from "./types.js";

const ORG = "Bench Vendor";
const STATION = "station-1";
const PEM_TYPE = "application/pem-certificate-chain";
/** Certificates issued through `issueIdevid` to report what the pki path costs (not stored). */
const ISSUE_SAMPLE = 50;
/** Certificates (and inclusion proofs) checked as an upload would check them. */
const VALIDATE_SAMPLE = 64;
/** Paths fetched from both servers to check they answer the same bytes. */
const COMPARE_SAMPLE = 200;
/** Certificates per `commitUpload` (one transaction each). */
const STORE_BATCH = 10_000;
/** Each server gets this much load before the first measured round (JIT, SQLite and OS caches). */
const WARMUP_SECONDS = 3;
const MB = 1024 * 1024;

const HERE = dirname(fileURLToPath(import.meta.url));
const PROJECT = dirname(HERE);
const SERVER_SCRIPT = join(HERE, "directory-server.ts");

// ---------------------------------------------------------------------------------------------
// autocannon (no type declarations are installed; only what this file uses)

interface AutocannonRequest {
  method?: string;
  path?: string;
  setupRequest?: (req: { path: string }) => { path: string };
}

interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  pipelining: number;
  requests: AutocannonRequest[];
}

interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  resets: number;
  requests: { total: number };
}

interface AutocannonInstance {
  on(event: "response", listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void): void;
}

type Autocannon = (opts: AutocannonOptions, done: (err: Error | null, result: AutocannonResult) => void) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

// ---------------------------------------------------------------------------------------------
// Helpers

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The directory's PEM text (server.ts `pemOf`). */
function pemOf(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END CERTIFICATE-----\n`;
}

interface SoftKey {
  signer: Signer;
  privateKey: KeyObject;
}

/** A node:crypto key behind the hsm Signer interface, its private key kept for fast signing. */
function softKey(curve: "P-256" | "P-384"): SoftKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: curve });
  const hash = curve === "P-384" ? "SHA-384" : "SHA-256";
  return {
    privateKey,
    signer: {
      algorithm: curve === "P-384" ? "EC-P384" : "EC-P256",
      hash,
      publicKeySpki: new Uint8Array(publicKey.export({ type: "spki", format: "der" })),
      sign: async (data) => new Uint8Array(sign(hash === "SHA-384" ? "sha384" : "sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" })),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// DER, just enough to re-sign a template

interface Tlv {
  tag: number;
  headerStart: number;
  start: number;
  end: number;
}

function readTlv(buf: Buffer, at: number): Tlv {
  const tag = buf[at]!;
  let length = buf[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[start + i]!;
    start += n;
  }
  if (start + length > buf.length) throw new Error(`DER: element at ${at} runs past the end`);
  return { tag, headerStart: at, start, end: start + length };
}

function derHeader(tag: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([tag, length]);
  const bytes: number[] = [];
  for (let l = length; l > 0; l = Math.floor(l / 256)) bytes.unshift(l & 0xff);
  return Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
}

/**
 * An IDevID from `issueIdevid`, reissued for other serials: the same TBSCertificate with the
 * serial written where the template's stands (subject CN, subject serialNumber,
 * hardwareModuleName hwSerialNum; all the same length) and a new certificate serial number,
 * signed again. Everything else (issuer, validity, key, extensions) is the template's.
 */
class IdevidTemplate {
  private readonly tbs: Buffer;
  private readonly signatureAlgorithm: Buffer;
  private readonly certSerialAt: number;
  private readonly serialAt: number[] = [];

  constructor(
    der: Buffer,
    private readonly templateSerial: string,
    private readonly caKey: KeyObject,
  ) {
    const outer = readTlv(der, 0);
    const tbs = readTlv(der, outer.start);
    const alg = readTlv(der, tbs.end);
    this.tbs = Buffer.from(der.subarray(tbs.headerStart, tbs.end));
    this.signatureAlgorithm = Buffer.from(der.subarray(alg.headerStart, alg.end));
    const version = readTlv(der, tbs.start);
    const serial = readTlv(der, version.end);
    if (version.tag !== 0xa0 || serial.tag !== 0x02 || serial.end - serial.start !== 16) throw new Error("the template IDevID is not a v3 certificate with a 16-byte serial number");
    this.certSerialAt = serial.start - tbs.headerStart;
    const needle = Buffer.from(templateSerial, "latin1");
    for (let at = this.tbs.indexOf(needle); at !== -1; at = this.tbs.indexOf(needle, at + 1)) this.serialAt.push(at);
    // CN, serialNumber and hwSerialNum, and nowhere else (not by chance inside a key or hash).
    if (this.serialAt.length !== 3) throw new Error(`the template serial ${templateSerial} occurs ${this.serialAt.length} times in the TBSCertificate, expected 3`);
  }

  /** `certSerial`: 16 bytes as `newCertificateSerial` makes them (first byte 0x40-0x7f). */
  issue(serial: string, certSerial: Buffer): Buffer {
    if (serial.length !== this.templateSerial.length) throw new Error(`serial ${serial} is not as long as the template's ${this.templateSerial}`);
    const tbs = Buffer.from(this.tbs);
    certSerial.copy(tbs, this.certSerialAt, 0, 16);
    for (const at of this.serialAt) tbs.write(serial, at, "latin1");
    const signature = sign("sha256", tbs, this.caKey);
    const bitString = Buffer.concat([derHeader(0x03, signature.length + 1), Buffer.of(0), signature]);
    return Buffer.concat([derHeader(0x30, tbs.length + this.signatureAlgorithm.length + bitString.length), tbs, this.signatureAlgorithm, bitString]);
  }
}

// ---------------------------------------------------------------------------------------------
// Population

interface Populated {
  dbPath: string;
  rootPath: string;
  caPath: string;
  serials: string[];
  ders: Buffer[];
  stationSpki: Uint8Array;
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

async function populate(ctx: BenchContext, count: number): Promise<Populated> {
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
  const size = (p: string) => {
    try {
      return statSync(p).size;
    } catch {
      return 0;
    }
  };
  const dbMb = (size(dbPath) + size(`${dbPath}-wal`)) / MB;
  ctx.log(`populate: ${count} certificates in ${totalS.toFixed(1)} s (issue ${issueS.toFixed(1)} s, tree ${treeS.toFixed(1)} s, store ${storeS.toFixed(1)} s), ${dbMb.toFixed(0)} MB`);
  return {
    dbPath,
    rootPath,
    caPath,
    serials,
    ders,
    stationSpki: stationKey.signer.publicKeySpki,
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

// ---------------------------------------------------------------------------------------------
// The servers, each in a child process

class ServerChild {
  private readonly pending: Array<(m: ServerMessage & { type: "cpu" }) => void> = [];
  private exited: string | undefined;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    readonly port: number,
  ) {
    child.on("message", (m: ServerMessage) => {
      if (m.type === "cpu") this.pending.shift()?.(m);
    });
    child.on("exit", (code, signal) => {
      this.exited = `exited (${code ?? signal})`;
    });
  }

  static start(name: string, args: string[], execArgv: string[] = []): Promise<ServerChild> {
    const child = fork(SERVER_SCRIPT, args, { cwd: PROJECT, execArgv: ["--import", "tsx", ...execArgv], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null, signal: string | null) => reject(new Error(`the ${name} server exited (${code ?? signal}) before it listened`));
      child.once("exit", onExit);
      child.once("error", reject);
      child.on("message", function ready(m: ServerMessage) {
        if (m.type !== "ready") return;
        child.off("message", ready);
        child.off("exit", onExit);
        resolve(new ServerChild(name, child, m.port));
      });
    });
  }

  /** CPU time (user + system) the child has used, in ms. */
  cpuMs(): Promise<number> {
    if (this.exited) return Promise.reject(new Error(`the ${this.name} server ${this.exited}`));
    return new Promise((resolve) => {
      this.pending.push((m) => resolve((m.user + m.system) / 1000));
      this.child.send({ type: "cpu" } satisfies ServerCommand);
    });
  }

  /** Asks the child to close and exit; kills it if it has not within 10 s. */
  async stop(): Promise<void> {
    if (this.exited || this.child.exitCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    try {
      this.child.send({ type: "stop" } satisfies ServerCommand);
    } catch {
      // The channel is already closed: the child is on its way out.
    }
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await gone;
    clearTimeout(timer);
  }
}

/** Both servers answer the same paths with the same bytes, and the JSON route's proofs verify. */
async function compareServers(ctx: BenchContext, p: Populated, directory: ServerChild, baseline: ServerChild): Promise<number> {
  const picks = [0, p.serials.length - 1, ...Array.from({ length: COMPARE_SAMPLE }, () => Math.floor(Math.random() * p.serials.length))];
  let bytes = 0;
  for (const i of picks) {
    const path = `/certificates/${p.serials[i]!}.crt`;
    const [d, b] = await Promise.all([fetch(`http://127.0.0.1:${directory.port}${path}`), fetch(`http://127.0.0.1:${baseline.port}${path}`)]);
    const [dBody, bBody] = [Buffer.from(await d.arrayBuffer()), Buffer.from(await b.arrayBuffer())];
    if (d.status !== 200 || b.status !== 200) throw new Error(`GET ${path}: directory ${d.status}, baseline ${b.status}`);
    if (d.headers.get("content-type") !== PEM_TYPE || b.headers.get("content-type") !== PEM_TYPE) throw new Error(`GET ${path}: content types ${d.headers.get("content-type")} and ${b.headers.get("content-type")}`);
    if (!dBody.equals(bBody)) throw new Error(`GET ${path}: the directory and the baseline answer different bytes`);
    if (!dBody.toString("latin1").startsWith(pemOf(p.ders[i]!))) throw new Error(`GET ${path}: the directory does not answer the certificate stored for ${p.serials[i]}`);
    bytes += dBody.length;
  }
  // The JSON route reads the checkpoint too: its bundle must verify with only the station key.
  for (const i of [0, p.serials.length - 1]) {
    const res = await fetch(`http://127.0.0.1:${directory.port}/certificates/${p.serials[i]!}`);
    const info = (await res.json()) as { proof: InclusionBundle };
    const { entry } = verifyBundle(info.proof, p.stationSpki);
    if (entry.index !== i) throw new Error(`GET /certificates/${p.serials[i]}: the proof is for entry ${entry.index}, not ${i}`);
  }
  ctx.log(`servers: ${picks.length} paths answered identically (${(bytes / picks.length).toFixed(0)} bytes on average), JSON proofs verify`);
  return bytes / picks.length;
}

// ---------------------------------------------------------------------------------------------
// Load

interface LoadResult {
  perS: number;
  /** Server CPU time per answered request, µs. */
  cpuUsPerRequest: number;
  p50: number;
  p99: number;
  requests: number;
  /** The server's CPU time over the wall time of the run, in % of one core. */
  serverCpuPct: number;
  /** The same for this process, the load generator. */
  generatorCpuPct: number;
  /** CPU used by everything else on the machine meanwhile, % of one core (NaN without /proc/stat). */
  otherCpuPct: number;
}

/** Busy CPU time of the whole machine in ms (user + nice + system of /proc/stat), NaN where there is none. */
function machineBusyMs(): number {
  try {
    const fields = readFileSync("/proc/stat", "latin1").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    // USER_HZ is 100 on every Linux Node supports.
    return ((fields[0] ?? 0) + (fields[1] ?? 0) + (fields[2] ?? 0)) * 10;
  } catch {
    return Number.NaN;
  }
}

async function load(server: ServerChild, paths: readonly string[], connections: number, seconds: number): Promise<LoadResult> {
  // Every latency, so the percentiles are exact (autocannon's histogram keeps whole milliseconds).
  let latencies = new Float64Array(1 << 20);
  let ok = 0;
  let other = 0;
  const n = paths.length;
  const cpu0 = await server.cpuMs();
  const gen0 = process.cpuUsage();
  const busy0 = machineBusyMs();
  const t0 = performance.now();
  const result = await new Promise<AutocannonResult>((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${server.port}`,
        connections,
        duration: seconds,
        pipelining: 1,
        requests: [
          {
            method: "GET",
            setupRequest: (req) => {
              req.path = paths[Math.floor(Math.random() * n)]!;
              return req;
            },
          },
        ],
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status !== 200) {
        other++;
        return;
      }
      if (ok === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[ok++] = ms;
    });
  });
  const wallMs = performance.now() - t0;
  const busy = machineBusyMs() - busy0;
  const gen = process.cpuUsage(gen0);
  const cpu = (await server.cpuMs()) - cpu0;
  const genMs = (gen.user + gen.system) / 1000;
  if (result.errors !== 0 || result.timeouts !== 0 || result.non2xx !== 0 || other !== 0) {
    throw new Error(`load on the ${server.name} server: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx + other} answers other than 200`);
  }
  const sorted = latencies.subarray(0, ok).sort();
  return {
    perS: ok / result.duration,
    cpuUsPerRequest: (1000 * cpu) / ok,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    requests: ok,
    serverCpuPct: (100 * cpu) / wallMs,
    generatorCpuPct: (100 * genMs) / wallMs,
    // The other half of the machine's two busiest users: a test suite run meanwhile shows here.
    otherCpuPct: Math.max(0, (100 * (busy - cpu - genMs)) / wallMs),
  };
}

function sideFigures(prefix: string, what: string, runs: readonly LoadResult[], target?: Figure["target"]): Figure[] {
  const m = (f: (r: LoadResult) => number) => median(runs.map(f));
  return [
    { key: `${prefix}.per_s`, label: `${what}: requests/s, median`, value: m((r) => r.perS), unit: "req/s", ...(target ? { target } : {}) },
    { key: `${prefix}.p99_ms`, label: `${what}: p99 latency, median`, value: m((r) => r.p99), unit: "ms", digits: 2 },
    { key: `${prefix}.p50_ms`, label: `${what}: p50 latency, median`, value: m((r) => r.p50), unit: "ms", digits: 2 },
    { key: `${prefix}.server_cpu_pct`, label: `${what}: server CPU (of one core), median`, value: m((r) => r.serverCpuPct), unit: "%", digits: 0 },
    { key: `${prefix}.generator_cpu_pct`, label: `${what}: load generator CPU, median`, value: m((r) => r.generatorCpuPct), unit: "%", digits: 0 },
    { key: `${prefix}.cpu_us`, label: `${what}: server CPU per request, median`, value: m((r) => r.cpuUsPerRequest), unit: "µs/req", digits: 1 },
    ...(runs.some((r) => Number.isNaN(r.otherCpuPct))
      ? []
      : [{ key: `${prefix}.other_cpu_pct`, label: `${what}: other processes' CPU meanwhile, median`, value: m((r) => r.otherCpuPct), unit: "%", digits: 0 }]),
  ];
}

export const directoryBenchmark: Benchmark = {
  name: "directory",
  async run(ctx) {
    const count = ctx.param("BENCH_DIRECTORY_CERTS", 100_000);
    const connections = ctx.param("BENCH_DIRECTORY_CONNECTIONS", 32);
    const seconds = ctx.param("BENCH_DIRECTORY_SECONDS", 10);
    const rounds = ctx.param("BENCH_DIRECTORY_ROUNDS", 3);
    const profileDir = process.env.BENCH_DIRECTORY_CPU_PROF;

    const populated = await populate(ctx, count);
    const paths = populated.serials.map((s) => `/certificates/${s}.crt`);

    if (profileDir) ctx.log(`servers: both run with --cpu-prof; profiles in ${profileDir}/directory and ${profileDir}/baseline when they stop (the main thread's is *.0.001.cpuprofile)`);
    const servers: ServerChild[] = [];
    try {
      const profile = (name: string) => (profileDir ? ["--cpu-prof", `--cpu-prof-dir=${join(profileDir, name)}`] : []);
      const directory = await ServerChild.start("directory", ["directory", populated.dbPath, populated.rootPath, populated.caPath], profile("directory"));
      servers.push(directory);
      const baseline = await ServerChild.start("baseline", ["baseline", populated.dbPath, populated.caPath], profile("baseline"));
      servers.push(baseline);
      const bodyBytes = await compareServers(ctx, populated, directory, baseline);

      ctx.log(`load: warm-up, ${WARMUP_SECONDS} s each`);
      await load(directory, paths, connections, WARMUP_SECONDS);
      await load(baseline, paths, connections, WARMUP_SECONDS);

      const results: Record<"directory" | "baseline", LoadResult[]> = { directory: [], baseline: [] };
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? [directory, baseline] : [baseline, directory];
        for (const server of order) {
          const r = await load(server, paths, connections, seconds);
          results[server.name as "directory" | "baseline"].push(r);
          ctx.log(
            `round ${round + 1}/${rounds} ${server.name.padEnd(9)}: ${r.perS.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ` +
              `server CPU ${r.serverCpuPct.toFixed(0)}% (${r.cpuUsPerRequest.toFixed(1)} µs/req), generator CPU ${r.generatorCpuPct.toFixed(0)}%, others ${r.otherCpuPct.toFixed(0)}%`,
          );
        }
      }
      const dirPerS = median(results.directory.map((r) => r.perS));
      const basePerS = median(results.baseline.map((r) => r.perS));
      const dirP99 = median(results.directory.map((r) => r.p99));
      const baseP99 = median(results.baseline.map((r) => r.p99));
      ctx.log(`ratio: ${(dirPerS / basePerS).toFixed(3)} (per round: ${results.directory.map((r, i) => (r.perS / results.baseline[i]!.perS).toFixed(3)).join(", ")})`);
      return [
        ...populated.figures,
        { key: "load.connections", label: "load: autocannon connections", value: connections, unit: "" },
        { key: "load.seconds", label: "load: seconds per round per server", value: seconds, unit: "s" },
        { key: "load.rounds", label: "load: rounds (alternating first server)", value: rounds, unit: "" },
        { key: "load.body_bytes", label: "load: response body (IDevID + factory CA, PEM), mean", value: bodyBytes, unit: "bytes" },
        ...sideFigures("directory", "directory GET .crt", results.directory),
        ...sideFigures("baseline", "floor: node:http from a Map", results.baseline),
        { key: "ratio.per_s", label: "directory req/s / floor req/s", value: dirPerS / basePerS, unit: "x", digits: 3, target: { op: ">=", value: 0.7 } },
        { key: "ratio.p99", label: "directory p99 / floor p99", value: dirP99 / baseP99, unit: "x", digits: 2 },
        // Capacity per core, whichever side was the bottleneck (the floor's is usually the generator).
        {
          key: "ratio.cpu",
          label: "floor CPU per request / directory CPU per request",
          value: median(results.baseline.map((r) => r.cpuUsPerRequest)) / median(results.directory.map((r) => r.cpuUsPerRequest)),
          unit: "x",
          digits: 3,
        },
      ];
    } finally {
      for (const s of servers.reverse()) await s.stop();
    }
  },
};
