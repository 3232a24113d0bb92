import asn1 from "asn1.js";
import { AsnConvert } from "@peculiar/asn1-schema";
import { IssuerAndSerialNumber } from "@peculiar/asn1-cms";
import { AlgorithmIdentifier, Certificate } from "@peculiar/asn1-x509";
import { createHash } from "node:crypto";
import type { Signer } from "../hsm/index.js";
import { AnyDerModel, arcs, derSignature, type Arcs } from "../pki/index.js";
import { OID } from "./oids.js";

/**
 * Writing CMS SignedData (RFC 5652 §5) with one signer and signed attributes, for content
 * such as RFC 8366 vouchers; the signature is made by the HSM's Signer. A vendor issues
 * vouchers by the ten thousand, so the per-message structures are asn1.js models (as the
 * line's certificates are, pki/der-models.ts): @peculiar/asn1-schema took ~1.1 ms to
 * serialize one SignedData, most of it re-encoding the certificate. What does not change
 * from one message to the next (the signer's identifier, its certificates, the algorithms)
 * is encoded once with @peculiar/asn1-schema and carried as raw DER (`any`).
 */


const ATTR = { contentType: arcs("1.2.840.113549.1.9.3"), messageDigest: arcs("1.2.840.113549.1.9.4"), signingTime: arcs("1.2.840.113549.1.9.5") };

const OidModel = asn1.define<Arcs>("ObjectIdentifier", function () {
  this.objid();
});
const OctetStringModel = asn1.define<Buffer>("OctetString", function () {
  this.octstr();
});
// RFC 5652 §11.3: UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5).
const UtcTimeModel = asn1.define<number>("UTCTime", function () {
  this.utctime();
});
const GeneralizedTimeModel = asn1.define<number>("GeneralizedTime", function () {
  this.gentime();
});

// RFC 5652 §5.3: Attribute ::= SEQUENCE { attrType OBJECT IDENTIFIER, attrValues SET OF AttributeValue }.
const AttributeModel = asn1.define<{ attrType: Arcs; attrValues: Buffer[] }>("Attribute", function () {
  this.seq().obj(this.key("attrType").objid(), this.key("attrValues").setof(AnyDerModel));
});
// What the signature covers (§5.4): the attributes as a SET OF, each already encoded.
const SignedAttributesModel = asn1.define<Buffer[]>("SignedAttributes", function () {
  this.setof(AnyDerModel);
});

interface SignerInfoDer {
  version: number;
  sid: Buffer;
  digestAlgorithm: Buffer;
  signedAttrs: Buffer[];
  signatureAlgorithm: Buffer;
  signature: Buffer;
}
// RFC 5652 §5.3.
const SignerInfoModel = asn1.define<SignerInfoDer>("SignerInfo", function () {
  this.seq().obj(
    this.key("version").int(),
    this.key("sid").any(),
    this.key("digestAlgorithm").any(),
    this.key("signedAttrs").implicit(0).setof(AnyDerModel),
    this.key("signatureAlgorithm").any(),
    this.key("signature").octstr(),
  );
});

interface SignedDataDer {
  version: number;
  digestAlgorithms: Buffer[];
  encapContentInfo: { eContentType: Arcs; eContent: Buffer };
  certificates: Buffer[];
  signerInfos: SignerInfoDer[];
}
const EncapsulatedContentInfoModel = asn1.define<SignedDataDer["encapContentInfo"]>("EncapsulatedContentInfo", function () {
  this.seq().obj(this.key("eContentType").objid(), this.key("eContent").explicit(0).octstr());
});
// RFC 5652 §5.1.
const SignedDataModel = asn1.define<SignedDataDer>("SignedData", function () {
  this.seq().obj(
    this.key("version").int(),
    this.key("digestAlgorithms").setof(AnyDerModel),
    this.key("encapContentInfo").use(EncapsulatedContentInfoModel),
    this.key("certificates").implicit(0).setof(AnyDerModel),
    this.key("signerInfos").setof(SignerInfoModel),
  );
});
// RFC 5652 §3.
const ContentInfoModel = asn1.define<{ contentType: Arcs; content: SignedDataDer }>("ContentInfo", function () {
  this.seq().obj(this.key("contentType").objid(), this.key("content").explicit(0).use(SignedDataModel));
});

