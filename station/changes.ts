import type { Ledger } from "../ledger/index.js";
import type { SerialStore } from "../serials/index.js";
import { StationError } from "./errors.js";
import type { UnitStore } from "./store.js";

/**
 * Every change the line makes to the station's store, one per step of a unit (DESIGN.md's
 * hot path). They are data so that a worker thread can make them (see commits.ts).
 */
export type UnitChange =
  /**
   * The serial reserved for this station (refused if it is not in a valid allocation or is
   * someone else's), the unit's key on record (refused if another unit presented it), and
   * the ledger's signing intent: one commit, the last before the CA signs. With
   * `outsideAllocation` (a lab unit's reason, `ca issue` only) the serial must be in no
   * allocation and never certified, and the ledger declares it before the intent.
   */
  | { op: "intent"; serial: string; keyFingerprint: string; certificateSerial: string; outsideAllocation?: string }
  /** The certificate stored, the serial provisioned (unless outside every allocation), the ledger's issued entry: one transaction. */
  | { op: "issued"; serial: string; certificateSerial: string; pem: string; fingerprint: string; outsideAllocation?: boolean; signatureRetried?: boolean }
  /**
   * The unit acknowledged its certificate: ledger entry, and the certificate queued for the
   * directory (not a lab unit's: the directory publishes allocated serials only).
   */
  | { op: "delivered"; serial: string; pem: string; fingerprint: string; outsideAllocation?: boolean }
  /** The unit failed: ledger entry (not for the same failure again), its row, and, if no certificate is on record, its serial released when this station holds it. */
  | { op: "failed"; serial: string; code: string; message: string; releaseSerial: boolean };

export interface ChangeStores {
  ledger: Ledger;
  serials: SerialStore;
  units: UnitStore;
  /** Whose reservations these are: the station, so a resumed run owns its own half-done units. */
  owner: string;
}

/**
 * Makes one change inside the caller's transaction, which the caller gives each change of
 * its own (a savepoint in a group commit): a refused change throws, and its rollback leaves
 * nothing of it (a key reused under another serial reserves nothing either).
 */
export function applyChange(s: ChangeStores, c: UnitChange): void {
  switch (c.op) {
    case "intent": {
      if (c.outsideAllocation === undefined) s.serials.reserve(c.serial, s.owner);
      else declareOutsideAllocation(s, c.serial, c.outsideAllocation);
      const had = s.units.recordIntent(c.serial, c.keyFingerprint, c.certificateSerial);
      // Invariant 4. Only another unit's key is refused: a unit showing its own key again (a resume) is no second unit.
      if (had !== undefined) {
        throw new StationError("KEY_REUSED", `unit ${c.serial} presented the public key unit ${had} already presented (weak RNG or cloned key): refused`);
      }
      // Invariant 2: the ledger names the signature before the CA key makes it.
      s.ledger.append({ type: "signing.intent", serial: c.serial, keyFingerprint: c.keyFingerprint, certificateSerial: c.certificateSerial });
      return;
    }
    case "issued":
      s.units.issued(c.serial, c.pem, c.fingerprint);
      if (!c.outsideAllocation) s.serials.markProvisioned(c.serial, s.owner, c.fingerprint);
      // The HSM may hold a second signature for this intent (asked again after an outage); only this certificate exists.
      if (c.signatureRetried) s.ledger.append({ type: "signing.retried", serial: c.serial, certificateSerial: c.certificateSerial });
      s.ledger.append({ type: "certificate.issued", serial: c.serial, certificateSerial: c.certificateSerial, certificateFingerprint: c.fingerprint });
      return;
    case "delivered":
      s.ledger.append({ type: "unit.delivered", serial: c.serial, certificateFingerprint: c.fingerprint });
      s.units.delivered(c.serial, c.pem, !c.outsideAllocation);
      return;
    case "failed":
      // The same failure again is only counted on the unit's row (see UnitStore.failed).
      if (!s.units.failed(c.serial, c.code, c.message)) s.ledger.append({ type: "error", serial: c.serial, stage: "provision", code: c.code, message: c.message.slice(0, 300) });
      // No certificate is on record for this unit: its serial, if this station holds it, may go to a good unit later.
      if (c.releaseSerial) s.serials.release(c.serial, s.owner, c.code);
      return;
  }
}

/**
 * A lab unit: its serial must be in no allocation (an allocated serial goes through its
 * allocation) and never certified here (one certificate per serial holds for lab units too).
 */
function declareOutsideAllocation(s: ChangeStores, serial: string, reason: string): void {
  const allocated = s.serials.get(serial);
  if (allocated) {
    throw new StationError("SERIAL_ALLOCATED", `serial ${serial} is in allocation ${allocated.allocationId}: issue it without --outside-allocation`);
  }
  const stage = s.units.get(serial)?.stage;
  if (stage === "issued" || stage === "delivered") {
    throw new StationError("SERIAL_PROVISIONED", `serial ${serial} is already provisioned: a serial gets one certificate; this unit may be a clone`);
  }
  s.ledger.append({ type: "serial.outside-allocation", serial, reason });
}
