import type { SignedKeyRequest } from "../pki/index.js";
import type { GenkeyResult, HelloResult, InstallResult, StatusResult, UnitKeyAlgorithm } from "./protocol.js";

/** The unit's key request: a PKCS#10 CSR (the unit link, CMP's p10cr) or a CRMF request with its signature POP (CMP's ir/cr). */
export type KeyRequest = GenkeyResult | { signedRequest: SignedKeyRequest };

/**
 * One unit in one fixture slot, as a station drives it. Implementations speak the unit link
 * protocol (docs/unit-link.md) over whatever reaches the unit: TCP to the simulator today, a
 * serial console or a JTAG bridge later.
 *
 * Every method rejects with a `UnitError`: UNIT_TIMEOUT, UNIT_DISCONNECTED, UNIT_PROTOCOL,
 * or UNIT_REFUSED (the unit answered ok:false; `unitCode` holds its code). Results are
 * checked for shape and size before they are returned, but they remain the unit's claims:
 * the station still checks the CSR (pki `checkCsr`) and compares fingerprints.
 */
export interface UnitLink<R extends KeyRequest = GenkeyResult> {
  /** Who the unit says it is. */
  hello(): Promise<HelloResult>;
  /** Has the unit make a new key pair and return its CSR (PEM), or the request it came with. */
  genkey(alg: UnitKeyAlgorithm): Promise<R>;
  /**
   * Set when the unit came with its key request (CMP): a unit whose serial already has a
   * certificate is given it again only if it shows that certificate's key, not asked for its status.
   */
  readonly requestFirst?: boolean;
  /**
   * Hands the unit its IDevID and the chain up to (not including) the vendor root. With
   * `last`, the station asks nothing more of this unit, whatever the answer: a fixture may
   * seat the next unit in the slot right behind it, and later calls on this link reject.
   */
  install(certificatePem: string, chainPems: readonly string[], options?: { last?: boolean }): Promise<InstallResult>;
  /** Where the unit is: new, keyed or provisioned (with its certificate's fingerprint). */
  status(): Promise<StatusResult>;
  /** Told once the unit's delivery is recorded: a link answering the unit's own request (CMP) confirms it only then. */
  delivered?(): void;
  /** Told why the station gave up on this unit, before close: a link answering the unit's own request (CMP) answers with it. */
  failed?(code: string, message: string): void;
  /** Ends the link; outstanding requests reject with UNIT_DISCONNECTED. Idempotent. */
  close(): Promise<void>;
}

/**
 * The factory line's supply of units: each call yields the unit in the next free slot.
 * Resolves undefined when the fixture has no more units (then and afterwards); rejects only
 * with FIXTURE_UNREACHABLE, when the fixture cannot be reached at all. A unit that fails
 * from its first word on is still yielded: its link's calls reject with that unit's failure,
 * so the station records it against the unit and the line goes on. Calls may overlap: a
 * station with K slots keeps K links open.
 */
export interface UnitFixture<R extends KeyRequest = GenkeyResult> {
  /** The next unit; undefined once no unit will come any more (a merged line stops asking then). */
  next(): Promise<UnitLink<R> | undefined>;
  /** Lets go of whatever the fixture keeps between units (e.g. connections kept for reuse). Idempotent. */
  close(): Promise<void>;
}
