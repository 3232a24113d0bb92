export * from "./models.js";
export { certReqMessagesOf, type CertReqMsgDer, type CertTemplateDer, type ProofOfPossessionDer } from "./crmf.js";
export { protectedMessageDer, verifyPbm, pbmParameterOf, PbmKeyCache, PBM_MIN_ITERATIONS, PBM_MAX_ITERATIONS, type PbmOptions } from "./protection.js";
export { CmpFixture, MAX_CMP_MESSAGE_BYTES, CMP_MESSAGE_WINDOW_MS, type CmpFixtureOptions } from "./server.js";
export { certConfBody, certHash, certRepBody, certRepOf, certStatusesOf, errorBody, errorOf, type CertRepDer } from "./messages.js";
