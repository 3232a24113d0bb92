import pkcs11js from "pkcs11js";
import type { Pkcs11Uri } from "../uri.js";

type Handle = Buffer;

/** The first slot whose token carries this label and/or serial (tokens are chosen by label or serial, never slot index). */
export function findTokenSlot(p11: pkcs11js.PKCS11, selector: { label?: string; serial?: string }): { slot: Handle; label: string; serial: string; flags: number } | undefined {
  for (const slot of p11.C_GetSlotList(true)) {
    const info = p11.C_GetTokenInfo(slot);
    const label = info.label.trim();
    const serial = info.serialNumber.trim();
    if (selector.label !== undefined && selector.label !== label) continue;
    if (selector.serial !== undefined && selector.serial !== serial) continue;
    return { slot, label, serial, flags: info.flags };
  }
  return undefined;
}

// How often, and how long apart, a token missing from the slot list is looked for again before a login (50, 100, 150 ms).
const TOKEN_LOOKUPS = 3;
const TOKEN_LOOKUP_PAUSE_MS = 50;
// A synchronous pause: logins are synchronous, and this is their failure path only.
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * findTokenSlot for a login. SoftHSM2 rewrites a token's file when another process logs in to
 * it, and a process listing the slots meanwhile misses that token (40 of 2,444 listings beside a
 * login loop): two lines sharing one token start together. Looks again, briefly, while the
 * module shows other tokens (none at all is an HSM out of reach, which the callers wait out).
 */
export function findTokenSlotToLogIn(p11: pkcs11js.PKCS11, selector: { label?: string; serial?: string }): ReturnType<typeof findTokenSlot> {
  let found = findTokenSlot(p11, selector);
  for (let attempt = 1; !found && attempt <= TOKEN_LOOKUPS && p11.C_GetSlotList(true).length > 0; attempt++) {
    Atomics.wait(PAUSE, 0, 0, TOKEN_LOOKUP_PAUSE_MS * attempt);
    found = findTokenSlot(p11, selector);
  }
  return found;
}

/** The objects matching a template (at most `max`); the search is finished on every path. */
export function findObjects(p11: pkcs11js.PKCS11, session: Handle, template: pkcs11js.Template, max = 16): Handle[] {
  p11.C_FindObjectsInit(session, template);
  try {
    return p11.C_FindObjects(session, max);
  } finally {
    p11.C_FindObjectsFinal(session);
  }
}

/** RFC 7512 §2.3: object= is CKA_LABEL and id= is CKA_ID. */
export function keyTemplate(uri: Pkcs11Uri, cls: number): pkcs11js.Template {
  const t: pkcs11js.Template = [{ type: pkcs11js.CKA_CLASS, value: cls }];
  if (uri.object !== undefined) t.push({ type: pkcs11js.CKA_LABEL, value: uri.object });
  if (uri.id !== undefined) t.push({ type: pkcs11js.CKA_ID, value: Buffer.from(uri.id) });
  return t;
}
