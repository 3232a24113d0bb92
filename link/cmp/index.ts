export * from "./asn1.js";
export * from "./crmf.js";
export * from "./der.js";
export { protectWithPbm, protectedMessageDer, verifyPbm, pbmParameterOf, PBM_MIN_ITERATIONS, PBM_MAX_ITERATIONS, type PbmOptions, type PbmKeyCache } from "./protection.js";
export { CmpFixture, MAX_CMP_MESSAGE_BYTES, CMP_MESSAGE_WINDOW_MS, type CmpFixtureOptions } from "./server.js";
export { certHash, certRepBody, certRepOf, looseMessage, type CertRepDer } from "./messages.js";
