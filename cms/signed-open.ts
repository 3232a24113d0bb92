import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { ContentInfo, SignedData, id_signedData, type SignerInfo } from "@peculiar/asn1-cms";
import { Certificate, Name, SubjectKeyIdentifier, id_ce_subjectKeyIdentifier } from "@peculiar/asn1-x509";
import * as asn1js from "asn1js";
import { createHash, createPublicKey, verify } from "node:crypto";
import { sameBytes, x509 } from "../pki/index.js";
import { AuthAttributes } from "./auth-enveloped.js";
import { CmsError } from "./errors.js";
import { HASHES } from "./oids.js";

/**
 * Reading CMS SignedData (RFC 5652 §5) with exactly one signer and signed attributes, as
 * `openssl cms -sign` and `CmsSigner` write it. Everything in the input is attacker-
 * controlled: the signature is checked over the attributes as received (§5.4), the
 * message digest and content type attributes against the content (§11.1, §11.2). Who the
 * signer is, and whether to trust it, is the caller's question (a chain to a pinned root).
 */

export interface SignedContent {
  eContentType: string;
  content: Uint8Array;
  /** The certificate whose key made the signature, from those the SignedData carries. */
  signer: x509.X509Certificate;
  /** The other certificates it carries (CA certificates a verifier may need). */
  others: x509.X509Certificate[];
}

/** ECDSA (RFC 5753 §2.1.1: the key's OID or ecdsa-with-SHA*) and RSA PKCS #1 v1.5 (RFC 3370 §3.2: rsaEncryption or sha*WithRSAEncryption). */
const SIGNATURE_ALGORITHMS = new Set([
  "1.2.840.10045.2.1",
  "1.2.840.10045.4.3.1",
  "1.2.840.10045.4.3.2",
  "1.2.840.10045.4.3.3",
  "1.2.840.10045.4.3.4",
  "1.2.840.113549.1.1.1",
  "1.2.840.113549.1.1.11",
  "1.2.840.113549.1.1.12",
  "1.2.840.113549.1.1.13",
  "1.2.840.113549.1.1.14",
]);
const ATTR = { contentType: "1.2.840.113549.1.9.3", messageDigest: "1.2.840.113549.1.9.4" } as const;
const bad = (what: string, why: string, cause?: unknown) => new CmsError("CMS_INVALID", `${what} is not valid CMS SignedData (${why}): give the file as it was signed`, { cause });
const bytes = (b: ArrayBuffer) => new Uint8Array(b);
const same = (a: ArrayBuffer | Uint8Array, b: ArrayBuffer | Uint8Array) => sameBytes(a instanceof ArrayBuffer ? new Uint8Array(a) : a, b instanceof ArrayBuffer ? new Uint8Array(b) : b);

/** Whether `der` is a ContentInfo of type SignedData; anything unreadable is not. */
export function isSignedData(der: Uint8Array): boolean {
  try {
    return AsnConvert.parse(der, ContentInfo).contentType === id_signedData;
  } catch {
    return false;
  }
}

function parse(der: Uint8Array, what: string): SignedData {
  let ci: ContentInfo;
  try {
    ci = AsnConvert.parse(der, ContentInfo);
  } catch (e) {
    throw bad(what, "no ContentInfo", e);
  }
  if (ci.contentType !== id_signedData) throw bad(what, `content type ${ci.contentType}, not signedData`);
  let sd: SignedData;
  try {
    sd = AsnConvert.parse(ci.content, SignedData);
  } catch (e) {
    throw bad(what, "a malformed SignedData", e);
  }
  // asn1js reads past a wrong length; DER has one encoding, so anything else is refused.
  let canonical: boolean;
  try {
    canonical = same(AsnConvert.serialize(ci), der) && same(AsnConvert.serialize(sd), ci.content);
  } catch {
    canonical = false;
  }
  if (!canonical) throw bad(what, "not DER; sign it without -stream, e.g. openssl cms -sign -binary -nodetach -outform DER");
  return sd;
}


/** RFC 5652 §5.3: the signer is named by issuer and serial number, or by subject key identifier. */
function signerCertificate(si: SignerInfo, certs: Certificate[]): Certificate | undefined {
  const ias = si.sid.issuerAndSerialNumber;
  if (ias) {
    const issuer = AsnConvert.serialize(ias.issuer);
    return certs.find((c) => same(c.tbsCertificate.serialNumber, ias.serialNumber) && same(AsnConvert.serialize(c.tbsCertificate.issuer as Name), issuer));
  }
  const skid = si.sid.subjectKeyIdentifier;
  return certs.find((c) => {
    const ext = c.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
    return ext !== undefined && skid !== undefined && same(AsnConvert.parse(ext.extnValue, SubjectKeyIdentifier).buffer, skid.buffer);
  });
}

function attribute(si: SignerInfo, type: string, what: string): ArrayBuffer {
  const found = si.signedAttrs?.filter((a) => a.attrType === type) ?? [];
  if (found.length !== 1 || found[0]!.attrValues.length !== 1) throw bad(what, `the signer's attributes must hold exactly one ${type}`);
  return found[0]!.attrValues[0]!;
}

