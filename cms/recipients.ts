import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { createDecipheriv } from "node:crypto";
import { IdmintError } from "../core/index.js";
import { x509 } from "../pki/index.js";
import { invalid, unsupported } from "./errors.js";
import { eccCmsSharedInfo, x963Kdf, type KdfHash } from "./kdf.js";
import { ECDH_SCHEMES, HASHES, KEY_WRAPS, OID } from "./oids.js";
import type { RecipientKey } from "./recipient-key.js";

export interface Candidate {
  kind: "kari" | "ktri";
  /** Who the recipient is, for messages. */
  rid: Rid;
  tryOpen(key: RecipientKey): { cek: Uint8Array; keyEncryption: string; keyWrap?: string } | undefined;
}

export type Rid = { issuer: Uint8Array; serial: Uint8Array; issuerText: string } | { ski: Uint8Array };

export function bytesOf(view: ArrayBuffer | Uint8Array): Uint8Array {
  return view instanceof Uint8Array ? view : new Uint8Array(view);
}

function der(obj: { toSchema(): asn1js.AsnType }): Uint8Array<ArrayBuffer> {
  return new Uint8Array(obj.toSchema().toBER(false));
}

function integerBytes(i: asn1js.Integer): Uint8Array {
  return new Uint8Array(i.valueBlock.valueHexView);
}

function ridOf(value: unknown): Rid {
  if (value instanceof pkijs.IssuerAndSerialNumber) {
    let issuerText = "(unreadable issuer)";
    try {
      issuerText = new x509.Name(new Uint8Array(der(value.issuer))).toString();
    } catch {
      // Only for messages.
    }
    return { issuer: der(value.issuer), serial: integerBytes(value.serialNumber), issuerText };
  }
  if (value instanceof pkijs.RecipientKeyIdentifier) return { ski: new Uint8Array(value.subjectKeyIdentifier.valueBlock.valueHexView) };
  if (value instanceof asn1js.OctetString) return { ski: new Uint8Array(value.valueBlock.valueHexView) };
  throw invalid("a recipient identifier is neither issuerAndSerialNumber nor subjectKeyIdentifier");
}

export function describeRid(r: Rid): string {
  return "issuer" in r ? `certificate ${Buffer.from(r.serial).toString("hex")} of ${r.issuerText}` : `key identifier ${Buffer.from(r.ski).toString("hex")}`;
}

/** The unit's certificate as a CMS recipient identifier sees it. */
export interface RecipientIdentity {
  issuer: Uint8Array;
  serial: Uint8Array;
  ski?: Uint8Array;
  /** The certificate's SubjectPublicKeyInfo, DER. */
  spki: Uint8Array;
}

export function recipientIdentity(cert: x509.X509Certificate): RecipientIdentity {
  const c = pkijs.Certificate.fromBER(new Uint8Array(cert.rawData));
  const skiExt = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  return {
    issuer: der(c.issuer),
    serial: integerBytes(c.serialNumber),
    ski: skiExt ? new Uint8Array(Buffer.from(skiExt.keyId, "hex")) : undefined,
    spki: new Uint8Array(cert.publicKey.rawData),
  };
}

export function ridMatches(r: Rid, id: RecipientIdentity): boolean {
  if ("issuer" in r) return Buffer.from(r.issuer).equals(Buffer.from(id.issuer)) && Buffer.from(r.serial).equals(Buffer.from(id.serial));
  return id.ski !== undefined && Buffer.from(r.ski).equals(Buffer.from(id.ski));
}

function algorithmParams(alg: pkijs.AlgorithmIdentifier): asn1js.AsnType | undefined {
  const p = alg.algorithmParams as asn1js.AsnType | undefined;
  if (p === undefined || p instanceof asn1js.Null) return undefined;
  return p;
}

