import { StationError } from "./errors.js";
import type { UnitOutcome } from "./pipeline.js";

/**
 * When a line that only fails ends by itself. A broken or hostile fixture that answers
 * hello and then fails every unit (serials outside every allocation, CSRs without proof of
 * possession, one serial claimed for ever) would otherwise keep the station busy and its
 * store growing for as long as it runs.
 */
export interface StopRules {
  /** Units in a row, across the line, that failed (for any reason). */
  failuresInARow: number;
  /** Failures of one serial in this run, with no success of it in between. */
  serialFailures: number;
}

/** A healthy line fails a unit here and there, never 50 in a row; a unit reseated a few times may fail a few times. */
export const DEFAULT_STOP_RULES: StopRules = { failuresInARow: 50, serialFailures: 5 };

/** Serials whose failures are counted at most: a fixture inventing serials must not grow memory. */
const MAX_SERIALS_WATCHED = 10_000;

/** Watches the line's outcomes, in the order they end, against the stop rules. */
export class FailureWatch {
  private inARow = 0;
  /** The current run of failures by code: how many, and the last reason (codes are a fixed set). */
  private readonly streak = new Map<string, { n: number; reason: string }>();
  private readonly bySerial = new Map<string, number>();

  constructor(private readonly rules: StopRules) {}

  /** Notes one unit's outcome; returns why the line must stop, once it must. */
  note(o: UnitOutcome): StationError | undefined {
    if (o.status === "provisioned") {
      this.inARow = 0;
      this.streak.clear();
      if (o.serial !== undefined) this.bySerial.delete(o.serial);
      return undefined;
    }
    const code = o.code ?? "UNKNOWN";
    const reason = o.reason ?? "";
    this.inARow++;
    this.streak.set(code, { n: (this.streak.get(code)?.n ?? 0) + 1, reason });
    if (o.serial !== undefined) {
      const n = (this.bySerial.get(o.serial) ?? 0) + 1;
      this.bySerial.delete(o.serial);
      this.bySerial.set(o.serial, n);
      // The serial failed longest ago goes first (a Map keeps insertion order).
      if (this.bySerial.size > MAX_SERIALS_WATCHED) this.bySerial.delete(this.bySerial.keys().next().value!);
      if (n >= this.rules.serialFailures) {
        return new StationError(
          "LINE_FAILING",
          `the line stopped: serial ${o.serial} failed ${n} times in this run, the last with ${code} (${reason}): take that unit out of the fixture (or scrap its serial), then run the station again (--stop-after-serial-failures sets the limit); the units done so far are recorded`,
        );
      }
    }
    if (this.inARow >= this.rules.failuresInARow) {
      const [commonest, { n, reason: example }] = [...this.streak].sort((a, b) => b[1].n - a[1].n)[0]!;
      return new StationError(
        "LINE_FAILING",
        `the line stopped: ${this.inARow} units in a row failed, ${n} of them with ${commonest} (the last: ${example}): fix that in the fixture or its units, then run the station again (--stop-after-failures sets the limit); the units done so far are recorded`,
      );
    }
    return undefined;
  }
}
