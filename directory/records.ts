/** What the directory keeps, and the store interface both stores implement (store.ts: SQLite, pg-store.ts: PostgreSQL). */

/** A station's checkpoint the directory accepted (C2SP signed note, verified before it got here). */
export interface AcceptedCheckpoint {
  station: string;
  size: number;
  root: Uint8Array;
  note: string;
  /** The station certificate (PEM) whose key signed the note and the upload. */
  stationCertificate: string;
  acceptedAt: string;
}

/** A published IDevID and the ledger evidence it was accepted on. */
export interface PublishedCertificate {
  serial: string;
  der: Uint8Array;
  /** SHA-256 of the DER, lower-case hex: the ETag, and what the ledger entry names. */
  fingerprint: string;
  certificateSerial: string;
  station: string;
  /** Index of the station's certificate.issued entry for it. */
  ledgerIndex: number;
  /** That entry's canonical bytes. */
  entry: Uint8Array;
  /** Size of the accepted checkpoint the inclusion proof is against. */
  checkpointSize: number;
  inclusionProof: Uint8Array[];
  /** The entry's time: when the station recorded the issue. */
  issuedAt: string;
  publishedAt: string;
}

/** A second, different certificate for a published serial: kept for the vendor, never published. */
export interface ConflictRecord {
  serial: string;
  der: Uint8Array;
  fingerprint: string;
  station: string;
  ledgerIndex: number;
  entry: Uint8Array;
  /** The (refused) checkpoint note the certificate was proven in, as evidence. */
  checkpointNote: string;
  inclusionProof: Uint8Array[];
  /** Fingerprint of the certificate the directory publishes for the serial. */
  heldFingerprint: string;
  receivedAt: string;
}

/** One verified allocation list, as `directory allocations add` registers it. */
export interface AllocationRecord {
  allocationId: string;
  station: string;
  /** SHA-256 of the list's canonical payload: the same id with other content is refused. */
  digest: string;
  serials: readonly string[];
}

/** Everything an accepted upload changes, written in one transaction. */
export interface UploadCommit {
  station: string;
  /**
   * The station's checkpoint the upload was verified against (undefined: none yet). The
   * commit applies only if it is still the latest (compare-and-set), so two concurrent
   * uploads of one station cannot both build on the same checkpoint.
   */
  expected: { size: number; root: Uint8Array } | undefined;
  checkpoint: { size: number; root: Uint8Array; note: string; stationCertificate: string };
  /** Certificates to publish; each must be new or identical to the one held. */
  certificates: readonly PublishedCertificate[];
  at: string;
}

export type CommitOutcome =
  | { ok: true; checkpointAdvanced: boolean; published: string[]; alreadyPublished: string[] }
  | { ok: false; reason: "STALE" | "CONFLICT"; serial?: string };

/**
 * The directory's state behind a small asynchronous interface, so that a PostgreSQL store
 * can replace SQLite without the server changing. Every method is atomic on its own.
 */
export interface DirectoryStore {
  latestCheckpoint(station: string): Promise<AcceptedCheckpoint | undefined>;
  checkpointAt(station: string, size: number): Promise<AcceptedCheckpoint | undefined>;
  allocationOf(serial: string): Promise<{ station: string; allocationId: string } | undefined>;
  /** How many allocation lists are registered: grows with each new one, so stations can tell when to ask again. */
  allocationCount(): Promise<number>;
  certificate(serial: string): Promise<PublishedCertificate | undefined>;
  /** Only what a .crt/.der read sends (the hot path): one indexed read, no proof decoded. */
  published(serial: string): Promise<{ der: Uint8Array; fingerprint: string } | undefined>;
  /** The most recently published certificates, newest first: what a starting server preloads. */
  recentCertificates(limit: number): Promise<Array<{ serial: string; der: Uint8Array; fingerprint: string }>>;
  /** Registers a verified allocation; the same list again is a no-op ({ added: false }). */
  addAllocation(a: AllocationRecord, at: string): Promise<{ added: boolean; count: number }>;
  commitUpload(c: UploadCommit): Promise<CommitOutcome>;
  /** Keeps conflicting certificates for the vendor; the same one again is kept once. */
  recordConflicts(c: readonly ConflictRecord[]): Promise<void>;
  conflicts(serial?: string): Promise<ConflictRecord[]>;
  close(): Promise<void>;
}
