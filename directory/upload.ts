import { createPublicKey, verify as nodeVerify, type KeyObject } from "node:crypto";
import { decodeBase64Strict, sha256Hex, type Clock } from "../core/index.js";
import { decodeEntry, hashLeaf, openCheckpoint, stationOrigin, verifyConsistency, verifyInclusion, MAX_CONSISTENCY_PATH, MAX_INCLUSION_PATH, type Checkpoint, type Hash } from "../ledger/index.js";
import { PKI_OID, assertSerialSyntax, assertStationId, checkChain, idevidProfileViolation, parseCertificate, sameBytes, x509 } from "../pki/index.js";
import { CERTIFICATE_REFUSALS, Refusal, type RefusalReason } from "./errors.js";
import type { AcceptedCheckpoint, CommitOutcome, ConflictRecord, DirectoryStore, PublishedCertificate, UploadCommit } from "./store.js";
import { MAX_UPLOAD_CERTIFICATES, SIGNATURE_HEADER, UPLOAD_FORMAT, type RefusedCertificate, type UploadBody, type UploadReceipt, type UploadedCertificate } from "./wire.js";

/** An accepted upload: the receipt, and each certificate refusal with its cause for the log. */
export interface UploadOutcome {
  receipt: UploadReceipt;
  refusals: Refusal[];
}

// ---------------------------------------------------------------------------------------------
// Parsing: everything in the body is attacker-controlled until the station signature verified,
// and the station itself is only trusted with what its allocations allow.
// ---------------------------------------------------------------------------------------------

const MAX_PEM = 16 * 1024;
const MAX_NOTE = 16 * 1024;
const MAX_ENTRY = 8 * 1024;
const BODY_KEYS = ["format", "station", "stationCertificate", "checkpoint", "previousSize", "consistencyProof", "certificates"].sort();
const CERT_KEYS = ["serial", "certificate", "index", "entry", "inclusionProof"].sort();

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
const malformed = (why: string, serial?: string) => new Refusal("MALFORMED", `the upload is malformed: ${why}`, { serial });

function hasExactKeys(v: unknown, keys: readonly string[]): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const own = Object.keys(v).sort();
  return own.length === keys.length && own.every((k, i) => k === keys[i]);
}

/** Canonical base64 of at most `maxBytes` bytes, or undefined. */
function strictBase64(v: unknown, maxBytes: number): Buffer | undefined {
  if (typeof v !== "string" || v.length > Math.ceil(maxBytes / 3) * 4) return undefined;
  const bytes = decodeBase64Strict(v);
  return bytes && Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function hashList(v: unknown, max: number, what: string, serial?: string): Hash[] {
  if (!Array.isArray(v) || v.length > max) throw malformed(`${what} must be a list of at most ${max} hashes`, serial);
  return v.map((h) => {
    const bytes = strictBase64(h, 32);
    if (!bytes || bytes.length !== 32) throw malformed(`${what} holds something that is not a base64 SHA-256 hash`, serial);
    return new Uint8Array(bytes);
  });
}

function isText(v: unknown, max: number): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= max;
}

interface ParsedCertificate {
  serial: string;
  cert: x509.X509Certificate;
  index: number;
  entry: Buffer;
  inclusionProof: Hash[];
}

interface ParsedUpload {
  station: string;
  stationCertificate: string;
  checkpoint: string;
  previousSize: number;
  consistencyProof: Hash[];
  certificates: ParsedCertificate[];
}

