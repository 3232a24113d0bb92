/**
 * A PKCS#11 probe of the HSM's tokens for the station benchmark's long run: their token and
 * session objects and the sessions this process has open on them.
 */
import pkcs11js from "pkcs11js";
import type { IdmintConfig } from "../core/index.js";
import { Pkcs11Module, ckr, parsePkcs11Uri, readPin } from "../hsm/index.js";

// CK_ULONG values at or above this are CK_UNAVAILABLE_INFORMATION / CK_EFFECTIVELY_INFINITE.
const UNAVAILABLE = 2 ** 32 - 2;
// SoftHSM hands out session handles 1, 2, ... (the lowest free one first), so its open sessions
// are found by asking C_GetSessionInfo about handles from 1 up to well past the highest open one.
const SESSION_PROBE_GAP = 64;
const SESSION_PROBE_LIMIT = 1_000_000;

export interface TokenCounts {
  tokenObjects: number;
  sessionObjects: number;
  /** Sessions this process has open on the token, found by C_GetSessionInfo over SoftHSM's handles. */
  openSessions: number;
  /** C_GetTokenInfo's ulSessionCount; undefined when the module does not say (SoftHSM does not). */
  reportedSessions: number | undefined;
}

/**
 * Looks into tokens through a module user and a session of its own (logged in with the token's
 * PIN from its pin file), so it sees the same objects and sessions as the line's Hsm in this
 * process, session objects included, without reaching into Hsm's private state.
 */
export class TokenInspector {
  private readonly module: Pkcs11Module;
  private readonly sessions = new Map<string, { slot: Buffer; session: Buffer }>();

  constructor(config: IdmintConfig, keyUris: Record<string, string>) {
    if (config.hsm.softhsmConf) process.env.SOFTHSM2_CONF = config.hsm.softhsmConf;
    this.module = Pkcs11Module.acquire(config.hsm.module);
    try {
      for (const [name, uriText] of Object.entries(keyUris)) {
        const uri = parsePkcs11Uri(uriText);
        const found = this.module.findSlot({ label: uri.token });
        if (!found) throw new Error(`no token ${uri.token} in ${config.hsm.module}`);
        const session = this.p11.C_OpenSession(found.slot, pkcs11js.CKF_SERIAL_SESSION);
        this.sessions.set(name, { slot: found.slot, session });
        try {
          this.p11.C_Login(session, pkcs11js.CKU_USER, readPin(uri.pinSource, name));
        } catch (e) {
          // Another Hsm in this process logged in first: the login is per token, so it counts.
          if (ckr(e)?.name !== "CKR_USER_ALREADY_LOGGED_IN") throw e;
        }
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private get p11(): pkcs11js.PKCS11 {
    return this.module.p11;
  }

  /** The slots that have any session open in this process, by the handles SoftHSM gives out (1, 2, ...). */
  private openSessionSlots(): string[] {
    const slots: string[] = [];
    const handle = Buffer.alloc(8);
    for (let h = 1, highest = 0; h <= SESSION_PROBE_LIMIT && h <= highest + SESSION_PROBE_GAP; h++) {
      handle.writeBigUInt64LE(BigInt(h));
      try {
        slots.push(this.p11.C_GetSessionInfo(handle).slotID.toString("hex"));
        highest = h;
      } catch {
        // CKR_SESSION_HANDLE_INVALID: a free handle.
      }
    }
    return slots;
  }

  count(name: string): TokenCounts {
    const s = this.sessions.get(name);
    if (!s) throw new Error(`no token ${name} in this inspector`);
    let tokenObjects = 0;
    let sessionObjects = 0;
    this.p11.C_FindObjectsInit(s.session, []);
    try {
      for (let hs = this.p11.C_FindObjects(s.session, 64); hs.length > 0; hs = this.p11.C_FindObjects(s.session, 64)) {
        for (const h of hs) {
          const [attr] = this.p11.C_GetAttributeValue(s.session, h, [{ type: pkcs11js.CKA_TOKEN }]);
          if ((attr!.value as Buffer)[0] === 1) tokenObjects++;
          else sessionObjects++;
        }
      }
    } finally {
      this.p11.C_FindObjectsFinal(s.session);
    }
    const slotHex = s.slot.toString("hex");
    // Our own inspection session is not the line's: leave it out.
    const openSessions = this.openSessionSlots().filter((slot) => slot === slotHex).length - 1;
    const reported = this.p11.C_GetTokenInfo(s.slot).sessionCount;
    return { tokenObjects, sessionObjects, openSessions, reportedSessions: reported >= UNAVAILABLE ? undefined : reported - 1 };
  }

  close(): void {
    for (const { session } of this.sessions.values()) {
      try {
        this.p11.C_CloseSession(session);
      } catch {
        // Closed is closed.
      }
    }
    this.sessions.clear();
    this.module.release();
  }
}
