-- The directory's tables, as the SQLite store has them; sizes and indexes are BIGINT (a
-- station's ledger may pass 2^31 entries), and certificates keep their publication order (seq).
CREATE TABLE directory_allocations (
  allocation_id TEXT PRIMARY KEY,
  station TEXT NOT NULL,
  digest TEXT NOT NULL,
  count BIGINT NOT NULL,
  added_at TEXT NOT NULL
);
CREATE TABLE directory_serials (
  serial TEXT PRIMARY KEY,
  station TEXT NOT NULL,
  allocation_id TEXT NOT NULL REFERENCES directory_allocations (allocation_id)
);
CREATE TABLE directory_checkpoints (
  station TEXT NOT NULL,
  size BIGINT NOT NULL,
  root BYTEA NOT NULL,
  note TEXT NOT NULL,
  station_certificate TEXT NOT NULL,
  accepted_at TEXT NOT NULL,
  PRIMARY KEY (station, size)
);
CREATE TABLE directory_certificates (
  serial TEXT PRIMARY KEY,
  seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
  der BYTEA NOT NULL,
  fingerprint TEXT NOT NULL UNIQUE,
  certificate_serial TEXT NOT NULL,
  station TEXT NOT NULL,
  ledger_index BIGINT NOT NULL,
  entry BYTEA NOT NULL,
  checkpoint_size BIGINT NOT NULL,
  inclusion_proof TEXT NOT NULL,
  issued_at TEXT NOT NULL,
  published_at TEXT NOT NULL,
  FOREIGN KEY (station, checkpoint_size) REFERENCES directory_checkpoints (station, size)
);
CREATE TABLE directory_conflicts (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  serial TEXT NOT NULL,
  der BYTEA NOT NULL,
  fingerprint TEXT NOT NULL,
  station TEXT NOT NULL,
  ledger_index BIGINT NOT NULL,
  entry BYTEA NOT NULL,
  checkpoint_note TEXT NOT NULL,
  inclusion_proof TEXT NOT NULL,
  held_fingerprint TEXT NOT NULL,
  received_at TEXT NOT NULL,
  UNIQUE (serial, fingerprint)
);
