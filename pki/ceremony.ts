import { existsSync } from "node:fs";
import { CoreError, systemClock, systemRandom, writeNewFiles, type Clock, type Home, type IdmintConfig, type KeyRole, type Random } from "../core/index.js";
import type { KeyAlgorithm, Signer } from "../hsm/index.js";
import { PkiError } from "./errors.js";
import { certifyMasa } from "./masa.js";
import { issueEndEntity, issueFactoryCa, issueRoot } from "./profiles.js";
import type { x509 } from "./x509.js";

/** Creates and removes the ceremony's keys; the CLI backs it with the HSM. */
export interface CeremonyKeys {
  create(role: KeyRole, algorithm: KeyAlgorithm): Signer;
  destroy(role: KeyRole): void;
}

export interface CeremonyResult {
  root: x509.X509Certificate;
  factoryCa: x509.X509Certificate;
  allocationSigner: x509.X509Certificate;
  station: x509.X509Certificate;
}

export const CEREMONY_ALGORITHMS: Record<KeyRole, KeyAlgorithm> = {
  root: "EC-P384",
  factoryCa: "EC-P256",
  allocationSigner: "EC-P256",
  station: "EC-P256",
};

const STATION_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function assertStationId(id: string): void {
  if (!STATION_ID.test(id)) {
    throw new PkiError("STATION_ID_SYNTAX", `station id "${id}" is not valid: use 1-63 characters of A-Z a-z 0-9 . _ - starting with a letter or digit`);
  }
}

/**
 * The key ceremony: vendor root, factory CA, allocation signer and station keys made in
 * their tokens, and their certificates. If any step fails, the keys made so far are
 * destroyed again, so a failed ceremony leaves nothing behind.
 */
export async function runCeremony(p: {
  keys: CeremonyKeys;
  organization: string;
  stationId: string;
  clock: Clock;
  random: Random;
}): Promise<CeremonyResult> {
  assertStationId(p.stationId);
  const made: KeyRole[] = [];
  const make = (role: KeyRole): Signer => {
    const s = p.keys.create(role, CEREMONY_ALGORITHMS[role]);
    made.push(role);
    return s;
  };
  try {
    const o = p.organization;
    const rootKey = make("root");
    const root = await issueRoot({ signer: rootKey, subject: { organization: o, commonName: `${o} Root CA` }, clock: p.clock, random: p.random });
    const rootIssuer = { signer: rootKey, certificate: root };
    const caKey = make("factoryCa");
    const factoryCa = await issueFactoryCa({ issuer: rootIssuer, publicKeySpki: caKey.publicKeySpki, subject: { organization: o, commonName: `${o} Factory CA` }, clock: p.clock, random: p.random });
    const allocKey = make("allocationSigner");
    const allocationSigner = await issueEndEntity({
      purpose: "allocation-signer",
      issuer: rootIssuer,
      publicKeySpki: allocKey.publicKeySpki,
      subject: { organization: o, organizationalUnit: "Allocation Signer", commonName: `${o} Allocation Signer` },
      clock: p.clock,
      random: p.random,
    });
    const stationKey = make("station");
    const station = await issueEndEntity({
      purpose: "station",
      issuer: rootIssuer,
      publicKeySpki: stationKey.publicKeySpki,
      subject: { organization: o, organizationalUnit: "Station", commonName: p.stationId },
      clock: p.clock,
      random: p.random,
    });
    return { root, factoryCa, allocationSigner, station };
  } catch (e) {
    for (const role of made.reverse()) {
      try {
        p.keys.destroy(role);
      } catch {
        // Best effort: the original failure is what the user must see.
      }
    }
    throw e;
  }
}

/** Where the ceremony's keys are made, by PKCS#11 URI: the HSM (hsm's Hsm fits as it is). */
export interface KeyTokens {
  createKey(uri: string, algorithm: KeyAlgorithm): Signer;
  destroyKey(uri: string): void;
  signer(uri: string): Signer;
}

const PKI_FILES = { root: "root", factoryCa: "factory-ca", allocationSigner: "allocation-signer", station: "station" } as const;

/**
 * `ca init`: the ceremony in a home, then its four certificates written all-or-nothing to
 * HOME/pki and the station id to idmint.json; with `masaKey`, the MASA's key there and its
 * certificate too (HOME/pki/masa.pem). Certificates that cannot be written take the new
 * keys with them, so a failed `ca init` can simply be run again.
 */
export async function initCa(
  home: Home,
  config: IdmintConfig,
  stationId: string,
  tokens: KeyTokens,
  masaKey?: string,
): Promise<{ certs: CeremonyResult; files: Record<keyof CeremonyResult, string>; masa?: { certificate: x509.X509Certificate; file: string } }> {
  assertStationId(stationId);
  const files = Object.fromEntries(Object.entries(PKI_FILES).map(([k, f]) => [k, home.pkiFile(f)])) as Record<keyof CeremonyResult, string>;
  const masaFile = home.pkiFile("masa");
  const present = [...Object.values(files), ...(masaKey ? [masaFile] : [])].find((f) => existsSync(f));
  if (present) {
    throw new PkiError("CA_EXISTS", `the CA of ${home.root} already exists (${present}): a second ceremony would replace the vendor root; use a new --home to start over`);
  }
  const keys: CeremonyKeys = {
    create: (role, algorithm) => tokens.createKey(config.keys[role], algorithm),
    destroy: (role) => tokens.destroyKey(config.keys[role]),
  };
  const certs = await runCeremony({ keys, organization: config.profile.organization, stationId, clock: systemClock, random: systemRandom });
  const destroyAll = () => {
    for (const role of ["station", "allocationSigner", "factoryCa", "root"] as const) keys.destroy(role);
  };
  let masa: x509.X509Certificate | undefined;
  try {
    if (masaKey) masa = await certifyMasa({ tokens, config, keyUri: masaKey, root: certs.root, clock: systemClock, random: systemRandom });
  } catch (e) {
    destroyAll();
    throw e;
  }
  try {
    const written = (Object.keys(files) as Array<keyof CeremonyResult>).map((k) => ({ path: files[k], data: certs[k].toString("pem") + "\n" }));
    writeNewFiles(masa ? [...written, { path: masaFile, data: masa.toString("pem") + "\n" }] : written);
    home.writeConfig({ ...config, keys: masaKey ? { ...config.keys, masa: masaKey } : config.keys, station: { id: stationId } });
  } catch (e) {
    destroyAll();
    if (masaKey) tokens.destroyKey(masaKey);
    throw new CoreError("FILE_UNWRITABLE", `cannot write the CA certificates to ${home.pkiDir} (${(e as Error).message}); the new keys were removed again`, { cause: e });
  }
  return { certs, files, masa: masa ? { certificate: masa, file: masaFile } : undefined };
}
