import pkcs11js from "pkcs11js";
import type { Pkcs11Uri } from "../uri.js";

type Handle = Buffer;

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