/** Checks the body's syntax (400 on anything off); nothing in it is trusted yet. */
export function parseUpload(bytes: Uint8Array): ParsedUpload {
  let text: string;
  let json: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    json = JSON.parse(text);
  } catch {
    throw malformed(`the body is not UTF-8 JSON: send an ${UPLOAD_FORMAT} document`);
  }
  if (!hasExactKeys(json, BODY_KEYS)) throw malformed(`the body is not an ${UPLOAD_FORMAT} document (fields ${BODY_KEYS.join(", ")})`);
  if (json.format !== UPLOAD_FORMAT) throw malformed(`format must be ${UPLOAD_FORMAT}`);
  const station = json.station;
  if (typeof station !== "string") throw malformed("station must be a station id");
  try {
    assertStationId(station);
  } catch {
    throw malformed("station is not a valid station id");
  }
  if (!isText(json.stationCertificate, MAX_PEM)) throw malformed("stationCertificate must be a PEM certificate");
  if (!isText(json.checkpoint, MAX_NOTE)) throw malformed("checkpoint must be a signed note");
  const previousSize = json.previousSize;
  if (typeof previousSize !== "number" || !Number.isSafeInteger(previousSize) || previousSize < 0) throw malformed("previousSize must be a whole number >= 0");
  const consistencyProof = hashList(json.consistencyProof, MAX_CONSISTENCY_PATH, "consistencyProof");
  if (!Array.isArray(json.certificates) || json.certificates.length > MAX_UPLOAD_CERTIFICATES) {
    throw malformed(`certificates must be a list of at most ${MAX_UPLOAD_CERTIFICATES}`);
  }
  const seen = new Set<string>();
  const certificates = json.certificates.map((c: unknown, i: number): ParsedCertificate => {
    if (!hasExactKeys(c, CERT_KEYS)) throw malformed(`certificates[${i}] must have the fields ${CERT_KEYS.join(", ")}`);
    const serial = c.serial;
    if (typeof serial !== "string") throw malformed(`certificates[${i}].serial must be a serial`);
    try {
      assertSerialSyntax(serial);
    } catch {
      throw malformed(`certificates[${i}].serial is not a valid serial`);
    }
    if (seen.has(serial)) throw malformed(`serial ${serial} appears twice`, serial);
    seen.add(serial);
    if (!isText(c.certificate, MAX_PEM) || !c.certificate.trimStart().startsWith("-----BEGIN CERTIFICATE-----")) throw malformed(`the certificate of ${serial} must be PEM`, serial);
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(c.certificate);
    } catch (e) {
      throw new Refusal("MALFORMED", `the upload is malformed: the certificate of ${serial} is not a PEM X.509 certificate`, { serial, detail: message(e), cause: e });
    }
    const index = c.index;
    if (typeof index !== "number" || !Number.isSafeInteger(index) || index < 0) throw malformed(`the ledger index of ${serial} must be a whole number >= 0`, serial);
    const entry = strictBase64(c.entry, MAX_ENTRY);
    if (!entry || entry.length === 0) throw malformed(`the ledger entry of ${serial} must be base64`, serial);
    return { serial, cert, index, entry, inclusionProof: hashList(c.inclusionProof, MAX_INCLUSION_PATH, `the inclusion proof of ${serial}`, serial) };
  });
  return { station, stationCertificate: json.stationCertificate, checkpoint: json.checkpoint, previousSize, consistencyProof, certificates };
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/** What the directory trusts: the pinned vendor root and the factory CAs below it. */
export interface TrustAnchors {
  root: x509.X509Certificate;
  factoryCas: readonly x509.X509Certificate[];
}

export interface UploadContext {
  anchors: TrustAnchors;
  store: DirectoryStore;
  clock: Clock;
  /** How far ahead of the directory's clock a station's may run (certificates' notBefore). */
  clockSkewMs: number;
}


const b64 = (h: Uint8Array) => Buffer.from(h).toString("base64");

/** The signature's hash follows the key, as the HSM signer's does (hsm hashFor). */
function hashOf(key: KeyObject): "sha256" | "sha384" {
  return key.asymmetricKeyDetails?.namedCurve === "secp384r1" ? "sha384" : "sha256";
}

