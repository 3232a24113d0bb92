import type { Clock } from "../core/index.js";
import { Refusal, certificationRequest, certificationRequestInfo, toPem, type InstallChecker, type KeyRef, type UnitFlash, type UnitKey, type UnitKeystore, type UnitRecord } from "../device/index.js";
import { UNIT_OPS, type HelloResult, type OpResults, type StatusResult, type UnitKeyAlgorithm, type UnitRequest } from "../link/index.js";
import type { UnitFault } from "./faults.js";
import type { Line } from "./options.js";

export interface SimContext {
  keystore: UnitKeystore;
  flash: UnitFlash;
  clock: Clock;
  identity: { model: string; hwType: string; firmware: string };
  /**
   * What a duplicate-key unit reuses, per algorithm: the key of the unit provisioned last,
   * which the station has certainly seen, else the key made last. (A key made last may still
   * be on its way to the station when the copy arrives there, and the station would refuse
   * its owner instead of the copy.)
   */
  lastKey: Map<UnitKeyAlgorithm, UnitKey>;
  provisionedKey: Map<UnitKeyAlgorithm, UnitKey>;
  line: Line;
  installs: InstallChecker;
}

function sameRef(a: KeyRef, b: KeyRef): boolean {
  return a.keystore === b.keystore && (a.keystore === "soft" || (b.keystore === "pkcs11" && a.object === b.object));
}

/** One simulated unit: its identity, its key and certificate, and what it does with each op. */
export class SimUnit {
  private s: UnitRecord;
  /** The key this unit made or copied in this run (a unit keyed in an earlier run has only its record). */
  private key: UnitKey | undefined;
  /** Why the unit cannot work (its row is unreadable); it answers every request INTERNAL. */
  private readonly broken: string | undefined;
  /** The unit went back to the line once already (see SimLink). */
  seatedAgain = false;

  constructor(
    private readonly ctx: SimContext,
    readonly index: number,
    readonly serial: string,
    readonly faults: ReadonlySet<UnitFault>,
  ) {
    // A unit that was keyed or provisioned by an earlier run keeps its state (power cycle).
    let stored: UnitRecord | undefined;
    try {
      stored = ctx.flash.read(serial);
    } catch (e) {
      this.broken = (e as Error).message;
    }
    this.s = stored ?? { serial, state: "new" };
  }

  /** What the unit answers; `next` is its fixture slot's business (SimLink), not the unit's. */
  async run(r: Exclude<UnitRequest, { op: "next" }>): Promise<OpResults[UnitRequest["op"]]> {
    if (this.broken) throw new Refusal("INTERNAL", `unit ${this.serial} is broken: ${this.broken}`);
    switch (r.op) {
      case "hello":
        return this.hello();
      case "status":
        return this.status();
      case "genkey":
        return this.genkey(r.alg);
      case "install":
        return this.install(r.certificate, r.chain);
    }
  }

  hello(): HelloResult {
    return { serial: this.serial, ...this.ctx.identity, protocol: 1, ops: [...UNIT_OPS] };
  }

  status(): StatusResult {
    return this.s.state === "provisioned" ? { serial: this.serial, state: "provisioned", fingerprint: this.s.fingerprint! } : { serial: this.serial, state: this.s.state };
  }

  async genkey(alg: UnitKeyAlgorithm): Promise<{ csr: string }> {
    if (this.s.state === "provisioned") {
      throw new Refusal("ALREADY_PROVISIONED", `unit ${this.serial} already holds its IDevID (${this.s.fingerprint}) and never replaces that key`);
    }
    const { keystore, lastKey, provisionedKey } = this.ctx;
    const earlier = this.faults.has("duplicate-key") ? (provisionedKey.get(alg) ?? lastKey.get(alg)) : undefined;
    const key = earlier ?? (await keystore.generate(this.serial, alg));
    lastKey.set(alg, key);
    const previous = this.s.keyOwned ? this.s.key : undefined;
    const keyed = { serial: this.serial, alg, key: key.ref, keyOwned: !earlier, spki: key.spki };
    this.ctx.flash.saveKey(keyed, key.pkcs8);
    this.s = { ...keyed, state: "keyed" };
    this.key = key;
    if (previous && !sameRef(previous, key.ref)) {
      try {
        keystore.discard(previous);
      } catch {
        // A stale key left in the token blocks nothing (labels are unique); the new key is in place.
      }
    }
    // RFC 2986: the request names the unit's serial and is signed with the new key.
    const csrSerial = this.faults.has("wrong-serial") ? this.ctx.line.otherThan(this.index) : this.serial;
    const info = certificationRequestInfo(csrSerial, key.spki);
    const signature = Buffer.from(await key.sign(info));
    // One flipped bit in the last octet: still well-formed DER, no longer a valid signature.
    if (this.faults.has("bad-csr-signature")) signature.writeUInt8(signature.readUInt8(signature.length - 1) ^ 0x01, signature.length - 1);
    return { csr: toPem("CERTIFICATE REQUEST", certificationRequest(info, alg, signature)) };
  }

  async install(certificatePem: string, chainPems: readonly string[]): Promise<{ fingerprint: string }> {
    const s = this.s;
    if (s.state === "new" || s.spki === undefined) throw new Refusal("NO_KEY", `unit ${this.serial} has no key yet: send genkey first`);
    const { installs, flash, clock } = this.ctx;
    const offered = installs.offered(certificatePem);
    const { fingerprint } = offered;
    if (s.state === "provisioned") {
      if (fingerprint === s.fingerprint) return { fingerprint };
      throw new Refusal("ALREADY_PROVISIONED", `unit ${this.serial} already holds another IDevID (${s.fingerprint}) and never replaces it`);
    }
    const accepted = await installs.check(offered, chainPems, { serial: this.serial, spki: s.spki }, clock.now());
    // One row update, after every check: the unit is provisioned with all of it, or not at all.
    flash.saveInstall({ serial: this.serial, ...accepted, fingerprint });
    this.s = { ...s, state: "provisioned", ...accepted, fingerprint };
    if (this.key) this.ctx.provisionedKey.set(this.key.algorithm, this.key);
    return { fingerprint };
  }
}
