import { constants, createPublicKey, diffieHellman, privateDecrypt, randomBytes, type KeyObject } from "node:crypto";
import { IdmintError } from "../core/index.js";
import type { Decrypter, KeyAgreement, RsaPadding } from "../hsm/index.js";
import { CmsError, invalid } from "./errors.js";
import type { KdfHash } from "./kdf.js";
import { CURVES, CURVE_BY_NAME } from "./oids.js";

/**
 * A unit's private key as decryption needs it, wherever it lives: ECDH for an EC key, RSA
 * decryption for an RSA key. Nothing else about the key is ever asked for.
 */
export type RecipientKey =
  | {
      type: "ec";
      /** OID of the key's named curve. */
      curveOid: string;
      /** Where the ECDH runs, for messages: "soft key" or "token". */
      where: string;
      /** Z, the x-coordinate of d·Q for the sender's point Q (SEC 1 §3.3.1; RFC 5753 §3.1.2 step 1). */
      ecdh(peerPoint: Uint8Array): Uint8Array;
    }
  | {
      type: "rsa";
      /** Where the RSA decryption runs, for messages: "soft key" or "token". */
      where: string;
      /** k, the length of the modulus in bytes: a ciphertext of any other length is not for this key. */
      modulusBytes: number;
      /**
       * RSAES-OAEP (RFC 8017 §7.1.2) with `hash`, MGF1 with the same hash and the empty label:
       * the message, or undefined when this key does not open the ciphertext. Throws when the
       * key's holder cannot do OAEP with that hash at all (a token: SoftHSM 2.6 has SHA-1 only).
       */
      decryptOaep(hash: KdfHash, ciphertext: Uint8Array): Uint8Array | undefined;
      /**
       * RSAES-PKCS1-v1_5 (RFC 8017 §7.2.2) of a k-byte ciphertext, with the RFC 3218 §2.3.2
       * countermeasure: a bad block, or a message that is not `length` bytes, gives `length`
       * random bytes instead, so a bad padding fails like a wrong key, at the content.
       */
      decryptPkcs1(ciphertext: Uint8Array, length: number): Uint8Array;
    };

/** A recipient key from a private key held in memory (a soft-keystore unit's key). */
export function softRecipientKey(privateKey: KeyObject): RecipientKey {
  if (privateKey.asymmetricKeyType === "rsa") {
    return {
      type: "rsa",
      where: "soft key",
      modulusBytes: Math.ceil((privateKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8),
      decryptOaep(hash, ciphertext) {
        try {
          return new Uint8Array(privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, ciphertext));
        } catch {
          return undefined;
        }
      },
      decryptPkcs1(ciphertext, length) {
        let block: Buffer;
        try {
          // Node refuses PKCS #1 v1.5 private decryption (CVE-2023-46809): do the raw RSA
          // operation and unpad here, without branching on where a bad block is bad.
          block = privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, ciphertext);
        } catch {
          return new Uint8Array(randomBytes(length));
        }
        const message = unpadPkcs1Type2(block, length);
        const cek = new Uint8Array(message ?? randomBytes(length));
        block.fill(0);
        return cek;
      },
    };
  }
  if (privateKey.asymmetricKeyType !== "ec") {
    throw new CmsError("KEY_UNSUPPORTED", `the unit's key is ${privateKey.asymmetricKeyType ?? "of an unknown type"}: only EC and RSA keys can decrypt`);
  }
  const curveOid = CURVE_BY_NAME[privateKey.asymmetricKeyDetails?.namedCurve ?? ""];
  if (!curveOid) throw new CmsError("KEY_UNSUPPORTED", `the unit's key is on curve ${privateKey.asymmetricKeyDetails?.namedCurve ?? "unknown"}: only P-256, P-384 and P-521 can decrypt`);
  const curve = CURVES[curveOid]!;
  return {
    type: "ec",
    curveOid,
    where: "soft key",
    ecdh(point) {
      return new Uint8Array(diffieHellman({ privateKey, publicKey: ecPublicKey(curve.name, point) }));
    },
  };
}

/**
 * A recipient key in a PKCS#11 token: ECDH (KeyAgreement) or RSA decryption (Decrypter)
 * runs in the token, the private key never leaves it.
 */
