import { describe, expect, it } from "vitest";
import { FailureWatch } from "../../station/stop.js";
import type { UnitOutcome } from "../../station/index.js";

const ok = (serial: string): UnitOutcome => ({ serial, status: "provisioned", ms: {} });
const failed = (serial: string | undefined, code: string): UnitOutcome => ({ serial, status: "failed", code, reason: `${code} for ${serial ?? "a silent unit"}`, ms: {} });

describe("FailureWatch", () => {
  it("stops after N failures in a row across the line, naming the commonest; a success starts the count again", () => {
    const watch = new FailureWatch({ failuresInARow: 4, serialFailures: 99 });
    expect(watch.note(failed("SN1", "CSR_SIGNATURE"))).toBeUndefined();
    expect(watch.note(failed("SN2", "CSR_SIGNATURE"))).toBeUndefined();
    expect(watch.note(failed("SN3", "CSR_SIGNATURE"))).toBeUndefined();
    expect(watch.note(ok("SN4"))).toBeUndefined();
    for (const [serial, code] of [["SN5", "UNIT_TIMEOUT"], ["SN6", "SERIAL_UNKNOWN"], [undefined, "SERIAL_UNKNOWN"]] as const) expect(watch.note(failed(serial, code))).toBeUndefined();
    const stop = watch.note(failed("SN8", "UNIT_TIMEOUT"));
    expect(stop).toMatchObject({ kind: "unavailable", code: "LINE_FAILING" });
    // A tie goes to the code that came first in the run of failures.
    expect(stop!.message).toMatch(/^the line stopped: 4 units in a row failed, 2 of them with UNIT_TIMEOUT \(the last: UNIT_TIMEOUT for SN8\): fix that in the fixture or its units, then run the station again \(--stop-after-failures sets the limit\)/);
    expect(stop!.message).not.toMatch(/\n/);
  });

  it("stops when one serial failed M times with no success of it in between, whatever succeeds around it", () => {
    const watch = new FailureWatch({ failuresInARow: 99, serialFailures: 3 });
    expect(watch.note(failed("SN1", "UNIT_TIMEOUT"))).toBeUndefined();
    expect(watch.note(failed("SN1", "UNIT_TIMEOUT"))).toBeUndefined();
    expect(watch.note(ok("SN1"))).toBeUndefined();
    expect(watch.note(failed("SN1", "SERIAL_PROVISIONED"))).toBeUndefined();
    expect(watch.note(ok("SN2"))).toBeUndefined();
    expect(watch.note(failed("SN1", "SERIAL_PROVISIONED"))).toBeUndefined();
    expect(watch.note(ok("SN3"))).toBeUndefined();
    expect(watch.note(failed("SN1", "SERIAL_BUSY"))?.message).toMatch(/^the line stopped: serial SN1 failed 3 times in this run, the last with SERIAL_BUSY \(SERIAL_BUSY for SN1\): take that unit out of the fixture/);
  });

  it("forgets the serials failed longest ago once it watches 10,000", () => {
    const watch = new FailureWatch({ failuresInARow: 1e9, serialFailures: 2 });
    expect(watch.note(failed("SN0", "UNIT_TIMEOUT"))).toBeUndefined();
    for (let i = 1; i <= 10_000; i++) expect(watch.note(failed(`SN${i}`, "UNIT_TIMEOUT"))).toBeUndefined();
    expect(watch.note(failed("SN0", "UNIT_TIMEOUT"))).toBeUndefined();
    expect(watch.note(failed("SN10000", "UNIT_TIMEOUT"))).toMatchObject({ code: "LINE_FAILING" });
  });
});
