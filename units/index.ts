export { SoftwareUnit, type UnitKeyAlgorithm } from "./software-unit.js";
