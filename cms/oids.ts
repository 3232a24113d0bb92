/** The object identifiers of CMS AuthEnvelopedData with AES-GCM. */
export const AUTH_OID = {
  /** RFC 5083 §1.1: id-ct-authEnvelopedData. */
  authEnvelopedData: "1.2.840.113549.1.9.16.1.23",
  /** RFC 5084 §3.2: id-aes128-GCM, id-aes192-GCM, id-aes256-GCM. */
  aes128Gcm: "2.16.840.1.101.3.4.1.6",
  aes192Gcm: "2.16.840.1.101.3.4.1.26",
  aes256Gcm: "2.16.840.1.101.3.4.1.46",
} as const;
