import pkcs11js from "pkcs11js";
import { HsmError, ckr, pkcs11Failure } from "../errors.js";
import type { RsaPadding } from "../decrypter.js";
import { describeKey } from "../uri.js";
import { existingKey } from "./lookup.js";
import { rsaBytes } from "./public-key.js";
import type { Connection } from "./session.js";

/** PKCS#11 §2.1.8: the OAEP label is given as data (here empty); pkcs11js has no constant for it. */
const CKZ_DATA_SPECIFIED = 1;

/**
 * RSA decryption inside the token (C_DecryptInit/C_Decrypt, PKCS#11 mechanisms §2.1):
 * CKM_RSA_PKCS (PKCS #1 v1.5 type 2, e.g. CMS rsaEncryption key transport) or
 * CKM_RSA_PKCS_OAEP with SHA-1, MGF1-SHA-1 and the empty label (SoftHSM 2.6 offers no
 * other OAEP hash). Returns the message, or undefined when the ciphertext does not
 * decrypt under this key (bad padding, which is what a ciphertext for another key gives:
 * CKR_ENCRYPTED_DATA_INVALID, or CKR_GENERAL_ERROR from SoftHSM 2.6.1; or not the
 * modulus's length: CKR_ENCRYPTED_DATA_LEN_RANGE). The private key never leaves the token;
 * it must have been made with `decrypt: true`. A session per call, closed before returning,
 * so a failed operation never stays active on a session something else uses.
 */
export function decryptRsa(conn: Connection, uriText: string, ciphertext: Uint8Array, padding: RsaPadding): Uint8Array | undefined {
  const { uri, login, pair, algorithm } = existingKey(conn, uriText, "check the key URI");
  if (algorithm !== "RSA-2048" && algorithm !== "RSA-3072") {
    throw new HsmError("UNSUPPORTED_ALGORITHM", `${describeKey(uri)} is an ${algorithm} key: RSA decryption needs an RSA key`);
  }
  const mechanism: pkcs11js.Mechanism =
    padding === "pkcs1"
      ? { mechanism: pkcs11js.CKM_RSA_PKCS }
      : {
          mechanism: pkcs11js.CKM_RSA_PKCS_OAEP,
          parameter: { type: pkcs11js.CK_PARAMS_RSA_OAEP, hashAlg: pkcs11js.CKM_SHA_1, mgf: pkcs11js.CKG_MGF1_SHA1, source: CKZ_DATA_SPECIFIED } as pkcs11js.RsaOAEP,
        };
  const out = Buffer.alloc(rsaBytes(algorithm));
  try {
    return conn.withSession(login.slot, (session) => {
      try {
        conn.p11.C_DecryptInit(session, mechanism, pair.privateKey);
      } catch (e) {
        const r = ckr(e);
        if (r?.name === "CKR_KEY_FUNCTION_NOT_PERMITTED" || r?.name === "CKR_KEY_TYPE_INCONSISTENT") {
          throw new HsmError("KEY_NOT_PERMITTED", `${describeKey(uri)} may not decrypt (CKA_DECRYPT is false, ${r.name}): it was made for signing only; a key that opens key transport must be made with decrypt allowed`, { cause: e });
        }
        if (r?.name === "CKR_MECHANISM_INVALID" || r?.name === "CKR_MECHANISM_PARAM_INVALID" || r?.name === "CKR_ARGUMENTS_BAD") {
          throw new HsmError("MECHANISM_UNSUPPORTED", `the token cannot decrypt with ${padding === "pkcs1" ? "CKM_RSA_PKCS" : "CKM_RSA_PKCS_OAEP (SHA-1)"} (${r.name})`, { cause: e });
        }
        throw pkcs11Failure(`decrypting with ${describeKey(uri)}`, e);
      }
      try {
        return new Uint8Array(conn.p11.C_Decrypt(session, Buffer.from(ciphertext), out));
      } catch (e) {
        const r = ckr(e);
        // PKCS#11 says CKR_ENCRYPTED_DATA_INVALID for a bad block; SoftHSM 2.6.1 says
        // CKR_GENERAL_ERROR for any failure of the RSA operation itself (bad padding, or a
        // ciphertext not below the modulus). After C_DecryptInit accepted key and mechanism,
        // either means: this key does not open this ciphertext.
        if (r?.name === "CKR_ENCRYPTED_DATA_INVALID" || r?.name === "CKR_ENCRYPTED_DATA_LEN_RANGE" || r?.name === "CKR_GENERAL_ERROR") return undefined;
        throw pkcs11Failure(`decrypting with ${describeKey(uri)}`, e);
      }
    });
  } finally {
    out.fill(0);
  }
}
