/** The X.520 attribute types and extended key usages idmint's certificates carry, by name. */
export const PKI_OID = {
  organization: "2.5.4.10",
  organizationalUnit: "2.5.4.11",
  commonName: "2.5.4.3",
  serialNumber: "2.5.4.5",
  // RFC 9336: id-kp-documentSigning, for keys that sign allocation lists and usage reports.
  documentSigning: "1.3.6.1.5.5.7.3.36",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;
