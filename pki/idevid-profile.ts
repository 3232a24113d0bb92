import { NO_EXPIRY } from "./profiles.js";
import { readHardwareModuleName } from "./hardware-module-name.js";
import { PKI_OID } from "./oids.js";
import { x509 } from "./x509.js";

/** The names of the keyUsage bits set in `usages`, in RFC 5280 §4.2.1.3 order. */
export function keyUsageNames(usages: number): string[] {
  const names: Array<[number, string]> = [
    [x509.KeyUsageFlags.digitalSignature, "digitalSignature"],
    [x509.KeyUsageFlags.nonRepudiation, "nonRepudiation"],
    [x509.KeyUsageFlags.keyEncipherment, "keyEncipherment"],
    [x509.KeyUsageFlags.dataEncipherment, "dataEncipherment"],
    [x509.KeyUsageFlags.keyAgreement, "keyAgreement"],
    [x509.KeyUsageFlags.keyCertSign, "keyCertSign"],
    [x509.KeyUsageFlags.cRLSign, "cRLSign"],
    [x509.KeyUsageFlags.encipherOnly, "encipherOnly"],
    [x509.KeyUsageFlags.decipherOnly, "decipherOnly"],
  ];
  return names.filter(([f]) => (usages & f) !== 0).map(([, n]) => n);
}

/**
 * The one IDevID profile check (IEEE 802.1AR §8 as idmint issues it, see issueIdevid), for
 * certificates that arrive from elsewhere: the directory's uploads and the operator's fetch.
 * Returns why `cert` is not the IDevID of `serial`, or undefined when it is one.
 */
export function idevidProfileViolation(cert: x509.X509Certificate, serial: string): string | undefined {
  const subjectSerial = cert.subjectName.getField(PKI_OID.serialNumber);
  if (subjectSerial.length !== 1 || subjectSerial[0] !== serial) return `its subject serialNumber is ${subjectSerial.join(", ") || "missing"}, not ${serial}`;
  let hmn: ReturnType<typeof readHardwareModuleName>;
  try {
    hmn = readHardwareModuleName(cert);
  } catch {
    return "its subjectAltName cannot be read";
  }
  if (!hmn) return "it has no hardwareModuleName subjectAltName (RFC 4108)";
  if (hmn.hwSerialNum !== serial) return `its hardwareModuleName names hwSerialNum ${JSON.stringify(hmn.hwSerialNum)}, not ${serial}`;
  if (cert.notAfter.getTime() !== NO_EXPIRY.getTime()) return `its notAfter is ${cert.notAfter.toISOString()}, not 99991231235959Z (802.1AR §8.5)`;
  if (cert.getExtension(x509.BasicConstraintsExtension)?.ca === true) return "it is a CA certificate";
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (!ku) return "it has no keyUsage";
  const names = keyUsageNames(ku.usages);
  if (!names.includes("digitalSignature")) return `its keyUsage (${names.join(", ")}) lacks digitalSignature`;
  if (names.includes("keyCertSign") || names.includes("cRLSign")) return `its keyUsage (${names.join(", ")}) lets it sign certificates or CRLs`;
  return undefined;
}
