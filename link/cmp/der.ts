/**
 * Answers from DER already at hand (certificates, a body serialized once): structures that
 * encode exactly as their RFC 4210 counterparts in asn1.ts, with parts kept as DER.
 */
import { AsnArray, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes } from "@peculiar/asn1-schema";

/** A SEQUENCE OF values kept as DER (certificates at hand): put into an answer without being parsed and serialized again. */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: AsnPropTypes.Any })
export class DerSequence extends AsnArray<ArrayBuffer> {
  constructor(items?: ArrayBuffer[]) {
    super(items);
    Object.setPrototypeOf(this, DerSequence.prototype);
  }
}

/**
 * A PKIMessage from its parts' DER, encoding exactly as PKIMessage does: the station's answers,
 * whose body is serialized once for both its MAC and the message.
 */
@AsnType({ type: AsnTypeTypes.Sequence })
export class PKIMessageDer {
  @AsnProp({ type: AsnPropTypes.Any })
  header: ArrayBuffer = new ArrayBuffer(0);

  @AsnProp({ type: AsnPropTypes.Any })
  body: ArrayBuffer = new ArrayBuffer(0);

  @AsnProp({ type: AsnPropTypes.BitString, context: 0, optional: true })
  protection?: ArrayBuffer;

  @AsnProp({ type: DerSequence, context: 1, optional: true })
  extraCerts?: DerSequence;

  constructor(params: Partial<PKIMessageDer> = {}) {
    Object.assign(this, params);
  }
}

/** X.690 §8.1.3 definite length octets. */
function lengthOctets(n: number): number[] {
  if (n < 0x80) return [n];
  const octets: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) octets.unshift(v % 256);
  return [0x80 | octets.length, ...octets];
}

/**
 * One TLV (X.690 §8.1) around contents given as DER: what asn1-schema writes for a structure of
 * Any members, without decoding each member and encoding it again (2-3 ms a message here, most
 * of an answer's cost). Used for the two wrappers the MAC and the answer need, tested byte for
 * byte against the schema classes (test/link/cmp-asn1.test.ts).
 */
function tlv(tag: number, contents: Uint8Array[]): Buffer {
  const length = contents.reduce((n, c) => n + c.length, 0);
  return Buffer.concat([Buffer.from([tag, ...lengthOctets(length)]), ...contents]);
}

/** RFC 4210 §5.1.3: DER(ProtectedPart) ::= SEQUENCE { header, body }, from their DER as they are. */
export function protectedPartDer(header: Uint8Array, body: Uint8Array): Buffer {
  return tlv(0x30, [header, body]);
}

/** RFC 4210 §5.1: DER(PKIMessage) from its header's and body's DER, the protection bits and extraCerts' DER. */
export function pkiMessageDer(header: Uint8Array, body: Uint8Array, protection: Uint8Array | undefined, extraCerts: Uint8Array[] | undefined): Buffer {
  const parts = [header, body];
  // protection [0] PKIProtection (a BIT STRING with no unused bits), extraCerts [1] SEQUENCE OF CMPCertificate; both EXPLICIT.
  if (protection) parts.push(tlv(0xa0, [tlv(0x03, [Uint8Array.of(0), protection])]));
  if (extraCerts?.length) parts.push(tlv(0xa1, [tlv(0x30, extraCerts)]));
  return tlv(0x30, parts);
}