/** The uploader: a station certificate under the pinned root, OU "Station", CN = the station id it claims. */
async function authenticateStation(p: ParsedUpload & { bodyBytes: Uint8Array }, signature: string | undefined, ctx: UploadContext, at: Date): Promise<{ cert: x509.X509Certificate; spki: Uint8Array }> {
  const sig = strictBase64(signature, 1024);
  if (!sig || sig.length === 0) throw new Refusal("UNSIGNED", `the upload carries no ${SIGNATURE_HEADER} header with a base64 signature by the station key`);
  const unknown = (detail: string, cause?: unknown) => new Refusal("STATION_UNKNOWN", "the upload is not from a station the vendor root vouches for", { detail, cause });
  let cert: x509.X509Certificate;
  try {
    cert = parseCertificate(p.stationCertificate, "the station certificate");
  } catch (e) {
    throw unknown("the station certificate does not parse", e);
  }
  try {
    await checkChain(cert, [], ctx.anchors.root, at);
  } catch (e) {
    throw unknown(`station certificate ${cert.subject}: ${message(e)}`, e);
  }
  const ou = cert.subjectName.getField(PKI_OID.organizationalUnit);
  const cn = cert.subjectName.getField(PKI_OID.commonName);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages.map(String) ?? [];
  if (ou.length !== 1 || ou[0] !== "Station" || !eku.includes(PKI_OID.documentSigning)) throw unknown(`${cert.subject} is not a station certificate (OU Station, documentSigning)`);
  if (cn.length !== 1 || cn[0] !== p.station) throw unknown(`the upload names station ${p.station} but its certificate is for ${cn.join(",")}`);
  const spki = new Uint8Array(cert.publicKey.rawData);
  let ok = false;
  try {
    const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
    ok = nodeVerify(hashOf(key), p.bodyBytes, { key, dsaEncoding: "der" }, sig);
  } catch {
    ok = false;
  }
  if (!ok) throw new Refusal("SIGNATURE_INVALID", `the ${SIGNATURE_HEADER} signature does not verify with the key of station ${p.station}`);
  return { cert, spki };
}

/** Holds the station to its own history: the new checkpoint must extend the one accepted before. */
function checkHistory(p: ParsedUpload, next: Checkpoint, accepted: AcceptedCheckpoint | undefined): "accepted" | "unchanged" {
  if (accepted === undefined) {
    if (p.previousSize !== 0) {
      throw new Refusal("PREVIOUS_SIZE_MISMATCH", `the directory holds no checkpoint of station ${p.station}: send previousSize 0 and no consistency proof`, { acceptedSize: 0 });
    }
    if (p.consistencyProof.length !== 0) throw malformed("a first upload carries no consistency proof");
    return "accepted";
  }
  if (next.size < accepted.size) {
    throw new Refusal("REPLAY", `the checkpoint (size ${next.size}) is older than the one the directory accepted (size ${accepted.size}): this is a replayed upload`, { acceptedSize: accepted.size });
  }
  if (next.size === accepted.size) {
    // The very checkpoint accepted before: a retry, whatever the station thought the directory had.
    if (sameBytes(next.root, accepted.root)) return "unchanged";
    throw new Refusal("HISTORY_REWRITTEN", `the checkpoint has the size of the accepted one (${accepted.size}) but another root: the station's ledger was rewritten`, {
      acceptedSize: accepted.size,
      detail: `accepted root ${b64(accepted.root)}, uploaded root ${b64(next.root)}`,
    });
  }
  if (p.previousSize !== accepted.size) {
    throw new Refusal("PREVIOUS_SIZE_MISMATCH", `the directory holds checkpoint size ${accepted.size} of station ${p.station}, the upload proves from ${p.previousSize}: prove consistency from ${accepted.size}`, {
      acceptedSize: accepted.size,
    });
  }
  // RFC 9162 §2.1.4.2: the accepted tree is a prefix of the new one.
  if (!verifyConsistency(accepted.size, next.size, p.consistencyProof, accepted.root, next.root)) {
    throw new Refusal("INCONSISTENT", `the checkpoint (size ${next.size}) is not consistent with the accepted one (size ${accepted.size}): the station's ledger was rewritten or the proof is wrong`, {
      acceptedSize: accepted.size,
    });
  }
  return "accepted";
}

interface CheckedCertificate {
  record: PublishedCertificate;
  held: PublishedCertificate | undefined;
}