function oaepParams(alg: pkijs.AlgorithmIdentifier): { hash: KdfHash } {
  // RFC 4055 §4.1: RSAES-OAEP-params, every field DEFAULT (SHA-1, MGF1-SHA-1, empty label).
  let hash: KdfHash = "sha1";
  let mgfHash: KdfHash = "sha1";
  const params = alg.algorithmParams as asn1js.AsnType | undefined;
  if (params !== undefined && !(params instanceof asn1js.Null)) {
    if (!(params instanceof asn1js.Sequence)) throw invalid("the RSAES-OAEP parameters are not a SEQUENCE");
    const hashOf = (a: pkijs.AlgorithmIdentifier, what: string): KdfHash => {
      const h = HASHES[a.algorithmId];
      if (!h) throw unsupported(`the RSAES-OAEP ${what} ${a.algorithmId} is not supported: use SHA-256`);
      return h;
    };
    for (const field of params.valueBlock.value) {
      const inner = (field as asn1js.Constructed).valueBlock?.value?.[0];
      if (field.idBlock.tagClass !== 3 || inner === undefined) throw invalid("an RSAES-OAEP parameter is not tagged");
      let a: pkijs.AlgorithmIdentifier;
      try {
        a = new pkijs.AlgorithmIdentifier({ schema: inner });
      } catch (e) {
        throw invalid("an RSAES-OAEP parameter is not an AlgorithmIdentifier", e);
      }
      if (field.idBlock.tagNumber === 0) hash = hashOf(a, "hash");
      else if (field.idBlock.tagNumber === 1) {
        if (a.algorithmId !== OID.mgf1) throw unsupported(`the RSAES-OAEP mask generation function ${a.algorithmId} is not supported: use MGF1`);
        let mgfAlg: pkijs.AlgorithmIdentifier;
        try {
          mgfAlg = new pkijs.AlgorithmIdentifier({ schema: a.algorithmParams });
        } catch (e) {
          throw invalid("the MGF1 parameters are not an AlgorithmIdentifier", e);
        }
        mgfHash = hashOf(mgfAlg, "MGF1 hash");
      } else if (field.idBlock.tagNumber === 2) {
        const label = a.algorithmParams as asn1js.OctetString | undefined;
        if (a.algorithmId !== OID.pSpecified || !(label instanceof asn1js.OctetString) || label.valueBlock.valueHexView.byteLength !== 0) {
          throw unsupported("RSAES-OAEP with a label is not supported: use the empty label");
        }
      } else throw invalid("an RSAES-OAEP parameter has an unknown tag");
    }
  }
  if (mgfHash !== hash) throw unsupported(`RSAES-OAEP with ${hash} and MGF1-${mgfHash} is not supported: use the same hash for both`);
  return { hash };
}

function kariCandidates(kari: pkijs.KeyAgreeRecipientInfo, contentKeyBytes: number): Candidate[] {
  if (kari.version !== 3) throw invalid(`a KeyAgreeRecipientInfo has version ${kari.version}, not 3`);
  const scheme = ECDH_SCHEMES[kari.keyEncryptionAlgorithm.algorithmId];
  if (!scheme) throw unsupported(`key agreement ${kari.keyEncryptionAlgorithm.algorithmId} is not supported: use ephemeral-static ECDH (dhSinglePass-stdDH-sha256kdf-scheme)`);
  let wrapAlg: pkijs.AlgorithmIdentifier;
  try {
    wrapAlg = new pkijs.AlgorithmIdentifier({ schema: kari.keyEncryptionAlgorithm.algorithmParams });
  } catch (e) {
    throw invalid("the key agreement names no key wrap algorithm", e);
  }
  const wrap = KEY_WRAPS[wrapAlg.algorithmId];
  if (!wrap) throw unsupported(`key wrap ${wrapAlg.algorithmId} is not supported: use AES key wrap (id-aes256-wrap)`);
  if (algorithmParams(wrapAlg) !== undefined) throw invalid("the AES key wrap algorithm has parameters");
  if (kari.originator.variant !== 3) throw unsupported("static-static ECDH (an originator certificate instead of an ephemeral key) is not supported: use ephemeral-static ECDH");
  const originator = kari.originator.value as pkijs.OriginatorPublicKey;
  if (originator.algorithm.algorithmId !== OID.ecPublicKey) throw unsupported(`the originator key is ${originator.algorithm.algorithmId}, not an EC key`);
  const originatorCurve = originator.algorithm.algorithmParams instanceof asn1js.ObjectIdentifier ? originator.algorithm.algorithmParams.valueBlock.toString() : undefined;
  if (originator.algorithm.algorithmParams !== undefined && originatorCurve === undefined && !(originator.algorithm.algorithmParams instanceof asn1js.Null)) {
    throw unsupported("the originator key has explicit curve parameters: use a named curve");
  }
  if (originator.publicKey.valueBlock.unusedBits !== 0) throw invalid("the originator key's BIT STRING has unused bits");
  const point = new Uint8Array(originator.publicKey.valueBlock.valueHexView);
  const ukm = kari.ukm ? new Uint8Array(kari.ukm.valueBlock.valueHexView) : undefined;

  return kari.recipientEncryptedKeys.encryptedKeys.map((rek): Candidate => ({
    kind: "kari",
    rid: ridOf(rek.rid.value),
    tryOpen(key) {
      if (key.type !== "ec") return undefined;
      if (originatorCurve !== undefined && originatorCurve !== key.curveOid) return undefined;
      // RFC 5753 §3.1.2: Z from the ephemeral key, then KEK = KDF(Z, SharedInfo), then unwrap.
      let z: Uint8Array;
      try {
        z = key.ecdh(point);
      } catch (e) {
        if (e instanceof IdmintError && e.code !== "UNSUPPORTED_ALGORITHM") throw e;
        return undefined;
      }
      const kek = x963Kdf(scheme.hash, z, eccCmsSharedInfo(wrapAlg.algorithmId, ukm, wrap.bytes * 8), wrap.bytes);
      z.fill(0);
      let cek: Buffer;
      try {
        const d = createDecipheriv(wrap.cipher, kek, Buffer.from("A6A6A6A6A6A6A6A6", "hex"));
        cek = Buffer.concat([d.update(rek.encryptedKey.valueBlock.valueHexView), d.final()]);
      } catch {
        return undefined; // RFC 3394 §2.2.3: the integrity check failed
      } finally {
        kek.fill(0);
      }
      if (cek.length !== contentKeyBytes) return undefined;
      return { cek: new Uint8Array(cek), keyEncryption: scheme.name, keyWrap: wrap.name };
    },
  }));
}

