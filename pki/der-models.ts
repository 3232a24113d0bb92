import asn1, { type Model } from "asn1.js";
import BN from "bn.js";
import { PKI_OID } from "./oids.js";

/*
 * DER models of the X.509 and PKCS#10 structures on the line's hot path, in asn1.js: a
 * unit's CSR at the station (csr.ts), its certificate at the simulated unit
 * (device/install-check.ts), and the DER form of each HSM signature (x509.ts). @peculiar/asn1-schema took ~100 µs for a CSR and ~280 µs for
 * a certificate (asn1js builds an object per node, then the schema maps them); asn1.js
 * decodes the same models in ~8 and ~25 µs. Everything else in pki stays on the
 * @peculiar libraries.
 *
 * asn1.js's `any` hands back the bytes from the element to the end of its parent, so a
 * model reads only a last element with `any`; where the exact bytes of an earlier element
 * are needed (what a signature covers, a key's SPKI), `decodeWhole` asks asn1.js where it
 * found them. asn1.js also ignores elements a SEQUENCE has beyond its model, so models end
 * where their readers stop reading.
 */

export type Arcs = number[];

export interface AlgorithmIdentifierDer {
  algorithm: Arcs;
  /** The parameters' raw DER, when present. */
  parameters?: Buffer;
}

export interface BitStringDer {
  unused: number;
  data: Buffer;
}

export interface SubjectPublicKeyInfoDer {
  algorithm: AlgorithmIdentifierDer;
  subjectPublicKey: BitStringDer;
}

/** RDNSequence: each attribute's value still raw, until its type says how to read it. */
export type NameDer = Array<Array<{ type: Arcs; value: Buffer }>>;

/** Any element, as its DER: what a SET OF or SEQUENCE OF holds when the items stay raw, and what writes a ready DER. */
export const AnyDerModel = asn1.define<Buffer>("Any", function () {
  this.any();
});

// RFC 5280 §4.1.1.2.
export const AlgorithmIdentifierModel = asn1.define<AlgorithmIdentifierDer>("AlgorithmIdentifier", function () {
  this.seq().obj(this.key("algorithm").objid(), this.key("parameters").optional().any());
});

// RFC 5280 §4.1.2.7.
export const SubjectPublicKeyInfoModel = asn1.define<SubjectPublicKeyInfoDer>("SubjectPublicKeyInfo", function () {
  this.seq().obj(this.key("algorithm").use(AlgorithmIdentifierModel), this.key("subjectPublicKey").bitstr());
});

// RFC 5280 §4.1.2.4.
const AttributeTypeAndValueModel = asn1.define<{ type: Arcs; value: Buffer }>("AttributeTypeAndValue", function () {
  this.seq().obj(this.key("type").objid(), this.key("value").any());
});
const RelativeDistinguishedNameModel = asn1.define<Array<{ type: Arcs; value: Buffer }>>("RelativeDistinguishedName", function () {
  this.setof(AttributeTypeAndValueModel);
});
export const NameModel = asn1.define<NameDer>("Name", function () {
  this.seqof(RelativeDistinguishedNameModel);
});

// RFC 2986 §4.1; the attributes [0] are not read (asn1.js's `any`: see der-models.ts).
const CertificationRequestInfoModel = asn1.define<CertificationRequestDer["info"]>("CertificationRequestInfo", function () {
  this.seq().obj(this.key("version").int(), this.key("subject").use(NameModel), this.key("subjectPKInfo").use(SubjectPublicKeyInfoModel), this.key("attributes").any());
});
// RFC 2986 §4.2.
export interface CertificationRequestDer {
  info: { subject: NameDer; subjectPKInfo: SubjectPublicKeyInfoDer };
  signatureAlgorithm: AlgorithmIdentifierDer;
  signature: BitStringDer;
}
export const CertificationRequestModel = asn1.define<CertificationRequestDer>("CertificationRequest", function () {
  this.seq().obj(this.key("info").use(CertificationRequestInfoModel), this.key("signatureAlgorithm").use(AlgorithmIdentifierModel), this.key("signature").bitstr());
});

// X.520 DirectoryString, and IA5String, which some writers use; serialNumber is a PrintableString.
const DirectoryStringModel = asn1.define<{ type: string; value: string }>("DirectoryString", function () {
  this.choice({ printable: this.printstr(), utf8: this.utf8str(), ia5: this.ia5str(), teletex: this.t61str(), bmp: this.bmpstr(), universal: this.unistr() });
});

export interface CertificateDer {
  /** The issuer and the subject's key are read by position only (decodeWhole): a unit compares their bytes. */
  tbsCertificate: {
    validity: { notBefore: { value: number }; notAfter: { value: number } };
    subject: NameDer;
  };
  signatureAlgorithm: AlgorithmIdentifierDer;
  signatureValue: BitStringDer;
}

