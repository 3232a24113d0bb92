export { SimError, type SimErrorCode } from "./errors.js";
export { UnitSimulator, SIM_HOST, SIM_LIMITS, type UnitSimulatorOptions, type SerialRange, type SerialList, type SimKeystoreOptions } from "./simulator.js";
export { startSimulatorProcess, type SimulatorProcess, type SimProcessOptions } from "./process.js";
export { UNIT_FAULTS, parseFaultSpec, type UnitFault, type FaultSpec } from "./faults.js";
