/**
 * The part of asn1.js (indutny, MIT; it ships no types) that pki and link/cmp use: DER
 * models built with `define`, decoded with `decode(buffer, "der")` and written with
 * `encode(value, "der")`. Results follow the model: `any` is the element's raw DER, `objid`
 * an array of arcs, `int` an unsigned BN, `bitstr` { unused, data }, a string type its text,
 * `seqof`/`setof` arrays, `choice` { type, value }.
 */
declare module "asn1.js" {
  interface ModelNode {
    seq(): ModelNode;
    set(): ModelNode;
    obj(...children: ModelNode[]): ModelNode;
    key(name: string): ModelNode;
    optional(): ModelNode;
    implicit(tag: number): ModelNode;
    explicit(tag: number): ModelNode;
    any(): ModelNode;
    objid(): ModelNode;
    int(): ModelNode;
    bitstr(): ModelNode;
    octstr(): ModelNode;
    null_(): ModelNode;
    printstr(): ModelNode;
    utf8str(): ModelNode;
    ia5str(): ModelNode;
    t61str(): ModelNode;
    bmpstr(): ModelNode;
    unistr(): ModelNode;
    utctime(): ModelNode;
    gentime(): ModelNode;
    choice(options: Record<string, ModelNode>): ModelNode;
    use(model: Model<unknown>): ModelNode;
    seqof(model: Model<unknown>): ModelNode;
    setof(model: Model<unknown>): ModelNode;
  }
  export interface DecodeOptions {
    /** Called as each element is decoded: its path ("a/b"), its start and end in the input, and whether that is the whole element ("tagged") or its content. */
    track?: (path: string, start: number, end: number, what: "tagged" | "content") => unknown;
  }
  export interface Model<T> {
    decode(data: Buffer, encoding: "der", options?: DecodeOptions): T;
    encode(value: T, encoding: "der"): Buffer;
  }
  const asn1: {
    define<T>(name: string, body: (this: ModelNode) => void): Model<T>;
  };
  export default asn1;
}

/** The part of bn.js (asn1.js's integers) that pki and link/cmp use. */
declare module "bn.js" {
  class BN {
    constructor(bigEndian: Uint8Array);
    toNumber(): number;
    toString(base: number): string;
    bitLength(): number;
  }
  export default BN;
}
