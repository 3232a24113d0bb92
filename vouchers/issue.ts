import { sha256Hex, type Clock } from "../core/index.js";
import { CmsSigner, VOUCHER_CONTENT_TYPE, voucherJson, type Voucher, type VoucherAssertion } from "../cms/index.js";
import type { Signer } from "../hsm/index.js";
import type { Ledger, LedgerEvent } from "../ledger/index.js";
import { assertSerialSyntax, x509 } from "../pki/index.js";
import { VouchersError } from "./errors.js";

/** A unit idmint provisioned: its certificate was delivered to it. */
export interface ProvisionedUnit {
  serial: string;
  /** The allocation's model and order; absent for a lab unit outside every allocation. */
  model?: string;
  order?: string;
}

/** Where the provisioned units are looked up (the station's store: `station`'s provisionedUnits). */
export interface ProvisionedUnits {
  unit(serial: string): ProvisionedUnit | undefined;
  order(order: string): ProvisionedUnit[];
}

export interface VoucherRequest {
  /** One serial, or every provisioned unit of an order. */
  target: { serial: string } | { order: string };
  /** The owner's certificate (RFC 8366 pinned-domain-cert: its end-entity or CA certificate). */
  ownerCert: x509.X509Certificate;
  assertion: VoucherAssertion;
  expiresOn?: Date;
  /** base64, for a voucher answering one voucher request. */
  nonce?: string;
}

export interface IssuedVoucher {
  serial: string;
  der: Uint8Array;
  fingerprint: string;
}

/** Units per ledger transaction: the ledger records a batch before its vouchers are handed out. */
const BATCH = 1000;
const YIELD_EVERY = 16;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$/;

/** RFC 6991 date-and-time, to the second. */
const dateAndTime = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

/** The units a request names, each one provisioned by this home; refused otherwise. */
export function unitsFor(units: ProvisionedUnits, target: VoucherRequest["target"]): ProvisionedUnit[] {
  if ("serial" in target) {
    assertSerialSyntax(target.serial);
    const unit = units.unit(target.serial);
    if (!unit) throw new VouchersError("NOT_PROVISIONED", `serial ${target.serial} was not provisioned from this home (no unit holds a certificate for it): vouchers are issued only for units idmint provisioned`);
    return [unit];
  }
  const found = units.order(target.order);
  if (found.length === 0) throw new VouchersError("ORDER_EMPTY", `order ${target.order} has no provisioned unit in this home: check the order id (\`idmint serials status\`)`);
  return found;
}

function assertFreshness(r: VoucherRequest, clock: Clock): void {
  if (r.expiresOn !== undefined && r.nonce !== undefined) {
    throw new VouchersError("VOUCHER_OPTIONS", "--expires-on and --nonce do not go together: a nonce voucher answers one request, an expiring one is for the owner to keep (RFC 8366 §5.2)");
  }
  if (r.expiresOn !== undefined && r.expiresOn.getTime() <= clock.now().getTime()) {
    throw new VouchersError("VOUCHER_OPTIONS", `--expires-on ${r.expiresOn.toISOString()} is not in the future: give a later time`);
  }
  if (r.nonce !== undefined && !BASE64.test(r.nonce)) throw new VouchersError("VOUCHER_OPTIONS", "--nonce must be the base64 nonce of the voucher request");
}

/**
 * RFC 8366 vouchers for provisioned units, signed with the MASA key in the HSM. Each batch
 * is recorded in the ledger (`voucher.issued`: unit, owner, voucher fingerprint) before
 * `handOver` gets its vouchers, so no voucher leaves idmint unrecorded.
 */
export async function issueVouchers(p: {
  units: ProvisionedUnit[];
  request: VoucherRequest;
  masa: { signer: Signer; certificate: x509.X509Certificate };
  /** The factory CA's certificate: its key identifier is every IDevID's issuer (idevid-issuer). */
  factoryCa: x509.X509Certificate;
  ledger: Pick<Ledger, "appendMany">;
  clock: Clock;
  /** Takes a batch once the ledger holds it; a promise it returns is awaited before the next batch is handed over. */
  handOver: (vouchers: IssuedVoucher[]) => void | Promise<void>;
}): Promise<number> {
  const r = p.request;
  assertFreshness(r, p.clock);
  const cms = new CmsSigner(p.masa.signer, [new Uint8Array(p.masa.certificate.rawData)]);
  const pinned = Buffer.from(r.ownerCert.rawData).toString("base64");
  const owner = sha256Hex(new Uint8Array(r.ownerCert.rawData));
  const skid = p.factoryCa.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const idevidIssuer = skid === undefined ? undefined : Buffer.from(skid, "hex").toString("base64");
  let issued = 0;
  let handing: void | Promise<void> = undefined;
  for (let i = 0; i < p.units.length; i += BATCH) {
    const batch: IssuedVoucher[] = [];
    const events: LedgerEvent[] = [];
    for (const [k, unit] of p.units.slice(i, i + BATCH).entries()) {
      // The HSM signs synchronously: a turn of the event loop now and then lets the previous batch's hand-over (file writes) go on meanwhile.
      if (k % YIELD_EVERY === 0) await new Promise(setImmediate);
      const now = p.clock.now();
      const voucher: Voucher = {
        createdOn: dateAndTime(now),
        ...(r.expiresOn ? { expiresOn: dateAndTime(r.expiresOn) } : {}),
        assertion: r.assertion,
        serialNumber: unit.serial,
        ...(idevidIssuer ? { idevidIssuer } : {}),
        pinnedDomainCert: pinned,
        ...(r.nonce ? { nonce: r.nonce } : {}),
      };
      const der = await cms.sign(VOUCHER_CONTENT_TYPE, voucherJson(voucher), now);
      const fingerprint = sha256Hex(der);
      batch.push({ serial: unit.serial, der, fingerprint });
      events.push({
        type: "voucher.issued",
        serial: unit.serial,
        owner,
        assertion: r.assertion,
        voucherFingerprint: fingerprint,
        ...(voucher.expiresOn ? { expiresOn: voucher.expiresOn } : {}),
        ...(r.nonce ? { nonce: true } : {}),
      });
    }
    p.ledger.appendMany(events);
    await handing;
    handing = p.handOver(batch);
    issued += batch.length;
  }
  await handing;
  return issued;
}
