import type { Clock } from "../core/index.js";
import type { StationStores } from "./home.js";
import { UnitStore } from "./store.js";

export interface ProvisionedUnitRow {
  serial: string;
  model?: string;
  order?: string;
}

/**
 * The units this station's store says were provisioned (their certificate delivered), by
 * serial or by order: what vouchers may be issued for. A lab unit outside every
 * allocation has no order or model.
 */
export function provisionedUnits(stores: StationStores, clock: Clock): { unit(serial: string): ProvisionedUnitRow | undefined; order(order: string): ProvisionedUnitRow[] } {
  const db = stores.db;
  // The units' table exists once their store has opened (withStation opened the serials').
  new UnitStore(db, clock);
  const select = `SELECT u.serial, a.model, a.order_id AS "order" FROM units u
    LEFT JOIN serials s ON s.serial = u.serial LEFT JOIN allocations a ON a.id = s.allocation_id
    WHERE u.stage = 'delivered'`;
  const bySerial = db.prepare(`${select} AND u.serial = ?`);
  const byOrder = db.prepare(`${select} AND a.order_id = ? ORDER BY u.serial`);
  const clean = (r: { serial: string; model: string | null; order: string | null }): ProvisionedUnitRow => ({
    serial: r.serial,
    ...(r.model === null ? {} : { model: r.model }),
    ...(r.order === null ? {} : { order: r.order }),
  });
  return {
    unit: (serial) => {
      const r = bySerial.get(serial) as { serial: string; model: string | null; order: string | null } | undefined;
      return r && clean(r);
    },
    order: (order) => (byOrder.all(order) as Array<{ serial: string; model: string | null; order: string | null }>).map(clean),
  };
}
