/** What every benchmark and the runner (run.ts) share. */
/** One measured number. `key` is stable (scripts read it from the JSON); `label` is for people. */
export interface Figure {
  key: string;
  label: string;
  value: number;
  unit: string;
  /** Decimal places in the table (the JSON keeps full precision). */
  digits?: number;
  /** What the figure should be; reported as met or missed, never enforced. */
  target?: { op: "<=" | ">="; value: number };
}

export interface BenchContext {
  /** A fresh directory of this benchmark's own; the runner deletes it. */
  readonly dir: string;
  /** A positive integer from the environment, else `fallback`; every value used is recorded in the JSON. */
  param(name: string, fallback: number): number;
  /** A progress line on stderr. */
  log(message: string): void;
}

export interface Benchmark {
  /** Matched by the command-line filter. */
  name: string;
  run(ctx: BenchContext): Promise<Figure[]>;
}