async function checkCertificate(c: ParsedCertificate, station: string, next: Checkpoint, ctx: UploadContext, at: Date, now: string): Promise<CheckedCertificate> {
  const { serial, cert } = c;
  // Invariant 6: only serials the vendor allocated to this very station. Checked first: one
  // read, where the checks below cost milliseconds a certificate (the station, holding the
  // factory CA key, could make a certificate for any serial anyway, so this tells it nothing more).
  const owner = await ctx.store.allocationOf(serial);
  if (!owner) throw new Refusal("SERIAL_UNALLOCATED", `serial ${serial} is not allocated to any station`, { serial });
  if (owner.station !== station) {
    throw new Refusal("SERIAL_NOT_ALLOWED", `serial ${serial} is not allocated to station ${station}`, { serial, detail: `allocated to ${owner.station} by ${owner.allocationId}` });
  }

  const der = new Uint8Array(cert.rawData);
  const fingerprint = sha256Hex(der);

  // RFC 5280 §6.1 to the pinned root, through a factory CA (pathLen 0) and nothing else.
  let path: x509.X509Certificate[];
  try {
    path = await checkChain(cert, ctx.anchors.factoryCas, ctx.anchors.root, at);
  } catch (e) {
    throw new Refusal("CHAIN_INVALID", `the certificate of ${serial} does not chain to the vendor root through a factory CA`, { serial, detail: message(e), cause: e });
  }
  const issuer = path[1];
  if (path.length !== 3 || !issuer || !ctx.anchors.factoryCas.some((f) => sameBytes(new Uint8Array(f.rawData), new Uint8Array(issuer.rawData)))) {
    throw new Refusal("CHAIN_INVALID", `the certificate of ${serial} does not chain to the vendor root through a factory CA`, { serial, detail: `issued by ${issuer?.subject ?? "?"} directly` });
  }
  const violation = idevidProfileViolation(cert, serial);
  if (violation) throw new Refusal("PROFILE_VIOLATION", `the certificate of ${serial} is not an IDevID: ${violation}`, { serial });

  // The station's ledger must name exactly this certificate (invariant 2) and the checkpoint must hold that entry.
  let entry;
  try {
    entry = decodeEntry(c.entry);
  } catch (e) {
    throw new Refusal("LEDGER_MISMATCH", `the ledger entry of ${serial} is not a well-formed ledger entry`, { serial, detail: message(e), cause: e });
  }
  const ev = entry.event;
  const entryWrong =
    entry.index !== c.index
      ? `it is entry ${entry.index}, not ${c.index}`
      : ev.type !== "certificate.issued"
        ? `it is a ${ev.type} entry, not certificate.issued`
        : ev.serial !== serial
          ? `it is about serial ${ev.serial}`
          : ev.certificateFingerprint !== fingerprint
            ? "it names another certificate (fingerprint)"
            : ev.certificateSerial.toLowerCase() !== cert.serialNumber.toLowerCase()
              ? "it names another certificate serial number"
              : undefined;
  if (entryWrong) throw new Refusal("LEDGER_MISMATCH", `the ledger entry of ${serial} does not record this certificate: ${entryWrong}`, { serial });
  // RFC 9162 §2.1.3.2
  if (!verifyInclusion(c.index, next.size, hashLeaf(c.entry), c.inclusionProof, next.root)) {
    throw new Refusal("PROOF_INVALID", `the inclusion proof of ${serial} (entry ${c.index}) does not verify against the checkpoint of size ${next.size}`, { serial });
  }

  const record: PublishedCertificate = {
    serial,
    der,
    fingerprint,
    certificateSerial: cert.serialNumber.toLowerCase(),
    station,
    ledgerIndex: c.index,
    entry: new Uint8Array(c.entry),
    checkpointSize: next.size,
    inclusionProof: c.inclusionProof,
    issuedAt: entry.time,
    publishedAt: now,
  };
  return { record, held: await ctx.store.certificate(serial) };
}

/**
 * Verifies an upload and publishes it in one transaction. Throws a Refusal when the upload
 * itself is refused (its body, station, signature, checkpoint or history), and then changes
 * nothing. Otherwise the checkpoint is accepted and every certificate that passes its checks
 * is published; each other one is named in the receipt (a fully verified certificate that
 * contradicts a published one is also kept as a conflict), so one request settles a batch.
 */
