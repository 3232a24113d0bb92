export { PkiError, type PkiErrorCode } from "./errors.js";
export { x509, signingProvider, derSignature } from "./x509.js";
export {
  NO_EXPIRY,
  assertSerialSyntax,
  newCertificateSerial,
  issueRoot,
  issueFactoryCa,
  issueEndEntity,
  issueIdevid,
  assertCertificateSerial,
  type IdevidParams,
  type SubjectName,
  type EndEntityPurpose,
} from "./profiles.js";
export { IdevidIssuer, type IssuedIdevid, type IdevidProfile, type IdevidRequest } from "./idevid-issuer.js";
export { checkCsr, checkSignedKeyRequest, type CheckedCsr, type SignedKeyRequest } from "./csr.js";
export {
  AlgorithmIdentifierModel,
  AnyDerModel,
  CertificateModel,
  CertificationRequestModel,
  NameModel,
  SubjectPublicKeyInfoModel,
  arcs,
  attributes,
  decodeTracked,
  decodeWhole,
  directoryString,
  ecdsaSignatureDer,
  oid,
  serialNumbers,
  type AlgorithmIdentifierDer,
  type Arcs,
  type BitStringDer,
  type CertificateDer,
  type NameDer,
  type SubjectPublicKeyInfoDer,
} from "./der-models.js";
export { addMasa, type MasaTokens } from "./masa.js";
export { initCa, runCeremony, assertStationId, CEREMONY_ALGORITHMS, type CeremonyKeys, type CeremonyResult, type KeyTokens } from "./ceremony.js";
export { hardwareModuleNameSan, readHardwareModuleName, ID_ON_HARDWARE_MODULE_NAME } from "./hardware-module-name.js";
export { checkChain, parseCertificate } from "./chain.js";
export { PKI_OID } from "./oids.js";
export { sameBytes } from "./bytes.js";
export { idevidProfileViolation, keyUsageNames } from "./idevid-profile.js";
