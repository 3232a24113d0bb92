/** Where a command's output goes; tests pass buffers, the binary passes the process streams. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** True when stderr is a terminal: progress bars are drawn there, plain lines otherwise. */
  isTty: boolean;
  env: NodeJS.ProcessEnv;
}

/** The process's streams whose reader went away (EPIPE): what is left to print there is dropped. */
const gone = new Set<NodeJS.WriteStream>();

function write(stream: NodeJS.WriteStream, text: string): void {
  if (!gone.has(stream)) stream.write(text);
}

export const processIo: Io = {
  out: (t) => write(process.stdout, t),
  err: (t) => write(process.stderr, t),
  isTty: Boolean(process.stderr.isTTY),
  env: process.env,
};

/**
 * For the binary: a reader that closes its end early (`idmint ledger verify | head -1`) ends
 * the output, quietly, not the command, which runs to its end and exits with its own code:
 * a SIGPIPE-style exit would mask that code, and stop a line mid-run for a log reader.
 */
export function endOutputOnBrokenPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code !== "EPIPE") throw e;
      gone.add(stream);
    });
  }
}

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