export async function acceptUpload(ctx: UploadContext, bodyBytes: Uint8Array, signature: string | undefined): Promise<UploadOutcome> {
  const parsed = { ...parseUpload(bodyBytes), bodyBytes };
  const now = ctx.clock.now();
  const at = new Date(now.getTime() + ctx.clockSkewMs);
  const { cert: stationCert, spki } = await authenticateStation(parsed, signature, ctx, at);

  let next: Checkpoint;
  try {
    next = openCheckpoint(parsed.checkpoint, stationOrigin(parsed.station), spki);
  } catch (e) {
    throw new Refusal("CHECKPOINT_INVALID", `the checkpoint is not a note of ${stationOrigin(parsed.station)} signed by the station key`, { detail: message(e), cause: e });
  }
  if (next.size === 0) throw new Refusal("CHECKPOINT_INVALID", "the checkpoint is of an empty ledger");
  const accepted = await ctx.store.latestCheckpoint(parsed.station);
  let status = checkHistory(parsed, next, accepted);
  // Counted before the checks: an allocation registered meanwhile shows in the next receipt.
  const allocations = await ctx.store.allocationCount();

  const nowText = now.toISOString();
  const checked: CheckedCertificate[] = [];
  const refusals: Refusal[] = [];
  for (const c of parsed.certificates) {
    try {
      checked.push(await checkCertificate(c, parsed.station, next, ctx, at, nowText));
    } catch (e) {
      if (!(e instanceof Refusal) || e.serial !== c.serial || !CERTIFICATE_REFUSALS.has(e.reason)) throw e;
      refusals.push(e);
    }
  }

  // A commit that lost a race with another replica (the station's checkpoint moved, or a serial
  // was published meanwhile) is decided again on the state it lost to, a few times at most.
  let settled: Settled | undefined;
  let current = accepted;
  for (let attempt = 1; !settled; attempt++) {
    if (attempt > 1) {
      current = await ctx.store.latestCheckpoint(parsed.station);
      status = checkHistory(parsed, next, current);
      for (const c of checked) c.held = await ctx.store.certificate(c.record.serial);
    }
    settled = await settle(ctx, parsed, stationCert, next, checked, current, nowText);
    if (!settled && attempt === COMMIT_ATTEMPTS) throw new Refusal("BUSY", `another upload of station ${parsed.station} was accepted meanwhile: fetch its checkpoint and upload again`);
  }
  const { outcome } = settled;
  refusals.push(...settled.conflicts);
  return {
    receipt: {
      ok: true,
      station: parsed.station,
      checkpoint: { size: next.size, root: b64(next.root), status },
      published: outcome.published,
      alreadyPublished: outcome.alreadyPublished,
      refused: refusals.map((r) => ({ serial: r.serial!, code: r.reason, message: r.message })),
      allocations,
    },
    refusals,
  };
}

/** Commit attempts before a station is told BUSY: each retry follows an upload that did get in. */
const COMMIT_ATTEMPTS = 3;

interface Settled {
  outcome: Extract<CommitOutcome, { ok: true }>;
  conflicts: Refusal[];
}

/**
 * Invariant 6: never contradict a published certificate. Conflicts are decided last, so only
 * a certificate that passed every other check is kept as one. Undefined when the commit lost
 * a race and must be decided again.
 */
async function settle(
  ctx: UploadContext,
  parsed: ParsedUpload,
  stationCert: x509.X509Certificate,
  next: Checkpoint,
  checked: CheckedCertificate[],
  accepted: AcceptedCheckpoint | undefined,
  nowText: string,
): Promise<Settled | undefined> {
  const conflicting = checked.filter((c) => c.held !== undefined && c.held.fingerprint !== c.record.fingerprint);
  if (conflicting.length > 0) await ctx.store.recordConflicts(conflicting.map((c) => conflictOf(c.record, c.held!.fingerprint, parsed.checkpoint, nowText)));
  const commit: UploadCommit = {
    station: parsed.station,
    expected: accepted && { size: accepted.size, root: accepted.root },
    checkpoint: { size: next.size, root: next.root, note: parsed.checkpoint, stationCertificate: stationCert.toString("pem") + "\n" },
    certificates: checked.filter((c) => !conflicting.includes(c)).map((c) => c.record),
    at: nowText,
  };
  const outcome = await ctx.store.commitUpload(commit);
  if (!outcome.ok) return undefined;
  const conflicts = conflicting.map(
    (c) =>
      new Refusal("CONFLICT", `the directory already publishes another certificate for ${c.record.serial}: kept for the vendor to investigate, not published`, {
        serial: c.record.serial,
        detail: `held ${c.held!.fingerprint}, uploaded ${c.record.fingerprint}`,
      }),
  );
  return { outcome, conflicts };
}

function conflictOf(record: PublishedCertificate, heldFingerprint: string, checkpointNote: string, at: string): ConflictRecord {
  return {
    serial: record.serial,
    der: record.der,
    fingerprint: record.fingerprint,
    station: record.station,
    ledgerIndex: record.ledgerIndex,
    entry: record.entry,
    checkpointNote,
    inclusionProof: record.inclusionProof,
    heldFingerprint,
    receivedAt: at,
  };
}
