export { SimError, type SimErrorCode } from "./errors.js";
export { UnitSimulator, SIM_HOST, type UnitSimulatorOptions, type SimKeystoreOptions } from "./simulator.js";
export { SIM_LIMITS, type SerialRange, type SerialList } from "./options.js";
export { startSimulatorProcess, type SimulatorProcess, type SimProcessOptions } from "./process.js";
export { UNIT_FAULTS, parseFaultSpec, type UnitFault, type FaultSpec } from "./faults.js";
export { enrolOverCmp, type CmpUnitsOptions, type CmpUnitsResult } from "./cmp.js";
