import { mkdirSync } from "node:fs";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { DEFAULT_HW_TYPE_OID, systemClock, type Clock } from "../core/index.js";
import { InstallChecker, Pkcs11Keystore, SoftKeystore, UnitFlash, type Pkcs11KeystoreOptions, type UnitKeystore } from "../device/index.js";
import { OID_SYNTAX, isPlainText, safeText } from "../link/index.js";
import { parseCertificate, x509 } from "../pki/index.js";
import { SimError } from "./errors.js";
import { UNIT_FAULTS, type FaultSpec, type UnitFault } from "./faults.js";
import { SIM_LIMITS, listLine, optionError, rangeLine, wholeNumber, type SerialList, type SerialRange } from "./options.js";
import { SimLink } from "./slot.js";
import { SimUnit, type SimContext } from "./unit.js";

export const SIM_HOST = "127.0.0.1";

export type SimKeystoreOptions = { kind: "soft" } | ({ kind: "pkcs11" } & Pkcs11KeystoreOptions);

export type UnitSimulatorOptions = (SerialRange | SerialList) & {
  /** Where the units keep their flash: one row per unit in `<unitsDir>/units.db` (see UnitFlash). */
  unitsDir: string;
  /** The vendor root certificate (PEM or DER) the units trust. */
  root: string | Uint8Array;
  model?: string;
  /** hwType OID the units report (default: RFC 5612 documentation arc, as core's DEFAULT_HW_TYPE_OID). */
  hwType?: string;
  firmware?: string;
  /** Where unit keys live (default soft). */
  keystore?: SimKeystoreOptions;
  faults?: readonly FaultSpec[];
  /** Delay of every answer of a unit with the `slow` fault (default 1000 ms). */
  slowMs?: number;
  /** TCP port on 127.0.0.1; 0 (default) picks a free one, see `port`. */
  port?: number;
  /** Time for the units' chain checks (default: the system clock). */
  clock?: Clock;
};

/**
 * The simulated units' context from the options: their line, faults, identity, trusted root,
 * flash and keystore (the caller closes the last two); a one-line SimError for bad options.
 */
