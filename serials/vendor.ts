import { migrate, type Clock, type Db, type Migration, type Random } from "../core/index.js";
import type { Signer } from "../hsm/index.js";
import { claimCodeHash, expandSerials, validateAllocation, type Allocation, type SerialRange } from "./allocation.js";
import { signDocument, type SignedDocument } from "./document.js";
import { SerialsError } from "./errors.js";

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE vendor_allocations (
        id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        station TEXT NOT NULL,
        model TEXT NOT NULL,
        count INTEGER NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE vendor_serials (
        serial TEXT PRIMARY KEY,
        allocation_id TEXT NOT NULL REFERENCES vendor_allocations (id)
      );
    `,
  },
];

export interface AllocateParams {
  order: string;
  station: string;
  model: string;
  notBefore: Date;
  notAfter: Date;
  /** Either one range or an explicit list. */
  range?: SerialRange;
  serials?: string[];
  claimCodes?: boolean;
}

export interface AllocationResult {
  document: SignedDocument<Allocation>;
  /** serial -> claim code, for the units' labels; only the hashes are in the list. */
  claimCodes?: Map<string, string>;
}

// Crockford base32 without I, L, O, U: easy to read off a label and type in.
const CLAIM_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

function claimCode(random: Random): string {
  const bytes = random.bytes(12);
  let code = "";
  for (let i = 0; i < 12; i++) code += CLAIM_ALPHABET[bytes[i]! & 31];
  return `${code.slice(0, 4)}-${code.slice(4, 8)}-${code.slice(8)}`;
}

/**
 * The vendor's register of every serial it ever allocated (HOME/vendor.db): a serial is
 * allocated at most once, across all orders and stations, forever.
 */
export class VendorRegister {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
    migrate(db, "serials-vendor", MIGRATIONS);
  }

  /**
   * Builds and signs an allocation list, then records it and hands it to `write` in one
   * transaction: if writing the file fails, the register is unchanged.
   */
  async allocate(p: AllocateParams, signer: Signer, signerCertificatePem: string, clock: Clock, random: Random, write: (result: AllocationResult) => void): Promise<AllocationResult> {
    const now = clock.now();
    const allocation: Allocation = {
      format: "idmint-allocation/1",
      allocationId: `alloc-${now.toISOString().slice(0, 10).replace(/-/g, "")}-${Buffer.from(random.bytes(6)).toString("hex")}`,
      order: p.order,
      station: p.station,
      model: p.model,
      notBefore: p.notBefore.toISOString(),
      notAfter: p.notAfter.toISOString(),
      count: p.serials ? p.serials.length : (p.range?.count ?? 0),
      ...(p.serials ? { serials: p.serials } : { ranges: p.range ? [p.range] : [] }),
      createdAt: now.toISOString(),
    };
    validateAllocation(allocation);
    const serials = expandSerials(allocation);
    let claimCodes: Map<string, string> | undefined;
    if (p.claimCodes) {
      claimCodes = new Map(serials.map((s) => [s, claimCode(random)]));
      allocation.claimCodeHashes = Object.fromEntries([...claimCodes].map(([s, c]) => [s, claimCodeHash(s, c)]));
    }
    this.assertFree(serials);
    const document = await signDocument(allocation, signer, signerCertificatePem);
    const result = { document, claimCodes };
    this.db
      .transaction(() => {
        this.db.prepare("INSERT INTO vendor_allocations (id, order_id, station, model, count, created_at) VALUES (?, ?, ?, ?, ?, ?)").run(allocation.allocationId, allocation.order, allocation.station, allocation.model, allocation.count, allocation.createdAt);
        // Checked again inside the write transaction: another allocate may have run meanwhile.
        this.assertFree(serials);
        const insert = this.db.prepare("INSERT INTO vendor_serials (serial, allocation_id) VALUES (?, ?)");
        for (const s of expandSerials(allocation)) insert.run(s, allocation.allocationId);
        write(result);
      })
      .immediate();
    return result;
  }

  private assertFree(serials: readonly string[]): void {
    const taken = this.db.prepare("SELECT allocation_id FROM vendor_serials WHERE serial = ?").pluck();
    for (const s of serials) {
      const by = taken.get(s) as string | undefined;
      if (by) throw new SerialsError("SERIAL_TAKEN", `serial ${s} is already allocated (in ${by}): a serial is allocated once; choose another --start or --prefix`);
    }
  }

  allocations(): Array<{ id: string; order: string; station: string; model: string; count: number; createdAt: string }> {
    return this.db.prepare("SELECT id, order_id AS 'order', station, model, count, created_at AS createdAt FROM vendor_allocations ORDER BY created_at").all() as never;
  }
}

