import { errorClass, type ErrorKind } from "../core/index.js";

/**
 * What can go wrong setting up the fixture simulator.
 *
 * - SIM_OPTIONS, FAULT_SYNTAX: the simulator's options are wrong, or a fault spec is malformed.
 * - SIM_INPUT: a file it was given is not what it needs (the vendor root, the units directory).
 * - SIM_LISTEN: it cannot listen on the port asked for.
 * - SIM_CRASHED: its process failed with something that is not one of our errors: a bug.
 */
export type SimErrorCode = "SIM_OPTIONS" | "FAULT_SYNTAX" | "SIM_INPUT" | "SIM_LISTEN" | "SIM_CRASHED";

const KIND: Record<SimErrorCode, ErrorKind> = {
  SIM_OPTIONS: "usage",
  FAULT_SYNTAX: "usage",
  SIM_INPUT: "input",
  SIM_LISTEN: "input",
  SIM_CRASHED: "internal",
};

export function isSimErrorCode(code: string | undefined): code is SimErrorCode {
  return code !== undefined && Object.hasOwn(KIND, code);
}

export class SimError extends errorClass("SimError", KIND) {}
