/** Where a command's output goes; tests pass buffers, the binary passes the process streams. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** True when stderr is a terminal: progress bars are drawn there, plain lines otherwise. */
  isTty: boolean;
  env: NodeJS.ProcessEnv;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  isTty: Boolean(process.stderr.isTTY),
  env: process.env,
};

export interface GlobalArgs {
  home?: string;
  json: boolean;
}

/** Prints a command's result: the JSON document with --json, else the human lines. */
export function report(io: Io, args: GlobalArgs, json: unknown, human: () => string[]): void {
  if (args.json) io.out(JSON.stringify(json, null, 2) + "\n");
  else for (const line of human()) io.out(line + "\n");
}

/**
 * A failure whose result the command already printed (e.g. reconcile's anomalies with
 * --json): the CLI adds only the one-line message on stderr and the exit code.
 */
export class ReportedFailure extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}
