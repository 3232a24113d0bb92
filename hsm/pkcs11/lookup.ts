import pkcs11js from "pkcs11js";
import { HsmError, pkcs11Failure } from "../errors.js";
import type { KeyAlgorithm } from "../signer.js";
import { describeKey, formatPkcs11Uri, parsePkcs11Uri, type Pkcs11Uri } from "../uri.js";
import { readPublicKey } from "./public-key.js";
import { findObjects, keyTemplate } from "./objects.js";
import type { Connection, Handle, TokenLogin } from "./session.js";

export interface KeyPair {
  privateKey: Handle;
  publicKey: Handle;
}

/** A key pair found by URI in a logged-in token, with what its public key says. */
export interface FoundKey {
  uri: Pkcs11Uri;
  login: TokenLogin;
  pair: KeyPair;
  algorithm: KeyAlgorithm;
  spki: Uint8Array<ArrayBuffer>;
}

/** The private key a URI names and the public key with its CKA_ID; undefined when there is no such private key. */
export function findKeyPair(p11: pkcs11js.PKCS11, uri: Pkcs11Uri, session: Handle): KeyPair | undefined {
  if (uri.object === undefined && uri.id === undefined) {
    throw new HsmError("URI_INVALID", `key URI ${formatPkcs11Uri({ ...uri, pinSource: undefined })} names no key: add object=LABEL or id=`);
  }
  const privs = findObjects(p11, session, keyTemplate(uri, pkcs11js.CKO_PRIVATE_KEY));
  if (privs.length === 0) return undefined;
  if (privs.length > 1) {
    throw new HsmError("URI_INVALID", `${privs.length} private keys match ${describeKey(uri)}: add id= to the key URI to pick one`);
  }
  const privateKey = privs[0]!;
  const [idAttr] = p11.C_GetAttributeValue(session, privateKey, [{ type: pkcs11js.CKA_ID }]);
  const pubs = findObjects(p11, session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
    { type: pkcs11js.CKA_ID, value: idAttr!.value as Buffer },
  ]);
  if (pubs.length !== 1) {
    throw new HsmError("KEY_NOT_FOUND", `the public key of ${describeKey(uri)} is missing from the token (need one public key object with the same CKA_ID): restore it`);
  }
  return { privateKey, publicKey: pubs[0]! };
}

/** An existing key pair by URI, logged in; a missing key is an error (`missing` says what to do). */
export function existingKey(conn: Connection, uriText: string, missing: string): FoundKey {
  const uri = parsePkcs11Uri(uriText);
  const login = conn.login(uri);
  try {
    const pair = findKeyPair(conn.p11, uri, login.session);
    if (!pair) throw new HsmError("KEY_NOT_FOUND", `no private key ${describeKey(uri)}: ${missing}`);
    return { uri, login, pair, ...readPublicKey(conn.p11, login.session, pair.publicKey) };
  } catch (e) {
    throw pkcs11Failure(`looking up ${describeKey(uri)}`, e);
  }
}
