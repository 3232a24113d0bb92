import pkcs11js from "pkcs11js";
import { existsSync } from "node:fs";
import { HsmError, ckr, pkcs11Step } from "../errors.js";
import { findTokenSlot, findTokenSlotToLogIn } from "./objects.js";

/** Where Debian and other distributions put SoftHSM2's module; found, not assumed. */
const SOFTHSM_CANDIDATES = [
  "/usr/lib/softhsm/libsofthsm2.so",
  "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/local/lib/softhsm/libsofthsm2.so",
  "/usr/lib64/pkcs11/libsofthsm2.so",
];

export function findSoftHsmModule(): string {
  const env = process.env.IDMINT_PKCS11_MODULE;
  if (env) return env;
  const found = SOFTHSM_CANDIDATES.find((p) => existsSync(p));
  if (!found) {
    throw new HsmError(
      "MODULE_NOT_FOUND",
      "SoftHSM2 is not installed (no libsofthsm2.so found): run `bash softhsm-config/ensure-deps.sh` as root, or set IDMINT_PKCS11_MODULE",
    );
  }
  return found;
}

/**
 * One loaded PKCS#11 module. A module is initialised once per process (PKCS#11 §5.4:
 * a second C_Initialize fails), and finalised only by whoever initialised it, so a
 * module some other code in the process already uses is left running.
 */
export class Pkcs11Module {
  private static readonly loaded = new Map<string, Pkcs11Module>();

  readonly p11: pkcs11js.PKCS11;
  readonly path: string;
  private readonly ownsInit: boolean;
  private users = 0;

  private constructor(path: string, p11: pkcs11js.PKCS11, ownsInit: boolean) {
    this.path = path;
    this.p11 = p11;
    this.ownsInit = ownsInit;
  }

  static isLoaded(path: string): boolean {
    return Pkcs11Module.loaded.has(path);
  }

  static acquire(path: string): Pkcs11Module {
    let m = Pkcs11Module.loaded.get(path);
    if (!m) {
      if (!existsSync(path)) {
        throw new HsmError(
          "MODULE_NOT_FOUND",
          `PKCS#11 module ${path} does not exist: install it (SoftHSM2: \`bash softhsm-config/ensure-deps.sh\`) or fix hsm.module in idmint.json`,
        );
      }
      const p11 = new pkcs11js.PKCS11();
      try {
        p11.load(path);
      } catch (e) {
        throw new HsmError("MODULE_LOAD", `cannot load PKCS#11 module ${path} (${(e as Error).message.split("\n")[0]}): check it is a PKCS#11 library for this machine`, { cause: e });
      }
      let owns = true;
      try {
        // Without OS locking two sessions used from libuv callbacks crashed SoftHSM (STACK.md).
        p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
      } catch (e) {
        const r = ckr(e)?.name;
        if (r !== "CKR_CRYPTOKI_ALREADY_INITIALIZED") {
          // A module that cannot start is not left loaded.
          p11.close();
          // A network HSM's client (p11-kit-client.so) whose server accepts and hangs up fails here with a device error.
          const fix = r === "CKR_DEVICE_ERROR" || r === "CKR_DEVICE_REMOVED" ? "the HSM behind it did not answer: check that it (or the p11-kit server P11_KIT_SERVER_ADDRESS names) is up and reachable" : "check its configuration (SOFTHSM2_CONF for SoftHSM)";
          throw new HsmError("MODULE_LOAD", `cannot initialise PKCS#11 module ${path} (${r ?? (e as Error).message}): ${fix}`, { cause: e });
        }
        owns = false;
      }
      m = new Pkcs11Module(path, p11, owns);
      Pkcs11Module.loaded.set(path, m);
    }
    m.users++;
    return m;
  }

  /** Drops one user; the last one finalises the module if this process initialised it. Idempotent per user. */
  release(): void {
    if (this.users === 0) return;
    this.users--;
    if (this.users > 0) return;
    Pkcs11Module.loaded.delete(this.path);
    if (this.ownsInit) {
      try {
        this.p11.C_Finalize();
      } catch {
        // Finalising is best effort: the process is done with the module either way.
      }
    }
    try {
      this.p11.close();
    } catch {
      // As above.
    }
  }

  /** SoftHSM itself (not a client in front of it), by what the module says of its maker. */
  get isSoftHsm(): boolean {
    return pkcs11Step("asking the module what it is", () => this.p11.C_GetInfo().manufacturerID.trim() === "SoftHSM");
  }

  /** Slots whose token carries this label (tokens are chosen by label or serial, never slot index). */
  findSlot(selector: { label?: string; serial?: string }): { slot: Buffer; label: string; serial: string; flags: number } | undefined {
    return pkcs11Step(`looking for token ${selector.label ?? `serial ${selector.serial}`}`, () => findTokenSlot(this.p11, selector));
  }

  /** findSlot for a login: a token SoftHSM2 hid for a moment is looked for again (findTokenSlotToLogIn). */
  findSlotToLogIn(selector: { label?: string; serial?: string }): ReturnType<Pkcs11Module["findSlot"]> {
    return pkcs11Step(`looking for token ${selector.label ?? `serial ${selector.serial}`}`, () => findTokenSlotToLogIn(this.p11, selector));
  }

  tokens(): Array<{ label: string; serial: string; initialized: boolean; flags: number; model: string; manufacturer: string }> {
    return pkcs11Step("listing the tokens", () =>
      this.p11.C_GetSlotList(true).map((slot) => {
        const info = this.p11.C_GetTokenInfo(slot);
        return {
          label: info.label.trim(),
          serial: info.serialNumber.trim(),
          initialized: (info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0,
          flags: info.flags,
          model: info.model.trim(),
          manufacturer: info.manufacturerID.trim(),
        };
      }),
    );
  }
}