// RFC 5280 §4.1.2.5: a Time is a UTCTime or a GeneralizedTime, read as milliseconds since
// the epoch. asn1.js tries a CHOICE's options in turn and builds an Error (stack and all)
// for each miss, so each Time tries first what an IDevID has there: a UTCTime from now, and
// GeneralizedTime 99991231235959Z, "no well-defined expiration" (802.1AR §8.5).
const NotBeforeModel = asn1.define<{ value: number }>("Time", function () {
  this.choice({ utcTime: this.utctime(), generalTime: this.gentime() });
});
const NotAfterModel = asn1.define<{ value: number }>("Time", function () {
  this.choice({ generalTime: this.gentime(), utcTime: this.utctime() });
});
const ValidityModel = asn1.define<CertificateDer["tbsCertificate"]["validity"]>("Validity", function () {
  this.seq().obj(this.key("notBefore").use(NotBeforeModel), this.key("notAfter").use(NotAfterModel));
});

// RFC 5280 §4.1, read up to the subject's key: what a unit checks of its certificate.
const TbsCertificateModel = asn1.define<CertificateDer["tbsCertificate"]>("TBSCertificate", function () {
  this.seq().obj(
    this.key("version").explicit(0).optional().int(),
    this.key("serialNumber").int(),
    this.key("signature").use(AlgorithmIdentifierModel),
    // A SEQUENCE with no model of its content: asn1.js steps over it, and `track` still says where it is.
    this.key("issuer").seq(),
    this.key("validity").use(ValidityModel),
    this.key("subject").use(NameModel),
    this.key("subjectPublicKeyInfo").seq(),
  );
});
export const CertificateModel = asn1.define<CertificateDer>("Certificate", function () {
  this.seq().obj(this.key("tbsCertificate").use(TbsCertificateModel), this.key("signatureAlgorithm").use(AlgorithmIdentifierModel), this.key("signatureValue").bitstr());
});

/**
 * Decodes `der`, which must be exactly one element of `model`, and says where each element
 * lies in it, as [start, end) by path ("tbsCertificate/subject"), in the order decoded: an
 * element comes before what it contains, some of which (the items of a SEQUENCE OF) share
 * its path. `contents` says the same of each element's content octets. Throws if `der` is
 * not that.
 */
export function decodeTracked<T>(model: Model<T>, der: Buffer): { value: T; ranges: Map<string, Array<[number, number]>>; contents: Map<string, Array<[number, number]>> } {
  const ranges = new Map<string, Array<[number, number]>>();
  const contents = new Map<string, Array<[number, number]>>();
  // asn1.js builds an Error for each CHOICE alternative and OPTIONAL element it tries and
  // misses, and reads its stack: without frames to format a miss costs ~4 µs, not ~45 (measured
  // under tsx, whose source maps format each frame). The decode is synchronous: nothing else
  // runs with the limit.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  let value: T;
  try {
    value = model.decode(der, "der", {
      track: (path, start, end, what) => {
        const map = what === "tagged" ? ranges : contents;
        const seen = map.get(path);
        if (seen) seen.push([start, end]);
        else map.set(path, [[start, end]]);
      },
    });
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  const whole = ranges.get("")?.[0];
  if (!whole || whole[0] !== 0 || whole[1] !== der.length) throw new Error("not exactly one element");
  return { value, ranges, contents };
}

/** decodeTracked, with where the first element at each of `paths` lies; throws if one is missing. */
export function decodeWhole<T>(model: Model<T>, der: Buffer, paths: readonly string[]): { value: T; at: Array<[number, number]> } {
  const { value, ranges } = decodeTracked(model, der);
  const at = paths.map((p) => {
    const range = ranges.get(p)?.[0];
    if (!range) throw new Error(`no ${p}`);
    return range;
  });
  return { value, at };
}

export const oid = (arcs: Arcs): string => arcs.join(".");
/** An OID in dotted form as asn1.js writes it. */
export const arcs = (dotted: string): Arcs => dotted.split(".").map(Number);

/** A Name's attributes, in order, with their types as dotted OIDs. */
export function attributes(name: NameDer): Array<{ type: string; value: Buffer }> {
  return name.flat().map((a) => ({ type: oid(a.type), value: a.value }));
}

/** An attribute value that is a directory string, as text; throws for any other type. */
export function directoryString(value: Buffer): string {
  return DirectoryStringModel.decode(value, "der").value;
}

// RFC 3279 §2.2.3 ECDSA-Sig-Value.
const EcdsaSigValueModel = asn1.define<{ r: BN; s: BN }>("ECDSA-Sig-Value", function () {
  this.seq().obj(this.key("r").int(), this.key("s").int());
});

/** An ECDSA signature in the r || s form PKCS#11 returns (its halves unsigned, big-endian), as DER ECDSA-Sig-Value. */
export function ecdsaSignatureDer(raw: Uint8Array): Buffer {
  const half = raw.length / 2;
  return EcdsaSigValueModel.encode({ r: new BN(raw.subarray(0, half)), s: new BN(raw.subarray(half)) }, "der");
}

/** The subject's serialNumber (X.520 2.5.4.5) values, as text; throws if one is not a directory string. */
export function serialNumbers(name: NameDer): string[] {
  return attributes(name)
    .filter((a) => a.type === PKI_OID.serialNumber)
    .map((a) => directoryString(a.value));
}
