import pkcs11js from "pkcs11js";
import * as asn1js from "asn1js";
import { randomBytes } from "node:crypto";
import { HsmError, pkcs11Failure, pkcs11Step } from "../errors.js";
import type { CreateKeyOptions } from "../key-manager.js";
import { KEY_ALGORITHMS, type KeyAlgorithm, type Signer } from "../signer.js";
import { describeKey, parsePkcs11Uri } from "../uri.js";
import { findKeyPair } from "./lookup.js";
import { findObjects, keyTemplate } from "./objects.js";
import { CURVES, readPublicKey } from "./public-key.js";
import type { Connection, Handle } from "./session.js";
import { pkcs11Signer } from "./signer.js";

/** Generates a key pair as token objects, sensitive and never extractable; refuses to replace one. */
export function createKey(conn: Connection, uriText: string, algorithm: KeyAlgorithm, options: CreateKeyOptions): Signer {
  const uri = parsePkcs11Uri(uriText);
  if (uri.object === undefined) throw new HsmError("URI_INVALID", `to create a key the URI needs object=LABEL: ${uriText.split("?")[0]}`);
  const derive = options.derive === true;
  if (derive && !algorithm.startsWith("EC-")) {
    throw new HsmError("UNSUPPORTED_ALGORITHM", `only EC keys can be made for key agreement (derive), not ${algorithm}`);
  }
  const decrypt = options.decrypt === true;
  if (decrypt && !algorithm.startsWith("RSA-")) {
    throw new HsmError("UNSUPPORTED_ALGORITHM", `only RSA keys can be made for decryption (decrypt), not ${algorithm}`);
  }
  const login = conn.login(uri);
  const p11 = conn.p11;
  const taken = pkcs11Step(`looking up ${describeKey(uri)}`, () => findObjects(p11, login.session, keyTemplate({ object: uri.object }, pkcs11js.CKO_PRIVATE_KEY)));
  if (taken.length > 0) {
    throw new HsmError("KEY_EXISTS", `a key ${describeKey(uri)} already exists: idmint never replaces a key; remove it by hand or choose another label`);
  }
  const id = uri.id ? Buffer.from(uri.id) : randomBytes(16);
  const common = [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_LABEL, value: uri.object },
    { type: pkcs11js.CKA_ID, value: id },
  ];
  const priv: pkcs11js.Template = [
    ...common,
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: true },
    // A signing key does nothing else: SoftHSM would otherwise default these to true.
    // `derive` adds ECDH (CKM_ECDH1_DERIVE, see ecdh.ts) for keys that must also agree keys;
    // `decrypt` adds RSA decryption (see decrypt.ts) for keys that must also open key transport.
    { type: pkcs11js.CKA_DECRYPT, value: decrypt },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_DERIVE, value: derive },
  ];
  const pub: pkcs11js.Template = [...common, { type: pkcs11js.CKA_PRIVATE, value: false }, { type: pkcs11js.CKA_VERIFY, value: true }];
  let mech: pkcs11js.Mechanism;
  if (algorithm === "EC-P256" || algorithm === "EC-P384") {
    mech = { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN };
    pub.push({ type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(new asn1js.ObjectIdentifier({ value: CURVES[algorithm].oid }).toBER(false)) });
  } else if (algorithm === "RSA-2048" || algorithm === "RSA-3072") {
    mech = { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN };
    pub.push({ type: pkcs11js.CKA_MODULUS_BITS, value: Number(algorithm.slice(4)) }, { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) });
  } else {
    throw new HsmError("UNSUPPORTED_ALGORITHM", `key algorithm ${String(algorithm)} is not one of ${KEY_ALGORITHMS.join(", ")}`);
  }
  const pair = pkcs11Step(`generating ${algorithm} key ${describeKey(uri)}`, () => p11.C_GenerateKeyPair(login.session, mech, pub, priv));
  try {
    const made = readPublicKey(p11, login.session, pair.publicKey);
    return pkcs11Signer(conn, conn.signerSessions(login.slot), pair.privateKey, made.algorithm, made.spki);
  } catch (e) {
    // A key we cannot use must not stay behind to block the next attempt.
    destroyObjects(conn, login.session, [pair.privateKey, pair.publicKey]);
    throw pkcs11Failure(`reading the new key ${describeKey(uri)}`, e);
  }
}

/** Removes a key pair (used only to undo a ceremony that failed half-way); no such key is no error. */
export function destroyKey(conn: Connection, uriText: string): void {
  const uri = parsePkcs11Uri(uriText);
  const login = conn.login(uri);
  pkcs11Step(`removing ${describeKey(uri)}`, () => {
    const pair = findKeyPair(conn.p11, uri, login.session);
    if (!pair) return;
    conn.p11.C_DestroyObject(login.session, pair.privateKey);
    conn.p11.C_DestroyObject(login.session, pair.publicKey);
  });
}

/** Best effort: each object is tried even if one fails, and the caller's own error is the one to report. */
function destroyObjects(conn: Connection, session: Handle, objects: Handle[]): void {
  for (const o of objects) {
    try {
      conn.p11.C_DestroyObject(session, o);
    } catch {
      // The object stays; the error that led here says what went wrong.
    }
  }
}
