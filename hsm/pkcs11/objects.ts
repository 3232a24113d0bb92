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