export function openSimContext(options: UnitSimulatorOptions): { ctx: SimContext; faults: Map<string, Set<UnitFault>>; slowMs: number } {
  const line = "serials" in options ? listLine(options) : rangeLine(options);
  const slowMs = wholeNumber("slow-ms", options.slowMs ?? 1000, 0, SIM_LIMITS.maxSlowMs);
  const model = options.model ?? "Simulated Unit";
  const firmware = options.firmware ?? "idmint-sim 1";
  const hwType = options.hwType ?? DEFAULT_HW_TYPE_OID;
  if (!isPlainText(model)) throw optionError(`model "${safeText(String(model), 40)}" is not valid: give 1-128 printable characters`);
  if (!isPlainText(firmware)) throw optionError(`firmware "${safeText(String(firmware), 40)}" is not valid: give 1-128 printable characters`);
  if (typeof hwType !== "string" || !OID_SYNTAX.test(hwType)) throw optionError(`hwType "${safeText(String(hwType), 40)}" is not an OID: write it like 1.3.6.1.4.1.32473.1.1`);

  const faults = new Map<string, Set<UnitFault>>();
  for (const { serial, fault } of options.faults ?? []) {
    if (!(UNIT_FAULTS as readonly string[]).includes(fault)) throw optionError(`fault kind "${fault}" is unknown: use one of ${UNIT_FAULTS.join(", ")}`);
    if (line.indexOf(serial) === undefined) {
      throw optionError(`a fault names serial ${safeText(serial, 70)}, which this simulator does not serve (${line.serialAt(0)} to ${line.serialAt(line.count - 1)})`);
    }
    faults.set(serial, (faults.get(serial) ?? new Set()).add(fault));
  }

  const root = parseCertificate(options.root, "the vendor root");
  if (root.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
    throw optionError(`the vendor root (${root.subject}) is not a CA certificate: give the vendor root certificate (HOME/pki/root.pem)`, "SIM_INPUT");
  }
  try {
    mkdirSync(options.unitsDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw optionError(`cannot create the units directory ${options.unitsDir} (${(e as NodeJS.ErrnoException).code ?? "error"}): give a writable home`, "SIM_INPUT");
  }

  const flash = UnitFlash.open(options.unitsDir);
  let keystore: UnitKeystore;
  try {
    keystore = options.keystore?.kind === "pkcs11" ? Pkcs11Keystore.open(options.keystore) : new SoftKeystore();
  } catch (e) {
    flash.close();
    throw e;
  }
  const ctx: SimContext = { keystore, flash, clock: options.clock ?? systemClock, identity: { model, hwType, firmware }, lastKey: new Map(), provisionedKey: new Map(), line, installs: new InstallChecker(root) };
  return { ctx, faults, slowMs };
}

/**
 * A factory line of simulated units behind a TCP fixture on 127.0.0.1: each accepted
 * connection is the next unit in line order (a serial range, or an explicit list), until
 * `count` units have been handed out (a unit whose connection closed is served again only
 * if it was asked nothing but hello, see SimLink);
 * later connections are told NO_MORE_UNITS. Every unit speaks the unit link protocol
 * (docs/unit-link.md), keeps its key in the chosen keystore and its state in the units' flash
 * under `unitsDir`, and misbehaves as its faults say.
 */
export class UnitSimulator {
  readonly host = SIM_HOST;
  readonly port: number;
  readonly count: number;
  readonly keystore: "soft" | "pkcs11";
  private readonly server: Server;
  private readonly ctx: SimContext;
  private readonly faults: Map<string, Set<UnitFault>>;
  private readonly slowMs: number;
  private readonly links = new Set<SimLink>();
  /** Units whose connection closed before they were asked anything but hello: served again first. */
  private readonly unseen: SimUnit[] = [];
  private nextIndex = 0;
  private closing: Promise<void> | undefined;

  private constructor(p: {
    server: Server;
    ctx: SimContext;
    options: UnitSimulatorOptions;
    faults: Map<string, Set<UnitFault>>;
    slowMs: number;
  }) {
    this.server = p.server;
    this.ctx = p.ctx;
    this.count = p.ctx.line.count;
    this.faults = p.faults;
    this.slowMs = p.slowMs;
    this.keystore = p.ctx.keystore.kind;
    this.port = (p.server.address() as AddressInfo).port;
  }

  /** Checks the options, opens the keystore and listens; rejects with a one-line SimError (or the device, pki or hsm error) otherwise. */
  static async start(options: UnitSimulatorOptions): Promise<UnitSimulator> {
    const port = wholeNumber("port", options.port ?? 0, 0, 65535);
    const { ctx, faults, slowMs } = openSimContext(options);
    const { keystore, flash } = ctx;
    let sim: UnitSimulator | undefined;
    const server = createServer({ noDelay: true }, (socket) => {
      if (sim) sim.accept(socket);
      else socket.destroy();
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: SIM_HOST, port, exclusive: true }, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (e) {
      keystore.close();
      flash.close();
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE") throw new SimError("SIM_LISTEN", `port ${port} on ${SIM_HOST} is in use: pick another port, or 0 for any free one`, { cause: e });
      if (code === "EACCES") throw new SimError("SIM_LISTEN", `not allowed to listen on port ${port}: pick a port above 1023, or 0 for any free one`, { cause: e });
      throw new SimError("SIM_LISTEN", `cannot listen on ${SIM_HOST}:${port} (${code ?? (e as Error).message}): pick another port`, { cause: e });
    }
    server.on("error", () => {
      // Accept failures (EMFILE...) cost one connection; the station sees it as unreachable and retries.
    });
    sim = new UnitSimulator({ server, ctx, options, faults, slowMs });
    return sim;
  }

  /** The serial of the unit at position `index` on the line (0-based). */
  serialAt(index: number): string {
    return this.ctx.line.serialAt(index);
  }

  /** How many units have been handed to connections so far. */
  get served(): number {
    return this.nextIndex;
  }

  /** Connections open now, one per fixture slot in use. */
  get connections(): number {
    return this.links.size;
  }

  /** The next unit in line, or undefined once every unit was handed out. */
  private seat(): SimUnit | undefined {
    const again = this.unseen.shift();
    if (again) return again;
    if (this.nextIndex >= this.count) return undefined;
    const index = this.nextIndex++;
    const serial = this.serialAt(index);
    return new SimUnit(this.ctx, index, serial, this.faults.get(serial) ?? new Set());
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const link = new SimLink(socket, this.seat(), () => this.seat(), this.slowMs, (l, unseen) => {
      this.links.delete(l);
      // Once only: a station that keeps hanging up on a unit's hello never gets it a third time.
      if (unseen && !unseen.seatedAgain) {
        unseen.seatedAgain = true;
        this.unseen.push(unseen);
      }
    });
    this.links.add(link);
  }

  /** Stops listening, drops every connection, waits for the work under way, closes the keystore and the flash. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const link of this.links) link.drop();
      await Promise.allSettled([...this.links].map((l) => l.tail));
      await closed;
      this.ctx.keystore.close();
      this.ctx.flash.close();
    })();
    return this.closing;
  }
}
