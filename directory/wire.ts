import type { RefusalReason } from "./errors.js";

// The upload format (directory/README.md, "Uploads"): what a station sends and the directory
// answers, shared by the server's checks and the client face without loading either.

export const UPLOAD_FORMAT = "idmint-upload/1";

/**
 * The request header carrying the station's signature: base64 of the DER ECDSA signature
 * over the exact body bytes, hashed as the station key's HSM signer hashes (SHA-256 for the
 * P-256 station keys the ceremony makes, SHA-384 for P-384).
 *
 * Why a signed body and not mutual TLS: the station key lives in a PKCS#11 token, and Node's
 * TLS stack (OpenSSL underneath) can only use a token key through an OpenSSL engine or
 * provider that Node does not load; a signature made through our PKCS#11 signer needs none.
 * It also authenticates the upload itself, not just the connection, so the directory can keep
 * the signed body as evidence and no TLS-terminating proxy can alter it unnoticed.
 */
export const SIGNATURE_HEADER = "idmint-signature";

/** An upload carries at most this many certificates; a station sends more in several uploads. */
export const MAX_UPLOAD_CERTIFICATES = 1000;

export interface UploadedCertificate {
  serial: string;
  /** The IDevID, PEM. */
  certificate: string;
  /** Index of its certificate.issued entry in the station's ledger. */
  index: number;
  /** base64 of that entry's canonical bytes. */
  entry: string;
  /** RFC 9162 §2.1.3 inclusion path of the entry in `checkpoint`, base64 hashes. */
  inclusionProof: string[];
}

export interface UploadBody {
  format: typeof UPLOAD_FORMAT;
  station: string;
  /** The station certificate, PEM: must chain to the vendor root, OU "Station", CN = station. */
  stationCertificate: string;
  /** The station's new checkpoint: a C2SP signed note signed by the station key. */
  checkpoint: string;
  /** Size of the checkpoint the directory holds for this station (0 for the first upload). */
  previousSize: number;
  /** RFC 9162 §2.1.4 proof from the checkpoint of previousSize to the new one, base64 hashes. */
  consistencyProof: string[];
  certificates: UploadedCertificate[];
}

/** One certificate of an accepted upload that the directory would not publish, and why. */
export interface RefusedCertificate {
  serial: string;
  code: RefusalReason;
  message: string;
}

/**
 * What a 200 (every certificate published) or 207 (some refused) answer to POST /uploads
 * says: each uploaded serial is in exactly one of `published`, `alreadyPublished`, `refused`.
 */
export interface UploadReceipt {
  ok: true;
  station: string;
  checkpoint: { size: number; root: string; status: "accepted" | "unchanged" };
  /** Serials published by this upload. */
  published: string[];
  /** Serials whose identical certificate the directory already published (an idempotent retry). */
  alreadyPublished: string[];
  refused: RefusedCertificate[];
  /**
   * How many allocation lists the directory held when it checked the upload: a refusal
   * SERIAL_UNALLOCATED can only change once this number has.
   */
  allocations: number;
}
