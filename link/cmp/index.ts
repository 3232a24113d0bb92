export * from "./asn1.js";
export * from "./crmf.js";
export { protectWithPbm, verifyPbm, pbmParameterOf, PBM_MIN_ITERATIONS, PBM_MAX_ITERATIONS, type PbmOptions } from "./protection.js";
