import { randomBytes } from "node:crypto";

/** Time as idmint sees it; tests pass a fixed clock so notBefore and checkpoint times are exact. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export function fixedClock(at: Date): Clock {
  return { now: () => new Date(at.getTime()) };
}

/** Randomness as idmint sees it: a CSPRNG in production, injectable for tests. */
export interface Random {
  bytes(length: number): Uint8Array;
}

export const systemRandom: Random = { bytes: (length) => new Uint8Array(randomBytes(length)) };