const SIGNATURE_OIDS: Record<string, string> = {
  "EC:SHA-256": "1.2.840.10045.4.3.2",
  "EC:SHA-384": "1.2.840.10045.4.3.3",
  "RSA:SHA-256": "1.2.840.113549.1.1.11",
  "RSA:SHA-384": "1.2.840.113549.1.1.12",
};
const DIGEST_OIDS: Record<string, string> = { "SHA-256": OID.sha256, "SHA-384": "2.16.840.1.101.3.4.2.2" };
const der = (value: object) => Buffer.from(AsnConvert.serialize(value));

/** X.690 §11.6: a DER SET OF lists its elements in the order of their encodings. */
const derSetOrder = (items: Buffer[]) => items.sort(Buffer.compare);

/**
 * One signer's SignedData writer: the signer's certificate (and any CA certificates a
 * verifier may need) are carried in every message it signs.
 */
export class CmsSigner {
  private readonly signer: Signer;
  private readonly sid: Buffer;
  private readonly certificates: Buffer[];
  private readonly digestAlgorithm: Buffer;
  private readonly signatureAlgorithm: Buffer;
  private readonly nodeHash: string;

  /** `certificates`: the signer's own certificate first, then CA certificates (DER). */
  constructor(signer: Signer, certificates: readonly Uint8Array[]) {
    this.signer = signer;
    const own = AsnConvert.parse(certificates[0]!, Certificate);
    // RFC 5652 §5.3: sid as issuerAndSerialNumber (SignerInfo version 1), as `openssl cms -sign` names its signer.
    this.sid = der(new IssuerAndSerialNumber({ issuer: own.tbsCertificate.issuer, serialNumber: own.tbsCertificate.serialNumber }));
    this.certificates = derSetOrder(certificates.map((c) => Buffer.from(c)));
    this.digestAlgorithm = der(new AlgorithmIdentifier({ algorithm: DIGEST_OIDS[signer.hash]! }));
    const rsa = signer.algorithm.startsWith("RSA-");
    // RFC 4055 §5: NULL parameters for RSA; RFC 5758 §3.2: none for ECDSA.
    this.signatureAlgorithm = der(new AlgorithmIdentifier({ algorithm: SIGNATURE_OIDS[`${rsa ? "RSA" : "EC"}:${signer.hash}`]!, parameters: rsa ? null : undefined }));
    this.nodeHash = signer.hash === "SHA-384" ? "sha384" : "sha256";
  }

  /** ContentInfo(SignedData) in DER around `content` of type `eContentType`, signed at `signingTime`. */
  async sign(eContentType: string, content: Uint8Array, signingTime: Date): Promise<Uint8Array> {
    const time = signingTime.getUTCFullYear() < 2050 ? UtcTimeModel.encode(signingTime.getTime(), "der") : GeneralizedTimeModel.encode(signingTime.getTime(), "der");
    const type = arcs(eContentType);
    const signedAttrs = derSetOrder([
      AttributeModel.encode({ attrType: ATTR.contentType, attrValues: [OidModel.encode(type, "der")] }, "der"),
      AttributeModel.encode({ attrType: ATTR.signingTime, attrValues: [time] }, "der"),
      AttributeModel.encode({ attrType: ATTR.messageDigest, attrValues: [OctetStringModel.encode(createHash(this.nodeHash).update(content).digest(), "der")] }, "der"),
    ]);
    const signature = derSignature(this.signer, await this.signer.sign(SignedAttributesModel.encode(signedAttrs, "der")));
    const signerInfo: SignerInfoDer = {
      version: 1,
      sid: this.sid,
      digestAlgorithm: this.digestAlgorithm,
      signedAttrs,
      signatureAlgorithm: this.signatureAlgorithm,
      signature: Buffer.from(signature),
    };
    return ContentInfoModel.encode(
      {
        contentType: arcs(OID.signedData),
        content: {
          // RFC 5652 §5.1: version 3 when the content is not id-data.
          version: eContentType === OID.data ? 1 : 3,
          digestAlgorithms: [this.digestAlgorithm],
          encapContentInfo: { eContentType: type, eContent: Buffer.from(content) },
          certificates: this.certificates,
          signerInfos: [signerInfo],
        },
      },
      "der",
    );
  }
}
