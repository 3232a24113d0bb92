import pkcs11js from "pkcs11js";
import { pkcs11Step } from "../errors.js";
import type { KeyAlgorithm } from "../signer.js";
import { formatPkcs11Uri, parsePkcs11Uri } from "../uri.js";
import { findObjects } from "./objects.js";
import { readPublicKey } from "./public-key.js";
import type { Connection, Handle } from "./session.js";

export interface KeyInfo {
  token: string;
  label: string;
  /** CKA_ID in hex. */
  id: string;
  algorithm: KeyAlgorithm | "unknown";
  sensitive: boolean;
  extractable: boolean;
  uri: string;
}

/** The private keys in the token a URI names, with the attributes that matter for custody. */
export function listKeys(conn: Connection, uriText: string): KeyInfo[] {
  const uri = parsePkcs11Uri(uriText);
  const login = conn.login(uri);
  const p11 = conn.p11;
  const s = login.session;
  return pkcs11Step(`listing the keys of token ${login.label}`, () => {
    const handles: Handle[] = [];
    p11.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }]);
    try {
      for (let h = p11.C_FindObjects(s, 64); h.length > 0; h = p11.C_FindObjects(s, 64)) handles.push(...h);
    } finally {
      p11.C_FindObjectsFinal(s);
    }
    return handles.map((h) => {
      const [label, id, sensitive, extractable] = p11.C_GetAttributeValue(s, h, [
        { type: pkcs11js.CKA_LABEL },
        { type: pkcs11js.CKA_ID },
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
      ]);
      const labelText = (label!.value as Buffer).toString("utf8");
      const idBytes = id!.value as Buffer;
      let algorithm: KeyInfo["algorithm"] = "unknown";
      const pub = findObjects(p11, s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_ID, value: idBytes },
      ]);
      if (pub.length === 1) {
        try {
          algorithm = readPublicKey(p11, s, pub[0]!).algorithm;
        } catch {
          algorithm = "unknown";
        }
      }
      return {
        token: login.label,
        label: labelText,
        id: idBytes.toString("hex"),
        algorithm,
        sensitive: (sensitive!.value as Buffer)[0] === 1,
        extractable: (extractable!.value as Buffer)[0] === 1,
        uri: formatPkcs11Uri({ token: login.label, object: labelText, id: new Uint8Array(idBytes), type: "private" }),
      };
    });
  });
}
