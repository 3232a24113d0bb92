import { createPublicKey, verify } from "node:crypto";
import { performance } from "node:perf_hooks";
import { CoreError, toWireError, type IdmintConfig, type KeyRole, type WireError } from "../core/index.js";
import { HsmError } from "./errors.js";
import { Hsm, type HsmOptions } from "./pkcs11/hsm.js";
import { signMechanism } from "./pkcs11/signer.js";
import { isEc } from "./pkcs11/public-key.js";
import { formatPkcs11Uri, parsePkcs11Uri } from "./uri.js";

/** The roles `hsm check` knows, as the operator names them: the four key roles, and the units' token of a simulated line. */
export const CHECK_ROLES = ["root", "factory-ca", "allocation-signer", "station", "unit-token"] as const;
export type CheckRole = (typeof CHECK_ROLES)[number];

const CONFIG_ROLE: Record<Exclude<CheckRole, "unit-token">, KeyRole> = {
  root: "root",
  "factory-ca": "factoryCa",
  "allocation-signer": "allocationSigner",
  station: "station",
};

/** One role's result: where its key is, how it signed, and how long the HSM took; `error` when it failed. */
export interface RoleCheck {
  role: CheckRole;
  ok: boolean;
  /** The key's URI without its pin-source; absent when the config's URI does not parse. */
  uri?: string;
  token?: string;
  /** The key's label (CKA_LABEL); absent for the units' token, which holds no fixed key. */
  key?: string;
  algorithm?: string;
  mechanism?: string;
  /** "sign" for a key; "login" for the units' token. */
  operation: "sign" | "login";
  /** Logging in and finding the key, in ms. */
  openMs?: number;
  /** The one sign (or, for the units' token, the login), in ms. */
  roundTripMs?: number;
  error?: WireError;
}

export interface CheckReport {
  module: string;
  ok: boolean;
  roles: RoleCheck[];
}

/** Signed by each key once; fixed, so a trace of two checks compares. */
const TEST_MESSAGE = Buffer.from("idmint hsm check: a test signature, never used for anything");

const ms = (since: number) => Math.round((performance.now() - since) * 100) / 100;

/** The roles a check covers: those asked for, in the config's order, else all the home has. */
function rolesToCheck(config: IdmintConfig, asked: readonly CheckRole[]): CheckRole[] {
  const present = CHECK_ROLES.filter((r) => r !== "unit-token" || config.simulator?.unitTokenUri !== undefined);
  if (asked.length === 0) return present;
  if (asked.includes("unit-token") && !present.includes("unit-token")) {
    throw new CoreError("OPTION_INVALID", "--role unit-token: this home has no units' token (simulator.unitTokenUri in idmint.json); leave that role out");
  }
  return present.filter((r) => asked.includes(r));
}

function uriOf(config: IdmintConfig, role: CheckRole): string {
  return role === "unit-token" ? config.simulator!.unitTokenUri : config.keys[CONFIG_ROLE[role]];
}

/** One role on an open HSM; every failure is the role's result, never thrown, so the next role is still tried. */
async function checkRole(hsm: Hsm | WireError, role: CheckRole, uriText: string): Promise<RoleCheck> {
  const result: RoleCheck = { role, ok: false, operation: role === "unit-token" ? "login" : "sign" };
  try {
    const uri = parsePkcs11Uri(uriText);
    result.uri = formatPkcs11Uri({ ...uri, pinSource: undefined });
    result.token = uri.token ?? `serial ${uri.serial}`;
    if (role !== "unit-token") result.key = uri.object;
    if (!(hsm instanceof Hsm)) return { ...result, error: hsm };
    if (role === "unit-token") {
      const started = performance.now();
      hsm.openToken(uriText);
      return { ...result, ok: true, roundTripMs: ms(started) };
    }
    const opened = performance.now();
    const signer = hsm.signer(uriText);
    result.openMs = ms(opened);
    result.algorithm = signer.algorithm;
    result.mechanism = signMechanism(signer.algorithm).name;
    const started = performance.now();
    const signature = await signer.sign(TEST_MESSAGE);
    result.roundTripMs = ms(started);
    const key = createPublicKey({ key: Buffer.from(signer.publicKeySpki), format: "der", type: "spki" });
    const hash = signer.hash === "SHA-384" ? "sha384" : "sha256";
    if (!verify(hash, TEST_MESSAGE, isEc(signer.algorithm) ? { key, dsaEncoding: "ieee-p1363" } : key, signature)) {
      throw new HsmError("SIGNATURE_MISMATCH", `the ${role} key's signature does not verify against its public key in token ${result.token}: the token's key pair is inconsistent; restore the key before the line runs`);
    }
    return { ...result, ok: true };
  } catch (e) {
    return { ...result, error: toWireError(e) };
  }
}

/**
 * `idmint hsm check`: opens each role's key of a home, signs a fixed message once with it
 * and verifies the signature on the host, timing the sign; the units' token is logged in to.
 * Every role is tried whatever the others did; a module that does not open fails them all.
 * Every session is closed before it returns.
 */
export async function checkHsm(config: IdmintConfig, options: HsmOptions, asked: readonly CheckRole[] = []): Promise<CheckReport> {
  const roles = rolesToCheck(config, asked);
  let hsm: Hsm | WireError;
  try {
    hsm = Hsm.open(options);
  } catch (e) {
    hsm = toWireError(e);
  }
  try {
    const results: RoleCheck[] = [];
    for (const role of roles) results.push(await checkRole(hsm, role, uriOf(config, role)));
    return { module: options.module, ok: results.every((r) => r.ok), roles: results };
  } finally {
    if (hsm instanceof Hsm) hsm.close();
  }
}
