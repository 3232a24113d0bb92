import { CmpClient } from "../device/index.js";
import { toWireError } from "../core/index.js";
import { openSimContext, type UnitSimulatorOptions } from "./simulator.js";
import { SimUnit } from "./unit.js";

export interface CmpUnitsOptions {
  /** The station's CMP endpoint, e.g. http://127.0.0.1:8080/.well-known/cmp. */
  url: string;
  secret: Uint8Array;
  /** Units enrolling at once. */
  concurrency: number;
  timeoutMs: number;
}

export interface CmpUnitsResult {
  enrolled: number;
  failed: number;
  /** Failures by the unit's error code. */
  failures: Record<string, number>;
  seconds: number;
}

/**
 * The simulated units enrol themselves over CMP (`unit sim --link cmp`): each makes its key
 * and CSR as on the unit link (SimUnit.genkey), sends it as a p10cr, checks and keeps its
 * certificate (SimUnit.install) and confirms it. `concurrency` units at once, in line order.
 */
export async function enrolOverCmp(options: UnitSimulatorOptions, c: CmpUnitsOptions): Promise<CmpUnitsResult> {
  const { ctx, faults } = openSimContext(options);
  const client = new CmpClient({ url: c.url, secret: c.secret, reference: "idmint-sim", timeoutMs: c.timeoutMs, concurrency: c.concurrency });
  const result: CmpUnitsResult = { enrolled: 0, failed: 0, failures: {}, seconds: 0 };
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < ctx.line.count) {
      const index = next++;
      const serial = ctx.line.serialAt(index);
      const unit = new SimUnit(ctx, index, serial, faults.get(serial) ?? new Set());
      try {
        const { csr } = await unit.genkey("EC-P256");
        await client.enrolP10(csr, (certificate, chain) => unit.install(certificate, chain));
        result.enrolled++;
      } catch (e) {
        const code = toWireError(e).code ?? "INTERNAL";
        result.failed++;
        result.failures[code] = (result.failures[code] ?? 0) + 1;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, c.concurrency) }, worker));
  } finally {
    client.close();
    ctx.keystore.close();
    ctx.flash.close();
  }
  result.seconds = Number(((performance.now() - started) / 1000).toFixed(3));
  return result;
}
