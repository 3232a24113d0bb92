import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CoreError } from "./errors.js";
import { writeFileAtomic } from "./files.js";

/** The roles whose keys idmint keeps in PKCS#11 tokens, each named by a PKCS#11 URI in the config. */
export const KEY_ROLES = ["root", "factoryCa", "allocationSigner", "station"] as const;
export type KeyRole = (typeof KEY_ROLES)[number];

export interface IdmintConfig {
  version: 1;
  hsm: {
    /** Path of the PKCS#11 module (shared library). */
    module: string;
    /** SoftHSM2 configuration for the embedded default; exported as SOFTHSM2_CONF before the module loads. */
    softhsmConf?: string;
    /** Sessions (signing threads) per key for `station run`; the line's slot count when absent, and on SoftHSM, signing in-process. */
    sessions?: number;
  };
  /** PKCS#11 URIs (RFC 7512) of each role's private key, with `pin-source` as a query attribute. */
  keys: Record<KeyRole, string> & {
    /** The MASA's voucher-signing key (RFC 8366), made by `ca init`, or by `ca masa` in a home made before it. */
    masa?: string;
  };
  station: { id: string };
  /** The embedded default's stand-in for the units' secure elements (`station run --sim --keystore pkcs11`). */
  simulator?: { unitTokenUri: string };
  /** The directory server's store: a postgres:// URL (so no password sits on a command line) or sqlite:PATH. */
  directory?: { store?: string };
  profile: {
    /** Subject O of the certificates idmint issues. */
    organization: string;
    /** hwType of the hardwareModuleName SAN (RFC 4108); a vendor uses an OID under its own arc. */
    hwTypeOid: string;
  };
}

/** Each session is a thread with its own PKCS#11 session; HSMs cap sessions per client far below this. */
export const MAX_HSM_SESSIONS = 256;

/** The documentation arc of RFC 5612 (IANA example enterprise 32473): a placeholder vendors replace. */
export const DEFAULT_HW_TYPE_OID = "1.3.6.1.4.1.32473.1.1";

/** Everything idmint keeps on disk lives under one directory; this names its parts. */
export class Home {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** `--home`, else `IDMINT_HOME`, else `./.idmint`. */
  static resolve(option?: string, env: NodeJS.ProcessEnv = process.env): Home {
    return new Home(option ?? env.IDMINT_HOME ?? ".idmint");
  }

  get configPath(): string {
    return join(this.root, "idmint.json");
  }
  get hsmDir(): string {
    return join(this.root, "hsm");
  }
  get softhsmConfPath(): string {
    return join(this.hsmDir, "softhsm2.conf");
  }
  get tokenDir(): string {
    return join(this.hsmDir, "tokens");
  }
  get pinDir(): string {
    return join(this.hsmDir, "pins");
  }
  get pkiDir(): string {
    return join(this.root, "pki");
  }
  get certsDir(): string {
    return join(this.root, "certs");
  }
  get unitsDir(): string {
    return join(this.root, "units");
  }
  get stationDbPath(): string {
    return join(this.root, "station.db");
  }
  pkiFile(name: "root" | "factory-ca" | "allocation-signer" | "station" | "masa"): string {
    return join(this.pkiDir, `${name}.pem`);
  }

  hasConfig(): boolean {
    return existsSync(this.configPath);
  }

  readConfig(): IdmintConfig {
    if (!this.hasConfig()) {
      throw new CoreError(
        "HOME_NOT_INITIALISED",
        `no idmint home at ${this.root}: run \`idmint hsm init --home ${this.root}\` first, or pass the right --home`,
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(this.configPath, "utf8"));
    } catch (e) {
      throw new CoreError("CONFIG_INVALID", `${this.configPath} is not valid JSON: fix or restore it`, { cause: e });
    }
    const c = parsed as Partial<IdmintConfig>;
    if (c.version !== 1 || !c.hsm?.module || !c.keys || !c.station?.id || !c.profile) {
      throw new CoreError("CONFIG_INVALID", `${this.configPath} is not an idmint version 1 config: fix or restore it`);
    }
    const sessions = c.hsm.sessions;
    if (sessions !== undefined && !(Number.isInteger(sessions) && sessions >= 1 && sessions <= MAX_HSM_SESSIONS)) {
      throw new CoreError("CONFIG_INVALID", `hsm.sessions in ${this.configPath} must be a whole number from 1 to ${MAX_HSM_SESSIONS}: fix it, or remove it to use one per slot`);
    }
    return c as IdmintConfig;
  }

  writeConfig(config: IdmintConfig): void {
    writeFileAtomic(this.configPath, JSON.stringify(config, null, 2) + "\n", 0o600);
  }
}
