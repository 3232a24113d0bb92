import { readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { webcrypto } from "node:crypto";
import { Home, openDb, sha256Hex, systemClock, systemRandom } from "../../core/index.js";
import { Hsm } from "../../hsm/index.js";
import { Ledger, stationOrigin, type LedgerEvent } from "../../ledger/index.js";
import { issueIdevid, x509 } from "../../pki/index.js";
import { buildUpload, signUpload, type SignedUpload, type UploadContent, type UploadSigner } from "../../directory/client/index.js";
import { BIN, idmint, idmintSteps, type Run } from "../helpers.js";

/** `idmint directory ...` through the real binary. */
export function directoryCli(home: string, ...args: string[]): Run {
  return idmint(["--home", home, "directory", ...args]);
}

/** The command line to spawn `idmint directory ...` as a long-running process. */
export function directoryCommandLine(home: string, ...args: string[]): string[] {
  return [BIN, "--home", home, "directory", ...args];
}

export function must(r: Run, what: string): Run {
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${r.stderr}`);
  return r;
}

/** A vendor home with its HSM tokens and CA (station-1's key included), as `hsm init` + `ca init` make it. */
export function makeHome(dir: string, name: string): { home: string; h: Home; cli: (...args: string[]) => Run } {
  const home = join(dir, name);
  const cli = (...args: string[]) => idmint(["--home", home, ...args]);
  must(idmintSteps([["--home", home, "hsm", "init"], ["--home", home, "ca", "init", "--station", "station-1"]]), "hsm init, ca init");
  return { home, h: new Home(home), cli };
}

export async function withHsm<T>(h: Home, fn: (hsm: Hsm) => Promise<T>): Promise<T> {
  const config = h.readConfig();
  const hsm = Hsm.open({ module: config.hsm.module, softhsmConf: config.hsm.softhsmConf });
  try {
    return await fn(hsm);
  } finally {
    hsm.close();
  }
}

export async function withLedger<T>(h: Home, fn: (ledger: Ledger) => Promise<T> | T): Promise<T> {
  const db = openDb(h.stationDbPath);
  try {
    return await fn(new Ledger(db, systemClock));
  } finally {
    db.close();
  }
}

export function pem(h: Home, name: "root" | "factory-ca" | "allocation-signer" | "station"): string {
  return readFileSync(h.pkiFile(name), "utf8");
}

export function certPem(h: Home, serial: string): string {
  return readFileSync(join(h.certsDir, `${serial}.pem`), "utf8");
}

/** Records a certificate.issued entry for any certificate, as a rogue station's software could. */
export function recordIssued(ledger: Ledger, serial: string, cert: x509.X509Certificate): number {
  const event: LedgerEvent = { type: "certificate.issued", serial, certificateSerial: cert.serialNumber, certificateFingerprint: sha256Hex(new Uint8Array(cert.rawData)) };
  return ledger.append(event).index;
}

/**
 * An IDevID for `serial` signed in the HSM by `issuer` (the factory CA, or the root to skip
 * it) for a fresh key, recorded as certificate.issued in the home's ledger without any unit
 * or intent: what a rogue or broken station's software could upload.
 */
export async function forgeIdevid(h: Home, serial: string, issuer: "factoryCa" | "root" = "factoryCa"): Promise<x509.X509Certificate> {
  const config = h.readConfig();
  const key = await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const spki = new Uint8Array(await webcrypto.subtle.exportKey("spki", key.publicKey));
  const cert = await withHsm(h, async (hsm) =>
    issueIdevid({
      issuer: { signer: hsm.signer(config.keys[issuer]), certificate: new x509.X509Certificate(pem(h, issuer === "root" ? "root" : "factory-ca")) },
      publicKeySpki: spki,
      serial,
      organization: config.profile.organization,
      hwTypeOid: config.profile.hwTypeOid,
      clock: systemClock,
      random: systemRandom,
    }),
  );
  await withLedger(h, (ledger) => recordIssued(ledger, serial, cert));
  return cert;
}

/**
 * What a station's uploader does: sign a checkpoint over its ledger with the station key,
 * prove each certificate's entry in it and the checkpoint's consistency with the one the
 * directory holds, and sign the body with the station key.
 */
export async function stationUpload(
  h: Home,
  p: { previousSize: number; certificates: Array<{ serial: string; certificate: string; index?: number }>; signer?: (hsm: Hsm) => UploadSigner; signerCertificate?: string; edit?: (c: UploadContent) => void },
): Promise<{ signed: SignedUpload; size: number }> {
  const config = h.readConfig();
  return withHsm(h, (hsm) =>
    withLedger(h, async (ledger) => {
      const stationSigner = hsm.signer(config.keys.station);
      const checkpoint = await ledger.checkpoint(stationSigner, stationOrigin(config.station.id));
      const content = buildUpload({ ledger, station: config.station.id, checkpoint, previousSize: p.previousSize, certificates: p.certificates });
      p.edit?.(content);
      const signer = p.signer ? p.signer(hsm) : stationSigner;
      return { signed: await signUpload(content, signer, p.signerCertificate ?? pem(h, "station")), size: checkpoint.size };
    }),
  );
}

/** Every row of every table of an SQLite directory store (stores.ts dump covers PostgreSQL too). */
export function dumpSqlite(dbPath: string): Record<string, unknown[]> {
  const db = new Database(dbPath, { readonly: true });
  try {
    const out: Record<string, unknown[]> = {};
    for (const table of ["directory_allocations", "directory_serials", "directory_checkpoints", "directory_certificates", "directory_conflicts"]) {
      out[table] = (db.prepare(`SELECT * FROM ${table} ORDER BY rowid`).all() as Array<Record<string, unknown>>).map((row) =>
        Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString("hex") : v])),
      );
    }
    return out;
  } finally {
    db.close();
  }
}

export async function post(url: string, body: Uint8Array | string, headers: Record<string, string> = {}): Promise<{ status: number; json: { ok: boolean; error?: { code: string; message: string; serial?: string }; [k: string]: unknown } }> {
  const res = await fetch(`${url}/uploads`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : new Uint8Array(body) });
  return { status: res.status, json: (await res.json()) as never };
}

export function postSigned(url: string, signed: SignedUpload) {
  return post(url, signed.body, { "idmint-signature": signed.signature });
}
