import * as asn1js from "asn1js";
import { createHash } from "node:crypto";

/** The hashes an X9.63 KDF may use in CMS key agreement (RFC 5753 §7.1.4 and OpenSSL's defaults). */
export type KdfHash = "sha1" | "sha224" | "sha256" | "sha384" | "sha512";

/**
 * ECC-CMS-SharedInfo ::= SEQUENCE { keyInfo AlgorithmIdentifier, entityUInfo [0] EXPLICIT
 * OCTET STRING OPTIONAL, suppPubInfo [2] EXPLICIT OCTET STRING }. keyInfo is the wrap
 * algorithm with absent parameters (RFC 5753 §7.2 for AES wraps); entityUInfo is the ukm
 * and only when the sender sent one. PKI.js #335: its ECCCMSSharedInfo writes an empty
 * entityUInfo when the ukm is absent (OpenSSL never sends one), which changes the derived
 * key; this encoding leaves it out, as RFC 5753 and OpenSSL do.
 */
export function eccCmsSharedInfo(wrapOid: string, ukm: Uint8Array | undefined, kekBits: number): Uint8Array {
  const items: asn1js.AsnType[] = [new asn1js.Sequence({ value: [new asn1js.ObjectIdentifier({ value: wrapOid })] })];
  if (ukm !== undefined) items.push(new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.OctetString({ valueHex: ukm })] }));
  const bits = Buffer.alloc(4);
  bits.writeUInt32BE(kekBits);
  items.push(new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 2 }, value: [new asn1js.OctetString({ valueHex: bits })] }));
  return new Uint8Array(new asn1js.Sequence({ value: items }).toBER(false));
}

/** ANSI X9.63 KDF: Hash(Z || counter || SharedInfo) for counter = 1, 2, ... until `bytes` are made. */
export function x963Kdf(hash: KdfHash, z: Uint8Array, sharedInfo: Uint8Array, bytes: number): Uint8Array {
  const out: Buffer[] = [];
  let made = 0;
  for (let counter = 1; made < bytes; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    const block = createHash(hash).update(z).update(c).update(sharedInfo).digest();
    out.push(block);
    made += block.length;
  }
  return new Uint8Array(Buffer.concat(out).subarray(0, bytes));
}

