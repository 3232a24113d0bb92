import { readFileSync } from "node:fs";
import { CoreError, sha256Hex, type Clock, type Home, type IdmintConfig, type Random } from "../core/index.js";
import type { Hsm } from "../hsm/index.js";
import { checkCsr, issueIdevid, newCertificateSerial, parseCertificate, type CheckedCsr, type x509 } from "../pki/index.js";
import { applyChange, type UnitChange } from "./changes.js";
import { StationError } from "./errors.js";
import type { StationStores } from "./home.js";
import { UnitStore } from "./store.js";

/** Where the issue path's changes become durable: the line's group commit, or `ca issue`'s own transactions. */
export interface ChangeSink {
  commit(change: UnitChange): Promise<void>;
}

/** What the factory CA is asked to sign: the unit's checked key under the certificate serial the ledger named. */
export interface IssueRequest {
  publicKeySpki: Uint8Array<ArrayBuffer>;
  serial: string;
  certificateSerial: string;
  /** Told if the HSM's signature had to be asked for again after an outage (the ledger records it). */
  onSignRetry(): void;
}

/** The steps of the issue path, each durable when it is reported. */
export type IssueStep = "intent" | "signed" | "issued";

/**
 * The one intent -> sign -> issued path, for the line and `ca issue` alike. One commit
 * reserves the serial in an imported allocation (or declares a lab unit outside every
 * one), records the key (refused if another unit ever presented it: invariant 4) and
 * appends the ledger's intent naming the certificate serial (invariant 2); only then does
 * the CA key sign; one more commit stores the certificate, marks the serial provisioned
 * and appends the issued entry. A refusal records nothing. `step` is told after each step.
 */
export async function issueCertificate<C extends { pem: string; fingerprint: string }>(p: {
  commits: ChangeSink;
  issuer: { issue(r: IssueRequest): Promise<C> };
  serial: string;
  csr: CheckedCsr;
  random: Random;
  /** A lab unit's reason: its serial must be in no allocation. */
  outsideAllocation?: string;
  step?(step: IssueStep): void;
}): Promise<C> {
  const { serial, outsideAllocation } = p;
  const certificateSerial = newCertificateSerial(p.random);
  await p.commits.commit({ op: "intent", serial, keyFingerprint: p.csr.keyFingerprint, certificateSerial, outsideAllocation });
  p.step?.("intent");
  let signatureRetried = false;
  const cert = await p.issuer.issue({ publicKeySpki: p.csr.publicKeySpki, serial, certificateSerial, onSignRetry: () => (signatureRetried = true) });
  p.step?.("signed");
  await p.commits.commit({ op: "issued", serial, certificateSerial, pem: cert.pem + "\n", fingerprint: cert.fingerprint, outsideAllocation: outsideAllocation !== undefined, signatureRetried });
  p.step?.("issued");
  return cert;
}

/** Whose reservations `ca issue` makes: not the line's, so neither takes a serial the other has under way. */
const ONE_OFF_OWNER = "ca-issue";

/**
 * `ca issue`: one IDevID for a CSR made elsewhere, through the line's issue path, with the
 * line's refusals (a serial in no imported allocation or used before, a key seen before).
 * The certificate is handed over (`handOver`, e.g. written to --out) before the unit is
 * recorded delivered and queued for the directory like any unit. A lab unit outside every
 * allocation needs `outsideAllocation` with a reason, which the ledger keeps.
 */
export async function issueFromCsr(p: {
  stores: StationStores;
  hsm: Hsm;
  home: Home;
  config: IdmintConfig;
  clock: Clock;
  random: Random;
  csr: string | Uint8Array;
  serial: string;
  commonName?: string;
  outsideAllocation?: { reason: string };
  handOver?(cert: { der: Uint8Array<ArrayBuffer>; pem: string }): void;
}): Promise<{ certificate: x509.X509Certificate; keyType: CheckedCsr["keyType"] }> {
  const reason = p.outsideAllocation?.reason;
  if (reason !== undefined && (!reason.trim() || reason.length > 200)) {
    throw new StationError("LAB_REASON", "--reason must say why this unit is outside every allocation, in 1 to 200 characters");
  }
  const checked = await checkCsr(p.csr, p.serial);
  const caPath = p.home.pkiFile("factory-ca");
  let caPem: string;
  try {
    caPem = readFileSync(caPath, "utf8");
  } catch (e) {
    throw new CoreError("HOME_NOT_INITIALISED", `${caPath} cannot be read: run \`idmint ca init --home ${p.home.root}\` first`, { cause: e });
  }
  // The key first: a wrong PIN or a missing token is refused before anything is recorded.
  const issuer = { signer: p.hsm.signer(p.config.keys.factoryCa), certificate: parseCertificate(caPem, caPath) };
  const stores = { ...p.stores, units: new UnitStore(p.stores.db, p.clock), owner: ONE_OFF_OWNER };
  const apply = p.stores.db.transaction((change: UnitChange) => applyChange(stores, change));
  const commits: ChangeSink = { commit: async (change) => apply.immediate(change) };

  const issued = await issueCertificate({
    commits,
    serial: p.serial,
    csr: checked,
    random: p.random,
    outsideAllocation: reason,
    issuer: {
      // `ca issue` signs in-process, never through the pool: nothing is asked for twice.
      issue: async ({ onSignRetry: _neverCalled, ...r }) => {
        const certificate = await issueIdevid({
          issuer,
          ...r,
          commonName: p.commonName,
          organization: p.config.profile.organization,
          hwTypeOid: p.config.profile.hwTypeOid,
          clock: p.clock,
          random: p.random,
        });
        const der = new Uint8Array(certificate.rawData);
        return { certificate, der, pem: certificate.toString("pem"), fingerprint: sha256Hex(der) };
      },
    },
  });
  p.handOver?.(issued);
  await commits.commit({ op: "delivered", serial: p.serial, pem: issued.pem + "\n", fingerprint: issued.fingerprint, outsideAllocation: reason !== undefined });
  return { certificate: issued.certificate, keyType: checked.keyType };
}
