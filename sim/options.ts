import { assertSerialSyntax } from "../pki/index.js";
import { safeText } from "../link/index.js";
import { SimError } from "./errors.js";

export const SIM_LIMITS = {
  maxCount: 1_000_000,
  maxWidth: 20,
  maxPrefixChars: 40,
  maxSlowMs: 600_000,
} as const;

/** The units on the line as a serial range: `prefix + zero-padded(start + i, width)` for i < count. */
export interface SerialRange {
  count: number;
  prefix: string;
  start: number;
  /** Digits of the serial's number part (default 6: SN000042). */
  width?: number;
}

/** The units on the line as an explicit list, in line order (e.g. a station resuming half-done serials). */
export interface SerialList {
  serials: readonly string[];
}

/** The serials of a line, by position, without materialising a range of a million. */
export interface Line {
  count: number;
  serialAt(index: number): string;
  /** The position of `serial` on the line, if it is on it. */
  indexOf(serial: string): number | undefined;
  /** A serial the unit at `index` is not: what a wrong-serial unit puts in its CSR. */
  otherThan(index: number): string;
}

export function rangeLine(r: SerialRange): Line {
  const count = wholeNumber("count", r.count, 1, SIM_LIMITS.maxCount);
  const width = wholeNumber("width", r.width ?? 6, 1, SIM_LIMITS.maxWidth);
  const start = wholeNumber("start", r.start, 0, Number.MAX_SAFE_INTEGER - count);
  const prefix = r.prefix;
  if (typeof prefix !== "string" || prefix.length > SIM_LIMITS.maxPrefixChars || !/^[A-Za-z0-9.-]*$/.test(prefix)) {
    throw optionError(`prefix "${safeText(String(prefix), 60)}" is not valid: use at most ${SIM_LIMITS.maxPrefixChars} characters of A-Z a-z 0-9 . - (serialNumber is a PrintableString)`);
  }
  const last = start + count - 1;
  if (String(last).length > width) {
    throw optionError(`serial numbers up to ${last} need more than ${width} digits: raise width or lower start/count`);
  }
  const serialAt = (i: number) => prefix + String(start + i).padStart(width, "0");
  try {
    assertSerialSyntax(serialAt(0));
  } catch (e) {
    throw optionError(`serials like ${serialAt(0)} are not valid: ${(e as Error).message.replace(/^serial "[^"]*" is not valid: /, "")}`);
  }
  return {
    count,
    serialAt,
    indexOf: (serial) => {
      const digits = serial.slice(prefix.length);
      const n = Number(digits);
      return serial.startsWith(prefix) && /^[0-9]+$/.test(digits) && digits.length === width && n >= start && n <= last ? n - start : undefined;
    },
    otherThan: (i) => prefix + String(start + i + 1).padStart(width, "0"),
  };
}

export function listLine(l: SerialList): Line {
  const serials = l.serials;
  if (!Array.isArray(serials) || serials.length < 1 || serials.length > SIM_LIMITS.maxCount) {
    throw optionError(`the list of serials must hold 1 to ${SIM_LIMITS.maxCount} serials`);
  }
  const index = new Map<string, number>();
  serials.forEach((serial, i) => {
    try {
      assertSerialSyntax(serial);
    } catch (e) {
      throw optionError((e as Error).message);
    }
    if (index.has(serial)) throw optionError(`serial ${serial} is on the line twice: each unit has its own serial`);
    index.set(serial, i);
  });
  return {
    count: serials.length,
    serialAt: (i) => serials[i]!,
    indexOf: (serial) => index.get(serial),
    otherThan: (i) => (serials.length > 1 ? serials[(i + 1) % serials.length]! : `${serials[i]!}X`),
  };
}

export function optionError(message: string, code: "SIM_OPTIONS" | "SIM_INPUT" = "SIM_OPTIONS"): SimError {
  return new SimError(code, message);
}

export function wholeNumber(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw optionError(`${name} ${String(v)} is out of range: give a whole number from ${min} to ${max}`);
  }
  return v;
}
