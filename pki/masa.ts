import { existsSync } from "node:fs";
import { CoreError, readInputFile, systemClock, systemRandom, writeNewFiles, type Clock, type Home, type IdmintConfig, type Random } from "../core/index.js";
import type { Signer } from "../hsm/index.js";
import { parseCertificate } from "./chain.js";
import { PkiError } from "./errors.js";
import { issueEndEntity } from "./profiles.js";
import type { x509 } from "./x509.js";

/** Where the MASA's key is made and the root key signs its certificate: the HSM (hsm's Hsm fits as it is). */
export interface MasaTokens {
  createKey(uri: string, algorithm: "EC-P256"): Signer;
  destroyKey(uri: string): void;
  signer(uri: string): Signer;
}

/**
 * The MASA role (RFC 8366 §1): the vendor's voucher-signing key, made at `keyUri`, and its
 * certificate from the vendor root, so that a unit trusting only that root trusts the
 * vouchers. A certificate that cannot be made takes the new key with it.
 */
export async function certifyMasa(p: { tokens: MasaTokens; config: IdmintConfig; keyUri: string; root: x509.X509Certificate; clock: Clock; random: Random }): Promise<x509.X509Certificate> {
  const key = p.tokens.createKey(p.keyUri, "EC-P256");
  try {
    const o = p.config.profile.organization;
    return await issueEndEntity({
      purpose: "masa",
      issuer: { signer: p.tokens.signer(p.config.keys.root), certificate: p.root },
      publicKeySpki: key.publicKeySpki,
      subject: { organization: o, organizationalUnit: "MASA", commonName: `${o} MASA` },
      clock: p.clock,
      random: p.random,
    });
  } catch (e) {
    p.tokens.destroyKey(p.keyUri);
    throw e;
  }
}

/**
 * `ca masa`: the MASA role added to a home whose ceremony ran before vouchers existed:
 * key, certificate in HOME/pki/masa.pem, and its URI in idmint.json, all or nothing.
 */
export async function addMasa(home: Home, config: IdmintConfig, keyUri: string, tokens: MasaTokens): Promise<{ certificate: x509.X509Certificate; file: string }> {
  const file = home.pkiFile("masa");
  if (config.keys.masa !== undefined || existsSync(file)) {
    throw new PkiError("MASA_EXISTS", `${home.root} already has a MASA (${config.keys.masa ?? file}): vouchers are signed with it; use a new --home to start over`);
  }
  const rootPath = home.pkiFile("root");
  if (!existsSync(rootPath)) throw new CoreError("HOME_NOT_INITIALISED", `${home.root} has no vendor root (${rootPath}): run \`idmint ca init\`, which makes the MASA too`);
  const root = parseCertificate(readInputFile(rootPath, "the vendor root certificate"), rootPath);
  const certificate = await certifyMasa({ tokens, config, keyUri, root, clock: systemClock, random: systemRandom });
  try {
    writeNewFiles([{ path: file, data: certificate.toString("pem") + "\n" }]);
    home.writeConfig({ ...config, keys: { ...config.keys, masa: keyUri } });
  } catch (e) {
    tokens.destroyKey(keyUri);
    throw new CoreError("FILE_UNWRITABLE", `cannot write ${file} or ${home.configPath} (${(e as Error).message}); the new MASA key was removed again`, { cause: e });
  }
  return { certificate, file };
}
