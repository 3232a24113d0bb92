import { SimError } from "./errors.js";

/**
 * Misbehaviours the simulator can give a unit, so that tests and the bench see every way a
 * real unit fails a station:
 * - bad-csr-signature: the CSR's signature is corrupted (no proof of possession).
 * - wrong-serial: the CSR names another serial than the unit's.
 * - duplicate-key: the unit reuses an earlier unit's key pair of the same algorithm, as a
 *   unit with a weak RNG would: the key of the unit the simulator provisioned last, else the
 *   key it made last, so that with many units on the line at once it is this unit's CSR,
 *   not the earlier unit's, that repeats a key the station has seen. With no earlier key of
 *   that algorithm it makes a fresh one.
 * - disconnect: on genkey the unit makes its key, then drops the connection unanswered.
 * - garbage: on genkey the unit makes its key, then answers with random bytes that are not
 *   a frame (their length prefix is always over the limit).
 * - slow: every answer is delayed by the simulator's `slowMs`.
 */
export const UNIT_FAULTS = ["bad-csr-signature", "wrong-serial", "duplicate-key", "disconnect", "garbage", "slow"] as const;
export type UnitFault = (typeof UNIT_FAULTS)[number];

export interface FaultSpec {
  serial: string;
  fault: UnitFault;
}

/** Parses `SERIAL=KIND` as given to `idmint unit sim --fault`. */
export function parseFaultSpec(spec: string): FaultSpec {
  const eq = spec.indexOf("=");
  const serial = eq === -1 ? "" : spec.slice(0, eq);
  const fault = eq === -1 ? "" : spec.slice(eq + 1);
  if (!serial || !fault) {
    throw new SimError("FAULT_SYNTAX", `fault "${spec}" is not SERIAL=KIND: write e.g. --fault SN000002=duplicate-key`);
  }
  if (!(UNIT_FAULTS as readonly string[]).includes(fault)) {
    throw new SimError("FAULT_SYNTAX", `fault kind "${fault}" in "${spec}" is unknown: use one of ${UNIT_FAULTS.join(", ")}`);
  }
  return { serial, fault: fault as UnitFault };
}