/**
 * Checks the one signer's signature over `der` and returns the content with the signer's
 * certificate, found among those `der` carries and those `known` (e.g. an owner certificate
 * that came apart from the signed data); `what` names the input in messages. A signature
 * that does not verify is SIGNATURE_INVALID (exit 6): the content was changed, or signed
 * by another key.
 */
export function openSignedData(der: Uint8Array, what: string, known: readonly x509.X509Certificate[] = []): SignedContent {
  const sd = parse(der, what);
  const eContent = sd.encapContentInfo.eContent;
  if (!eContent) throw bad(what, "no encapsulated content: a detached signature");
  // BER in pieces (`openssl cms -stream`) comes as `any`; DER (idmint's, `openssl cms -outform DER`) as one OCTET STRING.
  if (!eContent.single) throw new CmsError("CMS_UNSUPPORTED", `${what} carries its content as BER in pieces: sign it without -stream (e.g. openssl cms -sign -binary -nodetach -outform DER)`);
  const content = eContent.single.buffer;
  if (sd.signerInfos.length !== 1) throw bad(what, `${sd.signerInfos.length} signers, not one`);
  const si = sd.signerInfos[0]!;
  // RFC 5652 §5.1, §5.3: the versions that go with issuerAndSerialNumber (1) and subjectKeyIdentifier (3).
  if (![1, 3, 4, 5].includes(sd.version) || si.version !== (si.sid.issuerAndSerialNumber ? 1 : 3)) throw bad(what, `version ${sd.version} with a signer of version ${si.version}`);
  if (!sd.digestAlgorithms.some((d) => d.algorithm === si.digestAlgorithm.algorithm)) throw bad(what, "the signer's digest is not among its digest algorithms");
  if (!si.signedAttrs || si.signedAttrs.length === 0) throw bad(what, "no signed attributes");
  const carried = (sd.certificates ?? []).flatMap((c) => (c.certificate ? [c.certificate] : []));
  const certs = [...carried, ...known.map((c) => AsnConvert.parse(c.rawData, Certificate))];
  let own: Certificate | undefined;
  try {
    own = signerCertificate(si, certs);
  } catch (e) {
    throw bad(what, "an unreadable certificate", e);
  }
  if (!own) throw new CmsError("SIGNATURE_INVALID", `${what} is signed by a certificate it does not carry and that is not the expected signer's: refuse it`);
  if (!SIGNATURE_ALGORITHMS.has(si.signatureAlgorithm.algorithm)) throw new CmsError("CMS_UNSUPPORTED", `${what} is signed with algorithm ${si.signatureAlgorithm.algorithm}: idmint accepts ECDSA and RSA PKCS #1 v1.5 signatures`);
  const hash = HASHES[si.digestAlgorithm.algorithm];
  if (!hash || hash === "sha1") throw new CmsError("CMS_UNSUPPORTED", `${what} is signed with digest ${si.digestAlgorithm.algorithm}: idmint accepts SHA-224, SHA-256, SHA-384 and SHA-512`);
  const eContentType = sd.encapContentInfo.eContentType;
  let contentType: string;
  try {
    contentType = (asn1js.fromBER(attribute(si, ATTR.contentType, what)).result as asn1js.ObjectIdentifier).valueBlock.toString();
  } catch (e) {
    if (e instanceof CmsError) throw e;
    throw bad(what, "an unreadable content-type attribute", e);
  }
  // RFC 5652 §5.4: the DER of the attributes, in the order received, as a SET OF (OpenSSL's
  // CMS_Attributes_Verify re-encodes them the same way).
  const signed = Buffer.from(AsnConvert.serialize(new AuthAttributes(si.signedAttrs)));
  const spki = AsnConvert.serialize(own.tbsCertificate.subjectPublicKeyInfo);
  let ok: boolean;
  try {
    ok = verify(hash, signed, createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }), Buffer.from(si.signature.buffer));
  } catch {
    ok = false;
  }
  let md: ArrayBuffer;
  try {
    md = AsnConvert.parse(attribute(si, ATTR.messageDigest, what), OctetString).buffer;
  } catch (e) {
    if (e instanceof CmsError) throw e;
    throw bad(what, "an unreadable message-digest attribute", e);
  }
  const contentOk = same(createHash(hash).update(bytes(content)).digest(), md);
  if (!ok || !contentOk) throw new CmsError("SIGNATURE_INVALID", `${what}: the signature does not verify (${ok ? "the content was changed" : "the attributes were changed, or signed by another key"}): refuse it`);
  if (contentType !== eContentType) throw new CmsError("SIGNATURE_INVALID", `${what}: the signed content type ${contentType} is not the content's ${eContentType}: refuse it`);
  const toX509 = (c: Certificate) => new x509.X509Certificate(bytes(AsnConvert.serialize(c)));
  return {
    eContentType,
    content: bytes(content),
    signer: toX509(own),
    others: carried.filter((c) => c !== own).map(toX509),
  };
}
