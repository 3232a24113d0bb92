import { CoreError, Home, fixedClock, readInputFile, systemClock, type Clock, type IdmintConfig } from "../core/index.js";
import { findSoftHsmModule, type HsmOptions } from "../hsm/index.js";
import { parseCertificate, x509 } from "../pki/index.js";
import type { GlobalArgs, Io } from "./io.js";

export function homeOf(args: GlobalArgs, io: Io): Home {
  return Home.resolve(args.home, io.env);
}

/** The HSM a home is configured for, loaded with the command's environment (PIN sources may name variables in it). */
export function hsmOptions(config: IdmintConfig, io: Io): HsmOptions {
  return { module: config.hsm.module, softhsmConf: config.hsm.softhsmConf, env: io.env };
}

/** The units' token a simulated unit's key may be in: --pkcs11-token, else the home's simulator token; undefined for soft keys only. */
export function unitTokenOf(args: { "pkcs11-token"?: string; "pkcs11-module"?: string }, config: IdmintConfig | undefined, io: Io) {
  const tokenUri = args["pkcs11-token"] ?? config?.simulator?.unitTokenUri;
  if (!tokenUri) return undefined;
  return {
    tokenUri,
    module: args["pkcs11-module"] ?? config?.hsm.module ?? findSoftHsmModule(),
    softhsmConf: args["pkcs11-module"] === undefined ? config?.hsm.softhsmConf : undefined,
    env: io.env,
  };
}

/** The clock commands use: the system's, or IDMINT_NOW (ISO 8601) so tests can stand at a given time. */
export function clockOf(io: Io): Clock {
  const now = io.env.IDMINT_NOW;
  if (!now) return systemClock;
  const at = new Date(now);
  if (Number.isNaN(at.getTime())) throw new CoreError("OPTION_INVALID", `IDMINT_NOW=${now} is not an ISO 8601 time: unset it or fix it`);
  return fixedClock(at);
}

export function pinnedRoot(home: Home, path?: string): x509.X509Certificate {
  const p = path ?? home.pkiFile("root");
  return parseCertificate(readInputFile(p, "the vendor root certificate"), p);
}

/** Resolves once the process is asked to stop (SIGINT or SIGTERM); `dispose` removes the handlers. */
export function stopSignal(): { stopped: Promise<NodeJS.Signals>; dispose: () => void } {
  let dispose = () => {};
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      dispose();
      resolve(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    dispose = () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    };
  });
  return { stopped, dispose };
}

/** A line's CMP secret (`option` names the option that needs it): the first line of the file, at least 8 bytes. */
export function readCmpSecret(option: string, file: string | undefined): Uint8Array {
  if (!file) throw new CoreError("OPTION_INVALID", `${option} needs --cmp-secret-file F: the line's CMP secret, as the units give openssl cmp -secret`);
  const secret = readInputFile(file, "the CMP secret file").toString("utf8").split(/\r?\n/)[0] ?? "";
  if (Buffer.byteLength(secret) < 8) throw new CoreError("OPTION_INVALID", `${file}'s first line is shorter than 8 bytes: a CMP secret must be at least 8`);
  return new Uint8Array(Buffer.from(secret));
}
