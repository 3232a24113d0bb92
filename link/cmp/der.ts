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