export function tokenRecipientKey(hsm: KeyAgreement & Decrypter, keyUri: string, spki: Uint8Array, unitName = "the unit"): RecipientKey {
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  if (key.asymmetricKeyType === "rsa") return tokenRsaRecipientKey(hsm, keyUri, key, unitName);
  if (key.asymmetricKeyType !== "ec") {
    throw new CmsError("KEY_UNSUPPORTED", `the unit's key in the token is ${key.asymmetricKeyType?.toUpperCase() ?? "of an unknown type"}: only EC and RSA keys can decrypt`);
  }
  const curveOid = CURVE_BY_NAME[key.asymmetricKeyDetails?.namedCurve ?? ""];
  if (!curveOid) throw new CmsError("KEY_UNSUPPORTED", `the unit's key in the token is on an unsupported curve`);
  return {
    type: "ec",
    curveOid,
    where: "token",
    ecdh(point) {
      try {
        return hsm.deriveEcdh(keyUri, point);
      } catch (e) {
        if (e instanceof IdmintError && e.code === "KEY_NOT_PERMITTED") {
          throw new CmsError("KEY_NOT_PERMITTED", `${unitName}'s key in the token may not derive (CKA_DERIVE is false: it was made before unit keys allowed ECDH), so it cannot decrypt: provision a new unit`, { cause: e });
        }
        throw e;
      }
    },
  };
}

function tokenRsaRecipientKey(hsm: Decrypter, keyUri: string, publicKey: KeyObject, unitName: string): RecipientKey {
  const decrypt = (ciphertext: Uint8Array, padding: RsaPadding): Uint8Array | undefined => {
    try {
      return hsm.decryptRsa(keyUri, ciphertext, padding);
    } catch (e) {
      if (e instanceof IdmintError && e.code === "KEY_NOT_PERMITTED") {
        throw new CmsError("KEY_NOT_PERMITTED", `${unitName}'s key in the token may not decrypt (CKA_DECRYPT is false: it was made before unit keys allowed decryption), so it cannot decrypt: provision a new unit`, { cause: e });
      }
      throw e;
    }
  };
  return {
    type: "rsa",
    where: "token",
    modulusBytes: Math.ceil((publicKey.asymmetricKeyDetails?.modulusLength ?? 0) / 8),
    decryptOaep(hash, ciphertext) {
      // SoftHSM 2.6 does CKM_RSA_PKCS_OAEP with SHA-1 only (MGF1-SHA-1, empty label).
      if (hash !== "sha1") {
        throw new CmsError(
          "CMS_UNSUPPORTED",
          `the input uses RSAES-OAEP with ${hash}, which ${unitName}'s token cannot decrypt (it does OAEP with SHA-1 only): encrypt with \`openssl cms -encrypt\` (PKCS #1 v1.5, its default) or with OAEP and SHA-1`,
        );
      }
      return decrypt(ciphertext, "oaep-sha1");
    },
    decryptPkcs1(ciphertext, length) {
      // The token unpads (CKM_RSA_PKCS) and fails on a bad block (decryptRsa gives undefined):
      // that, or a message of the wrong length, becomes a random
      // key as in the soft key's case (RFC 3218 §2.3.2), so it fails like a wrong key.
      const message = decrypt(ciphertext, "pkcs1");
      if (message !== undefined && message.length === length) return message;
      message?.fill(0);
      return new Uint8Array(randomBytes(length));
    },
  };
}

/** A P-256/384/521 public key from an uncompressed point; Node refuses points not on the curve. */
function ecPublicKey(curve: "P-256" | "P-384" | "P-521", point: Uint8Array): KeyObject {
  const fieldBytes = curve === "P-256" ? 32 : curve === "P-384" ? 48 : 66;
  const p = Buffer.from(point);
  if (p.length !== 1 + 2 * fieldBytes || p[0] !== 0x04) throw invalid(`the originator key is not an uncompressed ${curve} point`);
  return createPublicKey({
    key: { kty: "EC", crv: curve, x: p.subarray(1, 1 + fieldBytes).toString("base64url"), y: p.subarray(1 + fieldBytes).toString("base64url") },
    format: "jwk",
  });
}

/** PKCS #1 v1.5 type 2 unpadding of a raw RSA block, without branching on where it fails. */
function unpadPkcs1Type2(block: Uint8Array, expectedLength: number): Uint8Array | undefined {
  let bad = (block[0]! ^ 0x00) | (block[1]! ^ 0x02);
  let zeroAt = 0;
  let found = 0;
  for (let i = 2; i < block.length; i++) {
    const isZero = block[i] === 0 ? 1 : 0;
    const first = isZero & (found ^ 1);
    zeroAt = first ? i : zeroAt;
    found |= isZero;
  }
  bad |= found ^ 1;
  bad |= zeroAt < 10 ? 1 : 0; // at least 8 octets of padding
  bad |= block.length - zeroAt - 1 !== expectedLength ? 1 : 0;
  return bad === 0 ? block.subarray(zeroAt + 1) : undefined;
}
