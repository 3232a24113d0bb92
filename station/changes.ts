import type { Ledger } from "../ledger/index.js";
import type { SerialStore } from "../serials/index.js";
import type { UnitStore } from "./store.js";

/**
 * Every change the line makes to the station's store, one per step of a unit (DESIGN.md's
 * hot path). They are data so that a worker thread can make them (see commits.ts).
 */
export type UnitChange =
  /**
   * The serial reserved for this station (refused if it is not in a valid allocation or is
   * someone else's), the unit's key on record (refused if another unit presented it), and
   * the ledger's signing intent: one commit, the last before the CA signs.
   */
  | { op: "intent"; serial: string; keyFingerprint: string; certificateSerial: string }
  /** The certificate stored, the serial provisioned, the ledger's issued entry: one transaction. */
  | { op: "issued"; serial: string; certificateSerial: string; pem: string; fingerprint: string }
  /** The unit acknowledged its certificate: ledger entry, and the certificate queued for the directory. */
  | { op: "delivered"; serial: string; pem: string; fingerprint: string }
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
 * Makes one change inside the caller's transaction. For "intent", returns the serial that
 * already had the key, if any: the serial stays reserved, and nothing else is recorded.
 */
export function applyChange(s: ChangeStores, c: UnitChange): string | undefined {
  switch (c.op) {
    case "intent": {
      s.serials.reserve(c.serial, s.owner);
      const had = s.units.recordIntent(c.serial, c.keyFingerprint, c.certificateSerial);
      // Invariant 2: the ledger names the signature before the CA key makes it.
      if (had === undefined) s.ledger.append({ type: "signing.intent", serial: c.serial, keyFingerprint: c.keyFingerprint, certificateSerial: c.certificateSerial });
      return had;
    }
    case "issued":
      s.units.issued(c.serial, c.pem, c.fingerprint);
      s.serials.markProvisioned(c.serial, s.owner, c.fingerprint);
      s.ledger.append({ type: "certificate.issued", serial: c.serial, certificateSerial: c.certificateSerial, certificateFingerprint: c.fingerprint });
      return undefined;
    case "delivered":
      s.ledger.append({ type: "unit.delivered", serial: c.serial, certificateFingerprint: c.fingerprint });
      s.units.delivered(c.serial, c.pem);
      return undefined;
    case "failed":
      // The same failure again is only counted on the unit's row (see UnitStore.failed).
      if (!s.units.failed(c.serial, c.code, c.message)) s.ledger.append({ type: "error", serial: c.serial, stage: "provision", code: c.code, message: c.message.slice(0, 300) });
      // No certificate is on record for this unit: its serial, if this station holds it, may go to a good unit later.
      if (c.releaseSerial) s.serials.release(c.serial, s.owner, c.code);
      return undefined;
  }
}
