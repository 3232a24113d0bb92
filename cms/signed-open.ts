import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { ContentInfo, SignedData, SigningTime, id_signedData, type SignerInfo } from "@peculiar/asn1-cms";
import { Certificate, Name, SubjectKeyIdentifier, id_ce_subjectKeyIdentifier } from "@peculiar/asn1-x509";
import * as asn1js from "asn1js";
import { createHash, createPublicKey, verify } from "node:crypto";
import { x509 } from "../pki/index.js";
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
  signingTime?: Date;
}

const ATTR = { contentType: "1.2.840.113549.1.9.3", messageDigest: "1.2.840.113549.1.9.4", signingTime: "1.2.840.113549.1.9.5" } as const;
const bad = (what: string, why: string, cause?: unknown) => new CmsError("CMS_INVALID", `${what} is not valid CMS SignedData (${why}): give the file as it was signed`, { cause });
const bytes = (b: ArrayBuffer) => new Uint8Array(b);

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
  try {
    return AsnConvert.parse(ci.content, SignedData);
  } catch (e) {
    throw bad(what, "a malformed SignedData", e);
  }
}

function sameBytes(a: ArrayBuffer | Uint8Array, b: ArrayBuffer | Uint8Array): boolean {
  return Buffer.from(a instanceof ArrayBuffer ? new Uint8Array(a) : a).equals(Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b));
}

/** RFC 5652 §5.3: the signer is named by issuer and serial number, or by subject key identifier. */
function signerCertificate(si: SignerInfo, certs: Certificate[]): Certificate | undefined {
  const ias = si.sid.issuerAndSerialNumber;
  if (ias) {
    const issuer = AsnConvert.serialize(ias.issuer);
    return certs.find((c) => sameBytes(c.tbsCertificate.serialNumber, ias.serialNumber) && sameBytes(AsnConvert.serialize(c.tbsCertificate.issuer as Name), issuer));
  }
  const skid = si.sid.subjectKeyIdentifier;
  return certs.find((c) => {
    const ext = c.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
    return ext !== undefined && skid !== undefined && sameBytes(AsnConvert.parse(ext.extnValue, SubjectKeyIdentifier).buffer, skid.buffer);
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
 * that came apart from the signed data); `what` names the input in messages. A signature that does not verify is
 * SIGNATURE_INVALID (exit 6): the content was changed, or signed by another key.
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
  if (!si.signedAttrs || si.signedAttrs.length === 0) throw bad(what, "no signed attributes");
  const carried = (sd.certificates ?? []).flatMap((c) => (c.certificate ? [c.certificate] : []));
  const certs = [...carried, ...known.map((c) => AsnConvert.parse(c.rawData, Certificate))];
  const own = signerCertificate(si, certs);
  if (!own) throw new CmsError("SIGNATURE_INVALID", `${what} is signed by a certificate it does not carry and that is not the expected signer's: refuse it`);
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
  const contentOk = sameBytes(createHash(hash).update(bytes(content)).digest(), md);
  if (!ok || !contentOk) throw new CmsError("SIGNATURE_INVALID", `${what}: the signature does not verify (${ok ? "the content was changed" : "the attributes were changed, or signed by another key"}): refuse it`);
  if (contentType !== eContentType) throw new CmsError("SIGNATURE_INVALID", `${what}: the signed content type ${contentType} is not the content's ${eContentType}: refuse it`);
  const signingTime = si.signedAttrs.find((a) => a.attrType === ATTR.signingTime);
  const toX509 = (c: Certificate) => new x509.X509Certificate(bytes(AsnConvert.serialize(c)));
  return {
    eContentType,
    content: bytes(content),
    signer: toX509(own),
    others: carried.filter((c) => c !== own).map(toX509),
    signingTime: signingTime?.attrValues[0] ? AsnConvert.parse(signingTime.attrValues[0], SigningTime).getTime() : undefined,
  };
}
