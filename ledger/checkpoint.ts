import "reflect-metadata";
import { createHash, createPublicKey, verify as nodeVerify } from "node:crypto";
import type { Signer } from "../hsm/index.js";
import { LedgerError } from "./errors.js";
import type { Hash } from "./merkle.js";
import { derSignature } from "../pki/index.js";

/** A checkpoint (C2SP tlog-checkpoint): the log's origin, size and root hash, as a signed note. */
export interface Checkpoint {
  origin: string;
  size: number;
  root: Hash;
}

/** The origin line of a station's log, which is also the note's key name (C2SP signed-note §Signatures). */
export function stationOrigin(stationId: string): string {
  return `idmint.station/${stationId}`;
}

/** C2SP signed-note type 0x02 (ECDSA): the key ID is the first 4 bytes of SHA-256(DER SPKI). */
export function noteKeyId(spki: Uint8Array): Buffer {
  return createHash("sha256").update(spki).digest().subarray(0, 4);
}

function checkpointText(c: Checkpoint): string {
  if (!/^[^\s+]+$/.test(c.origin)) throw new LedgerError("CHECKPOINT_ENCODING", `checkpoint origin "${c.origin}" may not contain spaces or "+"`);
  return `${c.origin}\n${c.size}\n${Buffer.from(c.root).toString("base64")}\n`;
}

/** Signs a checkpoint with the station key: ECDSA over the note text, DER-encoded as Go's SignASN1 writes it. */
export async function signCheckpoint(c: Checkpoint, signer: Signer): Promise<string> {
  if (!signer.algorithm.startsWith("EC-")) {
    throw new LedgerError("STATION_KEY_UNSUPPORTED", `checkpoints are ECDSA signed notes; the station key is ${signer.algorithm}: use an EC P-256 or P-384 station key`);
  }
  const text = checkpointText(c);
  const raw = await signer.sign(Buffer.from(text, "utf8"));
  const der = derSignature(signer, raw);
  const sig = Buffer.concat([noteKeyId(signer.publicKeySpki), Buffer.from(der)]);
  return `${text}\n\u2014 ${c.origin} ${sig.toString("base64")}\n`;
}

const MAX_NOTE_BYTES = 16 * 1024;

/**
 * Parses a signed checkpoint and verifies it against the station's public key. The note is
 * attacker-controlled: its size, its lines and every signature are checked before use, and
 * signatures by other keys are ignored (C2SP signed-note), but at least one must be ours.
 */
export function openCheckpoint(note: string, expectedOrigin: string, stationSpki: Uint8Array): Checkpoint {
  const bad = (why: string, code: "CHECKPOINT_INVALID" | "CHECKPOINT_SIGNATURE" = "CHECKPOINT_INVALID") => new LedgerError(code, why);
  if (Buffer.byteLength(note, "utf8") > MAX_NOTE_BYTES) throw bad("the checkpoint note is larger than 16 KiB");
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) throw bad("the checkpoint note contains control characters");
  const split = note.lastIndexOf("\n\n");
  if (split === -1 || !note.endsWith("\n")) throw bad("the checkpoint is not a signed note (no blank line before the signatures)");
  const text = note.slice(0, split + 1);
  const sigLines = note.slice(split + 2, -1).split("\n");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw bad("the checkpoint note needs origin, size and root lines");
  const [origin, sizeText, rootText] = lines as [string, string, string];
  if (origin !== expectedOrigin) throw bad(`the checkpoint is for ${origin}, not ${expectedOrigin}`);
  if (!/^(0|[1-9]\d{0,15})$/.test(sizeText)) throw bad(`the checkpoint size "${sizeText}" is not a decimal number`);
  const root = Buffer.from(rootText, "base64");
  if (root.length !== 32 || root.toString("base64") !== rootText) throw bad("the checkpoint root is not a base64 SHA-256 hash");

  const keyId = noteKeyId(stationSpki);
  const key = createPublicKey({ key: Buffer.from(stationSpki), format: "der", type: "spki" });
  let ours = 0;
  for (const line of sigLines) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m) throw bad("a checkpoint signature line is malformed");
    const sig = Buffer.from(m[2]!, "base64");
    if (m[1] !== expectedOrigin || sig.length < 5 || !sig.subarray(0, 4).equals(keyId)) continue;
    ours++;
    let ok = false;
    try {
      // The hash follows the key, as signCheckpoint's signer does (P-384 keys sign SHA-384).
      const hash = key.asymmetricKeyDetails?.namedCurve === "secp384r1" ? "sha384" : "sha256";
      ok = nodeVerify(hash, Buffer.from(text, "utf8"), { key, dsaEncoding: "der" }, sig.subarray(4));
    } catch {
      ok = false;
    }
    if (!ok) throw bad("the checkpoint signature by the station key does not verify", "CHECKPOINT_SIGNATURE");
  }
  if (ours === 0) throw bad(`the checkpoint carries no signature by the station key of ${expectedOrigin}`, "CHECKPOINT_SIGNATURE");
  return { origin, size: Number(sizeText), root: new Uint8Array(root) };
}
