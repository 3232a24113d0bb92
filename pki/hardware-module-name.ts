import { AsnConvert, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes, OctetString } from "@peculiar/asn1-schema";
import { GeneralName, OtherName, SubjectAlternativeName, id_ce_subjectAltName } from "@peculiar/asn1-x509";
import { x509 } from "./x509.js";

/** RFC 4108 §5: id-on-hardwareModuleName. */
export const ID_ON_HARDWARE_MODULE_NAME = "1.3.6.1.5.5.7.8.4";

/** RFC 4108 §5: HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING } */
@AsnType({ type: AsnTypeTypes.Sequence })
export class HardwareModuleName {
  @AsnProp({ type: AsnPropTypes.ObjectIdentifier })
  hwType = "";

  @AsnProp({ type: OctetString })
  hwSerialNum = new OctetString();

  constructor(params: Partial<HardwareModuleName> = {}) {
    Object.assign(this, params);
  }
}

/** The IDevID's subjectAltName: one otherName carrying the unit's hardwareModuleName (802.1AR §8.10.4). */
export function hardwareModuleNameSan(hwTypeOid: string, serial: string): x509.Extension {
  const hmn = new HardwareModuleName({ hwType: hwTypeOid, hwSerialNum: new OctetString(Buffer.from(serial, "utf8")) });
  const san = new SubjectAlternativeName([
    new GeneralName({ otherName: new OtherName({ typeId: ID_ON_HARDWARE_MODULE_NAME, value: AsnConvert.serialize(hmn) }) }),
  ]);
  return new x509.Extension(id_ce_subjectAltName, false, AsnConvert.serialize(san));
}

/** Reads the hardwareModuleName back out of a certificate, if it has one. */
export function readHardwareModuleName(cert: x509.X509Certificate): { hwType: string; hwSerialNum: string } | undefined {
  const ext = cert.getExtension(id_ce_subjectAltName);
  if (!ext) return undefined;
  const san = AsnConvert.parse(ext.value, SubjectAlternativeName);
  for (const name of san) {
    if (name.otherName?.typeId === ID_ON_HARDWARE_MODULE_NAME) {
      const hmn = AsnConvert.parse(name.otherName.value, HardwareModuleName);
      return { hwType: hmn.hwType, hwSerialNum: Buffer.from(hmn.hwSerialNum.buffer).toString("utf8") };
    }
  }
  return undefined;
}
