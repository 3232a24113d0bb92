import "reflect-metadata";
import { X509Certificate } from "node:crypto";
import { sha256Hex } from "../core/index.js";
import { consistencyProof, decodeEntry, inclusionProofs, type InclusionBundle, type Ledger } from "../ledger/index.js";
import { PKI_OID, assertSerialSyntax, assertStationId, derSignature, parseCertificate } from "../pki/index.js";
import { DirectoryError, REFUSAL_STATUS, type RefusalReason } from "./errors.js";
import { SIGNATURE_HEADER, UPLOAD_FORMAT, type UploadBody, type UploadReceipt, type UploadedCertificate } from "./wire.js";

/**
 * What signs an upload: the shape of hsm's Signer (directory may not import hsm/), so the
 * station passes its PKCS#11 signer as is. `sign` hashes `data` itself and returns the
 * WebCrypto form: r||s for ECDSA.
 */
export interface UploadSigner {
  readonly algorithm: string;
  readonly publicKeySpki: Uint8Array;
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** An upload ready to send: the exact body bytes and the signature over them. */
export interface SignedUpload {
  body: Uint8Array;
  /** base64 DER signature: the Idmint-Signature header. */
  signature: string;
}

/** An upload's content before it is signed (signUpload adds the format and station certificate). */
export type UploadContent = Omit<UploadBody, "format" | "stationCertificate">;

/** Signs an upload with the station key: ECDSA over the exact body bytes, DER-encoded (as ledger/checkpoint.ts does). */
export async function signUpload(content: UploadContent, signer: UploadSigner, stationCertificatePem: string): Promise<SignedUpload> {
  const cert = parseCertificate(stationCertificatePem, "the station certificate");
  if (!Buffer.from(cert.publicKey.rawData).equals(Buffer.from(signer.publicKeySpki))) {
    throw new DirectoryError("INVALID", `the station certificate ${cert.subject} is not for the signing key: give this station's own certificate`);
  }
  const doc: UploadBody = {
    format: UPLOAD_FORMAT,
    station: content.station,
    stationCertificate: stationCertificatePem.trim() + "\n",
    checkpoint: content.checkpoint,
    previousSize: content.previousSize,
    consistencyProof: content.consistencyProof,
    certificates: content.certificates,
  };
  const body = Buffer.from(JSON.stringify(doc), "utf8");
  const raw = await signer.sign(body);
  const der = derSignature(signer, raw);
  return { body: new Uint8Array(body), signature: Buffer.from(der).toString("base64") };
}

const b64 = (h: Uint8Array) => Buffer.from(h).toString("base64");

/** A certificate's DER through OpenSSL's parser: a quarter of @peculiar/x509's cost, paid for every certificate uploaded. */
function derOf(pem: string, serial: string): Uint8Array {
  try {
    return new Uint8Array(new X509Certificate(pem).raw);
  } catch (e) {
    throw new DirectoryError("INVALID", `the certificate of ${serial} is not a PEM X.509 certificate`, { cause: e });
  }
}

/**
 * Builds an upload's content from the station's own ledger: for each certificate its
 * certificate.issued entry and inclusion proof in `checkpoint`, and the consistency proof
 * from the checkpoint the directory holds (`previousSize`, 0 if none) to `checkpoint`.
 */
export function buildUpload(p: {
  ledger: Ledger;
  station: string;
  /** The checkpoint to upload (e.g. Ledger.checkpoint's result). */
  checkpoint: { size: number; note: string };
  previousSize: number;
  /** Each certificate as PEM; `index` names its entry when the serial has more than one. */
  certificates: ReadonlyArray<{ serial: string; certificate: string; index?: number }>;
}): UploadContent {
  const size = p.checkpoint.size;
  if (!Number.isSafeInteger(p.previousSize) || p.previousSize < 0 || p.previousSize > size) {
    throw new DirectoryError("INVALID", `previousSize ${p.previousSize} is not between 0 and the checkpoint size ${size}`);
  }
  const leaves = p.ledger.leafHashes(0, size);
  if (leaves.length !== size) throw new DirectoryError("LEDGER_BEHIND", `the ledger has ${leaves.length} entries, fewer than its checkpoint's ${size}: run \`idmint ledger verify\``);
  const located = p.certificates.map((c) => {
    const fingerprint = sha256Hex(derOf(c.certificate, c.serial));
    const index = c.index ?? p.ledger.findBySerial(c.serial, "certificate.issued");
    if (index === undefined) throw new DirectoryError("LEDGER_BEHIND", `the ledger has no certificate.issued entry for ${c.serial}`);
    if (index >= size) throw new DirectoryError("LEDGER_BEHIND", `the certificate of ${c.serial} (entry ${index}) is newer than the checkpoint (size ${size}): sign a new checkpoint`);
    const entry = p.ledger.entryBytes(index);
    const ev = decodeEntry(entry).event;
    if (ev.type !== "certificate.issued" || ev.serial !== c.serial || ev.certificateFingerprint !== fingerprint) {
      throw new DirectoryError("LEDGER_BEHIND", `ledger entry ${index} does not record this certificate of ${c.serial}`);
    }
    return { serial: c.serial, certificate: c.certificate.trim() + "\n", index, entry: entry.toString("base64") };
  });
  const proofs = inclusionProofs(leaves, located.map((c) => c.index), size);
  const certificates = located.map((c, i): UploadedCertificate => ({ ...c, inclusionProof: proofs[i]!.map(b64) }));
  return {
    station: p.station,
    checkpoint: p.checkpoint.note,
    previousSize: p.previousSize,
    consistencyProof: p.previousSize > 0 && p.previousSize < size ? consistencyProof(leaves, p.previousSize, size).map(b64) : [],
    certificates,
  };
}

/** What GET /certificates/{serial} answers. */
export interface CertificateInfo {
  serial: string;
  fingerprint: string;
  certificateSerial: string;
  station: string;
  issuedAt: string;
  publishedAt: string;
  ledgerIndex: number;
  links: { pem: string; der: string };
  proof: InclusionBundle;
}

export interface DirectoryClientOptions {
  /** Per request, body included. */
  timeoutMs?: number;
  /** Answers larger than this are refused (a directory is not trusted to be small). */
  maxResponseBytes?: number;
}

const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

const REFUSAL_REASONS = new Set(Object.keys(REFUSAL_STATUS));

/** A receipt of the promised shape that names each serial sent exactly once (published, already published or refused). */
function settlesEvery(receipt: UploadReceipt, sent: readonly string[]): boolean {
  if (receipt?.ok !== true || !Number.isSafeInteger(receipt.allocations)) return false;
  const { published, alreadyPublished, refused } = receipt;
  if (!Array.isArray(published) || !Array.isArray(alreadyPublished) || !Array.isArray(refused)) return false;
  if (!refused.every((r) => typeof r?.serial === "string" && REFUSAL_REASONS.has(r.code) && typeof r.message === "string")) return false;
  const named = [...published, ...alreadyPublished, ...refused.map((r) => r.serial)];
  const expected = new Set(sent);
  return named.length === expected.size && new Set(named).size === named.length && named.every((serial) => expected.has(serial));
}

/** The directory's HTTP API (directory/README.md), for stations and operators. Uses Node's global fetch. */
export class DirectoryClient {
  readonly url: string;
  private readonly base: URL;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;