function ktriCandidate(ktri: pkijs.KeyTransRecipientInfo, contentKeyBytes: number): Candidate {
  const rid = ridOf(ktri.rid);
  if (ktri.version !== ("issuer" in rid ? 0 : 2)) throw invalid(`a KeyTransRecipientInfo has version ${ktri.version}, which does not fit its recipient identifier`);
  const alg = ktri.keyEncryptionAlgorithm;
  const encryptedKey = Buffer.from(ktri.encryptedKey.valueBlock.valueHexView);
  if (alg.algorithmId === OID.rsaesOaep) {
    const { hash } = oaepParams(alg);
    return {
      kind: "ktri",
      rid,
      tryOpen(key) {
        if (key.type !== "rsa") return undefined;
        if (encryptedKey.length !== key.modulusBytes) return undefined;
        const cek = key.decryptOaep(hash, encryptedKey);
        if (cek === undefined) return undefined;
        if (cek.length !== contentKeyBytes) {
          cek.fill(0);
          return undefined;
        }
        return { cek, keyEncryption: `id-RSAES-OAEP (${hash})` };
      },
    };
  }
  if (alg.algorithmId === OID.rsaEncryption) {
    if (algorithmParams(alg) !== undefined) throw invalid("rsaEncryption has parameters other than NULL");
    return {
      kind: "ktri",
      rid,
      tryOpen(key) {
        if (key.type !== "rsa") return undefined;
        if (encryptedKey.length !== key.modulusBytes) return undefined;
        // RFC 3218 §2.3.2: a bad block gives a random key, so it fails like a wrong key, at the content.
        return { cek: key.decryptPkcs1(encryptedKey, contentKeyBytes), keyEncryption: "rsaEncryption (PKCS #1 v1.5)" };
      },
    };
  }
  throw unsupported(`key transport ${alg.algorithmId} is not supported: use RSAES-OAEP`);
}

/** The recipients a unit's key pair can be: KEK, password and other recipients are for someone else. */
export function candidatesOf(recipientInfos: pkijs.RecipientInfo[], contentKeyBytes: number): Candidate[] {
  const candidates: Candidate[] = [];
  for (const ri of recipientInfos) {
    if (ri.variant === 1) candidates.push(ktriCandidate(ri.value as pkijs.KeyTransRecipientInfo, contentKeyBytes));
    else if (ri.variant === 2) candidates.push(...kariCandidates(ri.value as pkijs.KeyAgreeRecipientInfo, contentKeyBytes));
  }
  return candidates;
}
