import { AsnConvert } from "@peculiar/asn1-schema";
import { CertificateChoices, CertificateSet, ContentInfo, DigestAlgorithmIdentifiers, EncapsulatedContentInfo, SignedData, SignerInfos, id_data, id_signedData } from "@peculiar/asn1-cms";
import { Certificate } from "@peculiar/asn1-x509";
import type { Random } from "../core/index.js";
import type { x509 } from "../pki/index.js";
import type { ProvisionedUnit } from "./issue.js";

/**
 * An order's units in the shape of sztpd's running datastore (Watsen Networks' SZTP
 * bootstrap server, module wn-sztpd-1), for an owner to PUT to
 * /restconf/ds/ietf-datastores:running (docs/sztp.md): one device per unit, one device
 * type per model whose identity certificates are verified against the vendor's factory CA
 * and root in a truststore bag, the serial taken from the certificate's subject
 * serialNumber (as idmint's IDevIDs carry it).
 */

const BAG = "idmint-vendor-identity-cas";
const TRUST_ANCHOR = "idmint-vendor-ca-chain";
/** RFC 4648 base32 without padding: unambiguous to read out and type in. */
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** An activation code a person can type: 16 base32 characters, 80 random bits. */
function activationCode(random: Random): string {
  return Array.from(random.bytes(16), (b) => BASE32[b & 31]).join("");
}

/**
 * RFC 9641 (ietf-crypto-types) trust-anchor-cert-cms: a degenerate SignedData, certificates
 * only (RFC 5652 §5.2: id-data, no content, no signers).
 */
function certsOnlyCms(certs: readonly x509.X509Certificate[]): string {
  const sd = new SignedData({
    version: 1,
    digestAlgorithms: new DigestAlgorithmIdentifiers(),
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_data }),
    certificates: new CertificateSet(certs.map((c) => new CertificateChoices({ certificate: AsnConvert.parse(c.rawData, Certificate) }))),
    signerInfos: new SignerInfos(),
  });
  return Buffer.from(AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(sd) }))).toString("base64");
}

export interface SztpdExport {
  document: Record<string, unknown>;
  devices: number;
  deviceTypes: string[];
}

/** The running-datastore document for `units`, trusting `chain` (the factory CA, then the root). */
export function sztpdRunning(units: readonly ProvisionedUnit[], chain: readonly x509.X509Certificate[], random: Random): SztpdExport {
  const types = [...new Set(units.map((u) => u.model ?? "unknown"))].sort();
  return {
    devices: units.length,
    deviceTypes: types,
    document: {
      "wn-sztpd-1:devices": {
        device: units.map((u) => ({ "serial-number": u.serial, "device-type": u.model ?? "unknown", "activation-code": activationCode(random) })),
      },
      "wn-sztpd-1:device-types": {
        "device-type": types.map((name) => ({
          name,
          "identity-certificates": {
            verification: { "local-truststore-reference": { "certificate-bag": BAG, certificate: TRUST_ANCHOR } },
            "serial-number-extraction": "wn-x509-c2n:serial-number",
          },
        })),
      },
      "ietf-truststore:truststore": {
        "certificate-bags": {
          "certificate-bag": [
            {
              name: BAG,
              description: "The vendor's IDevID issuing CA and root, exported by idmint",
              certificate: [{ name: TRUST_ANCHOR, "cert-data": certsOnlyCms(chain) }],
            },
          ],
        },
      },
    },
  };
}