  constructor(url: string | URL, options: DirectoryClientOptions = {}) {
    let base: URL;
    try {
      base = new URL(String(url));
    } catch (e) {
      throw new DirectoryError("URL_INVALID", `${String(url)} is not a URL: give the directory as https://host[:port]`, { cause: e });
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") throw new DirectoryError("URL_INVALID", `${String(url)} is not an http(s) URL`);
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    this.base = base;
    this.url = base.href.replace(/\/$/, "");
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxResponseBytes = options.maxResponseBytes ?? MAX_RESPONSE_BYTES;
  }

  /**
   * POST /uploads. Resolves with the receipt of an accepted upload, in which every certificate
   * sent is published, already published or refused with its reason; rejects with REFUSED
   * (status, reason) when the upload itself was refused.
   */
  async upload(signed: SignedUpload): Promise<UploadReceipt> {
    const { status, body } = await this.request("uploads", {
      method: "POST",
      headers: { "content-type": "application/json", [SIGNATURE_HEADER]: signed.signature },
      body: new Uint8Array(signed.body),
    });
    if (status !== 200 && status !== 207) throw this.failure(status, body, "the upload");
    const receipt = this.json(body, "the upload receipt") as UploadReceipt;
    const sent = (JSON.parse(Buffer.from(signed.body).toString("utf8")) as UploadBody).certificates.map((c) => c.serial);
    if (!settlesEvery(receipt, sent)) throw this.bad("the upload receipt is not what the directory should answer");
    return receipt;
  }

  /** The published IDevID of a serial, PEM. The caller still checks its chain to the vendor root. */
  async certificate(serial: string): Promise<string> {
    const path = this.serialPath(serial);
    const { status, body, type } = await this.request(`${path}.crt`);
    if (status !== 200) throw this.failure(status, body, `the certificate of ${serial}`);
    if (!type.startsWith("application/pem-certificate-chain") && !type.startsWith("application/x-pem-file")) throw this.bad(`the certificate of ${serial} came as ${type || "no type"}, not PEM`);
    const pem = Buffer.from(body).toString("utf8");
    let cert;
    try {
      cert = parseCertificate(pem, `the certificate of ${serial}`);
    } catch (e) {
      throw this.bad(`the directory's certificate of ${serial} is not a certificate`, e);
    }
    if (cert.subjectName.getField(PKI_OID.serialNumber)[0] !== serial) throw this.bad(`the directory answered a certificate for another serial than ${serial}`);
    return pem;
  }

  /** Facts about a published certificate, with its ledger inclusion bundle. */
  async info(serial: string): Promise<CertificateInfo> {
    const { status, body } = await this.request(this.serialPath(serial));
    if (status !== 200) throw this.failure(status, body, `the certificate of ${serial}`);
    const info = this.json(body, `the facts about ${serial}`) as CertificateInfo;
    if (info?.serial !== serial || typeof info.fingerprint !== "string" || info.proof?.format !== "idmint-inclusion/1") throw this.bad(`the directory's facts about ${serial} are malformed`);
    return info;
  }

  /** The station's latest checkpoint the directory accepted: its signed note. */
  async checkpoint(station: string): Promise<string> {
    try {
      assertStationId(station);
    } catch (e) {
      throw new DirectoryError("INVALID", (e as Error).message, { cause: e });
    }
    const { status, body } = await this.request(`stations/${encodeURIComponent(station)}/checkpoint`);
    if (status !== 200) throw this.failure(status, body, `the checkpoint of station ${station}`);
    return Buffer.from(body).toString("utf8");
  }

  /** The size of the station's accepted checkpoint, 0 if it has none yet: the previousSize of its next upload. */
  async acceptedSize(station: string): Promise<number> {
    let note: string;
    try {
      note = await this.checkpoint(station);
    } catch (e) {
      if (e instanceof DirectoryError && e.code === "NOT_FOUND") return 0;
      throw e;
    }
    const size = note.split("\n")[1] ?? "";
    if (!/^(0|[1-9]\d{0,15})$/.test(size)) throw this.bad(`the checkpoint of station ${station} is malformed`);
    return Number(size);
  }

  private serialPath(serial: string): string {
    try {
      assertSerialSyntax(serial);
    } catch (e) {
      throw new DirectoryError("INVALID", (e as Error).message, { cause: e });
    }
    return `certificates/${encodeURIComponent(serial)}`;
  }

  private async request(path: string, init: RequestInit = {}): Promise<{ status: number; body: Uint8Array; type: string }> {
    const target = new URL(path, this.base);
    let response: Response;
    try {
      response = await fetch(target, { ...init, redirect: "error", signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (e) {
      throw this.unreachable(e);
    }
    const length = Number(response.headers.get("content-length") ?? "0");
    if (length > this.maxResponseBytes) {
      await response.body?.cancel().catch(() => undefined);
      throw this.bad(`the directory answered ${length} bytes, more than ${this.maxResponseBytes}`);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    try {
      if (response.body) {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          total += chunk.length;
          if (total > this.maxResponseBytes) {
            await response.body.cancel().catch(() => undefined);
            throw this.bad(`the directory answered more than ${this.maxResponseBytes} bytes`);
          }
          chunks.push(chunk);
        }
      }
    } catch (e) {
      if (e instanceof DirectoryError) throw e;
      throw this.unreachable(e);
    }
    return { status: response.status, body: Buffer.concat(chunks), type: response.headers.get("content-type") ?? "" };
  }

  private unreachable(e: unknown): DirectoryError {
    const err = e as { name?: string; cause?: { code?: string } };
    const why = err?.name === "TimeoutError" || err?.name === "AbortError" ? `no answer within ${this.timeoutMs} ms` : (err?.cause?.code ?? (e instanceof Error ? e.message : String(e)));
    return new DirectoryError("DIRECTORY_UNREACHABLE", `cannot reach the directory at ${this.url} (${why}): check the URL and that the server runs`, { cause: e });
  }

  private bad(message: string, cause?: unknown): DirectoryError {
    return new DirectoryError("BAD_RESPONSE", `${message} (${this.url}): the directory or something in between is broken`, { cause });
  }

  private json(body: Uint8Array, what: string): unknown {
    try {
      return JSON.parse(Buffer.from(body).toString("utf8"));
    } catch (e) {
      throw this.bad(`${what} is not JSON`, e);
    }
  }

  private failure(status: number, body: Uint8Array, what: string): DirectoryError {
    let answer: { error?: { code?: unknown; message?: unknown }; acceptedSize?: unknown } | undefined;
    try {
      answer = JSON.parse(Buffer.from(body).toString("utf8"));
    } catch {
      answer = undefined;
    }
    const said = typeof answer?.error?.message === "string" ? answer.error.message.slice(0, 300) : `HTTP ${status}`;
    if (status === 404) return new DirectoryError("NOT_FOUND", `the directory has no ${what.replace(/^the /, "")} (${this.url})`, { status });
    if (status >= 400 && status < 500) {
      const code = typeof answer?.error?.code === "string" && REFUSAL_REASONS.has(answer.error.code) ? (answer.error.code as RefusalReason) : undefined;
      const acceptedSize = typeof answer?.acceptedSize === "number" ? answer.acceptedSize : undefined;
      return new DirectoryError(status === 400 || status === 413 ? "REFUSED_MALFORMED" : "REFUSED", `the directory refused ${what} (${status}${code ? ` ${code}` : ""}): ${said}`, { status, reason: code, acceptedSize });
    }
    // 503: the directory is up but its database is not (restart, failover): away for now, like a refused connection.
    if (status === 503) return new DirectoryError("DIRECTORY_UNREACHABLE", `the directory is unavailable for ${what} (503): ${said}`, { status });
    return new DirectoryError("BAD_RESPONSE", `the directory failed on ${what} (HTTP ${status}): try again later or ask its operator`, { status });
  }
}
