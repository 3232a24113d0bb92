import pkcs11js from "pkcs11js";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { DEFAULT_HW_TYPE_OID, Home, writeFileAtomic, type IdmintConfig, type KeyRole } from "../core/index.js";
import { HsmError, pkcs11Step } from "./errors.js";
import { Pkcs11Module, findSoftHsmModule } from "./pkcs11/module.js";
import { formatPkcs11Uri } from "./uri.js";

/** Where each role's key lives in the embedded default: one small token per role (lookups slow down as tokens grow). */
export const EMBEDDED_KEYS: Record<KeyRole, { token: string; object: string }> = {
  root: { token: "vendor-root", object: "vendor-root-key" },
  factoryCa: { token: "factory-ca", object: "factory-ca-key" },
  allocationSigner: { token: "allocation-signer", object: "allocation-signer-key" },
  station: { token: "station", object: "station-key" },
};

/** The token that plays the simulated units' secure elements; not a vendor key role. */
export const EMBEDDED_UNIT_TOKEN = "unit-se";

function readTemplate(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, "softhsm-config", "softhsm2.conf.template");
    if (existsSync(candidate)) {
      try {
        return readFileSync(candidate, "utf8");
      } catch (e) {
        throw new HsmError("INSTALL_BROKEN", `cannot read ${candidate} (${(e as NodeJS.ErrnoException).code}): reinstall idmint`, { cause: e });
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new HsmError("INSTALL_BROKEN", "softhsm-config/softhsm2.conf.template is missing from the idmint installation: reinstall idmint");
    dir = up;
  }
}

/** A file step of `hsm init`: the file system's refusal is the home's problem, in one line. */
function homeStep(path: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new HsmError("HOME_UNWRITABLE", `cannot create ${path} (${why}): give a --home where you may create directories, or free some disk space`, { cause: e });
  }
}

export interface EmbeddedInitResult {
  module: string;
  softhsmConf: string;
  tokens: string[];
}

/**
 * `idmint hsm init`: a private SoftHSM2 configuration and one initialised token per key
 * role under the home, with random PINs in 0600 files. Nothing global is touched; on any
 * failure the half-made HSM directory is removed again.
 */
export function initEmbeddedHsm(home: Home, options: { organization?: string } = {}): EmbeddedInitResult {
  if (home.hasConfig()) {
    throw new HsmError("TOKEN_EXISTS", `${home.root} is already initialised (${home.configPath} exists): use it, or pick a new --home`);
  }
  if (existsSync(home.hsmDir)) {
    throw new HsmError("TOKEN_EXISTS", `${home.hsmDir} already exists without an idmint.json: remove it or pick a new --home`);
  }
  const modulePath = findSoftHsmModule();
  if (!existsSync(modulePath)) {
    throw new HsmError("MODULE_NOT_FOUND", `PKCS#11 module ${modulePath} does not exist: install SoftHSM2 or fix IDMINT_PKCS11_MODULE`);
  }
  const createdHome = !existsSync(home.root);
  try {
    homeStep(home.tokenDir, () => mkdirSync(home.tokenDir, { recursive: true, mode: 0o700 }));
    homeStep(home.pinDir, () => mkdirSync(home.pinDir, { recursive: true, mode: 0o700 }));
    const template = readTemplate();
    homeStep(home.softhsmConfPath, () => writeFileAtomic(home.softhsmConfPath, template.replace("{{TOKEN_DIR}}", home.tokenDir), 0o600));
    process.env.SOFTHSM2_CONF = home.softhsmConfPath;

    const module = Pkcs11Module.acquire(modulePath);
    const keys = {} as Record<KeyRole, string>;
    let unitTokenUri = "";
    try {
      const tokens = [...(Object.entries(EMBEDDED_KEYS) as Array<[KeyRole | "unit", { token: string; object: string }]>), ["unit", { token: EMBEDDED_UNIT_TOKEN, object: "" }] as const];
      for (const [role, { token, object }] of tokens) {
        const userPin = randomBytes(16).toString("hex");
        const soPin = randomBytes(16).toString("hex");
        const pinFile = join(home.pinDir, `${token}.pin`);
        homeStep(pinFile, () => writeFileAtomic(pinFile, userPin + "\n", 0o600));
        const soPinFile = join(home.pinDir, `${token}.so-pin`);
        homeStep(soPinFile, () => writeFileAtomic(soPinFile, soPin + "\n", 0o600));
        pkcs11Step(`initialising token ${token}`, () => initToken(module.p11, token, soPin, userPin));
        if (role === "unit") unitTokenUri = formatPkcs11Uri({ token, pinSource: `file:${pinFile}` });
        else keys[role] = formatPkcs11Uri({ token, object, type: "private", pinSource: `file:${pinFile}` });
      }
    } finally {
      module.release();
    }
    const config: IdmintConfig = {
      version: 1,
      hsm: { module: modulePath, softhsmConf: home.softhsmConfPath },
      keys,
      station: { id: "station-1" },
      simulator: { unitTokenUri },
      profile: { organization: options.organization ?? "Example Vendor", hwTypeOid: DEFAULT_HW_TYPE_OID },
    };
    home.writeConfig(config);
    return { module: modulePath, softhsmConf: home.softhsmConfPath, tokens: [...Object.values(EMBEDDED_KEYS).map((k) => k.token), EMBEDDED_UNIT_TOKEN] };
  } catch (e) {
    // existsSync first: under a path that is not a directory, rmSync fails (ENOTDIR) and would hide `e`.
    if (existsSync(home.hsmDir)) rmSync(home.hsmDir, { recursive: true, force: true });
    if (createdHome && existsSync(home.root)) rmSync(home.root, { recursive: true, force: true });
    throw e;
  }
}

/** PKCS#11 §5.6: a token in the first free slot, its SO PIN set by C_InitToken and its user PIN by the SO. */
function initToken(p11: pkcs11js.PKCS11, token: string, soPin: string, userPin: string): void {
  const free = p11.C_GetSlotList(true).find((s) => (p11.C_GetTokenInfo(s).flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0);
  if (!free) throw new HsmError("PKCS11", "SoftHSM offers no free slot for a new token: check its configuration");
  p11.C_InitToken(free, soPin, token.padEnd(32, " "));
  const session = p11.C_OpenSession(free, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    p11.C_Login(session, pkcs11js.CKU_SO, soPin);
    p11.C_InitPIN(session, userPin);
    p11.C_Logout(session);
  } finally {
    p11.C_CloseSession(session);
  }
}
