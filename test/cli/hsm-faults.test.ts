import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { IdmintConfig, KeyRole } from "../../core/index.js";
import { parsePkcs11Uri } from "../../hsm/index.js";
import { UnitSimulator } from "../../sim/index.js";
import { idmint, idmintBounded, lineHome, oneLineError, openssl, scratch, type BoundedRun } from "../helpers.js";

// Issue 16: every command that touches the HSM, run as the real binary with a wrong PIN, a
// missing token and a missing or bogus module, ends by itself within 10 s with exit 4, one
// line on stderr, and nothing of it left running.

const LIMIT_MS = 10_000;
const s = scratch("hsm-faults");
afterAll(() => s.cleanup());

/** Which key a fault breaks: one of idmint.json's roles, or the token of the simulated units' secure elements. */
type Role = KeyRole | "unitToken";

interface Command {
  name: string;
  /** The home it starts from: the line's (CA made, allocation imported), or one with only `hsm init`. */
  from: "line" | "fresh";
  /** The key whose PIN is wrong, or whose token is missing: the one the command uses first, unless said otherwise. */
  role: Role;
  args(home: string): string[];
  /** What the refusal must have left as it was, beyond the exit code and the one line. */
  after?(home: string): void;
}

interface Fault {
  name: string;
  edit(home: string, role: Role): void;
  says(role: Role, home: string): RegExp;
}

let line: string;
let fresh: string;
let csr: string;
let encrypted: string;
let textFile: string;
let fixture: UnitSimulator;
// Nothing listens there: the HSM is settled before the directory is ever asked.
const DEAD_DIRECTORY = "http://127.0.0.1:9";

const configPath = (home: string) => join(home, "idmint.json");
const readConfig = (home: string) => JSON.parse(readFileSync(configPath(home), "utf8")) as IdmintConfig;
const editConfig = (home: string, edit: (c: IdmintConfig) => void) => {
  const c = readConfig(home);
  edit(c);
  writeFileSync(configPath(home), JSON.stringify(c, null, 2));
};
const roleUri = (c: IdmintConfig, role: Role) => (role === "unitToken" ? c.simulator!.unitTokenUri! : c.keys[role]);
const tokenOf = (home: string, role: Role) => parsePkcs11Uri(roleUri(readConfig(home), role)).token!;

/** A copy of a home that names only itself: its idmint.json and SoftHSM2 configuration point into the copy. */
let copies = 0;
function copyHome(from: string): string {
  const to = `${from}-${++copies}`;
  cpSync(from, to, { recursive: true });
  for (const file of [configPath(to), join(to, "hsm", "softhsm2.conf")]) writeFileSync(file, readFileSync(file, "utf8").replaceAll(`${from}/`, `${to}/`));
  return to;
}

const FAULTS: Fault[] = [
  {
    name: "a wrong PIN",
    edit: (home, role) => {
      const source = parsePkcs11Uri(roleUri(readConfig(home), role)).pinSource!;
      writeFileSync(source.replace(/^file:/, ""), "0000\n");
    },
    says: (role, home) => new RegExp(`wrong PIN for token ${tokenOf(home, role)}:`),
  },
  {
    name: "a missing token",
    edit: (home, role) => {
      const token = tokenOf(home, role);
      editConfig(home, (c) => {
        const unplugged = roleUri(c, role).replace(`token=${token}`, `token=${token}-unplugged`);
        if (role === "unitToken") c.simulator!.unitTokenUri = unplugged;
        else c.keys[role] = unplugged;
      });
    },
    says: (role, home) => new RegExp(`no token ${tokenOf(home, role)}-unplugged in PKCS#11 module`),
  },
  {
    name: "a module that does not exist",
    edit: (home) => editConfig(home, (c) => (c.hsm.module = "/nonexistent/libpkcs11.so")),
    says: () => /PKCS#11 module \/nonexistent\/libpkcs11\.so does not exist/,
  },
  {
    name: "a text file as the module",
    edit: (home) => editConfig(home, (c) => (c.hsm.module = textFile)),
    says: () => /cannot load PKCS#11 module .*not-a-module\.txt/,
  },
];

/** A refused `station run` releases the home's run lock and writes no certificate. */
const lineUntouched = (home: string) => {
  expect(existsSync(join(home, "station.lock")), "the run lock is left").toBe(false);
  expect(existsSync(join(home, "certs", "SN000002.pem"))).toBe(false);
};

const COMMANDS: Command[] = [
  // The station key is made last: the three keys made before it must go again.
  { name: "ca init", from: "fresh", role: "station", args: () => ["ca", "init"], after: (home) => expect(existsSync(join(home, "pki", "root.pem"))).toBe(false) },
  { name: "ca issue", from: "line", role: "factoryCa", args: (home) => ["ca", "issue", "--csr", csr, "--serial", "SN000020", "--out", join(home, "SN000020.pem")], after: (home) => expect(existsSync(join(home, "SN000020.pem"))).toBe(false) },
  {
    name: "serials allocate",
    from: "line",
    role: "allocationSigner",
    args: (home) => ["serials", "allocate", "--order", "PO-2", "--station", "station-1", "--model", "RT-1", "--count", "5", "--prefix", "SX", "--start", "1", "--out", join(home, "more.json")],
    after: (home) => expect(existsSync(join(home, "more.json"))).toBe(false),
  },
  { name: "station run --sim", from: "line", role: "factoryCa", args: () => ["station", "run", "--sim", "2"], after: lineUntouched },
  { name: "station run --fixture", from: "line", role: "factoryCa", args: () => ["station", "run", "--fixture", `127.0.0.1:${fixture.port}`], after: lineUntouched },
  // The factory CA's key is fine: the uploader's signer, the station key, is the one refused.
  { name: "station run --sim --directory", from: "line", role: "station", args: () => ["station", "run", "--sim", "2", "--directory", DEAD_DIRECTORY], after: lineUntouched },
  // The simulated units' secure element, opened in the simulator's own process.
  { name: "station run --sim --keystore pkcs11", from: "line", role: "unitToken", args: () => ["station", "run", "--sim", "2", "--keystore", "pkcs11"], after: lineUntouched },
  { name: "station report", from: "line", role: "station", args: (home) => ["station", "report", "--out", join(home, "report.json")], after: (home) => expect(existsSync(join(home, "report.json"))).toBe(false) },
  { name: "station upload", from: "line", role: "station", args: () => ["station", "upload", "--directory", DEAD_DIRECTORY] },
  { name: "ledger checkpoint", from: "line", role: "station", args: () => ["ledger", "checkpoint"] },
  { name: "hsm list", from: "line", role: "factoryCa", args: () => ["hsm", "list"] },
  { name: "hsm check", from: "line", role: "factoryCa", args: () => ["hsm", "check"] },
  // A server: it would serve until stopped if its token were not opened before it listens.
  { name: "unit sim --keystore pkcs11", from: "line", role: "unitToken", args: () => ["unit", "sim", "--port", "0", "--count", "2", "--prefix", "U", "--start", "1", "--keystore", "pkcs11"] },
  { name: "unit decrypt (a key in a token)", from: "line", role: "unitToken", args: (home) => ["unit", "decrypt", "--serial", "SN000001", "--in", encrypted, "--out", join(home, "router.cfg")], after: (home) => expect(existsSync(join(home, "router.cfg"))).toBe(false) },
];
// `ledger prove` reads the latest checkpoint and signs nothing; `serials import`, `status`,
// `scrap`, `reconcile`, `ledger verify`, `directory`, `operator` and `unit export` never open the HSM.

function expectCleanEnd(r: BoundedRun, says: RegExp): void {
  expect(r.timedOut, `still running after ${LIMIT_MS} ms; stderr: ${r.stderr}`).toBe(false);
  expect(r.leftovers, "processes of the run still alive after it ended").toEqual([]);
  expect(r.code, r.stderr).toBe(4);
  expect(oneLineError(r)).toMatch(says);
}

beforeAll(async () => {
  textFile = join(s.dir, "not-a-module.txt");
  writeFileSync(textFile, "a PKCS#11 module is a shared library, not this\n");
  line = lineHome(s.dir, "line", 20).home;
  fresh = join(s.dir, "fresh");
  for (const [home, args] of [
    [fresh, ["hsm", "init"]],
    // SN000001 gets its key in the units' token, and a configuration encrypted to it.
    [line, ["station", "run", "--sim", "1", "--keystore", "pkcs11"]],
    [line, ["operator", "encrypt", "--cert", join(line, "certs", "SN000001.pem"), "--in", textFile, "--out", join(s.dir, "router.cfg.cms")]],
  ] as const) {
    const r = idmint(["--home", home, ...args]);
    if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
  }
  encrypted = join(s.dir, "router.cfg.cms");
  csr = join(s.dir, "SN000020.csr");
  const req = openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(s.dir, "SN000020.key"), "-subj", "/serialNumber=SN000020/CN=unit", "-out", csr]);
  if (req.code !== 0) throw new Error(req.stderr);
  // A real fixture on TCP, which the station must never reach: the HSM refuses first.
  fixture = await UnitSimulator.start({ unitsDir: join(s.dir, "fixture-units"), root: readFileSync(join(line, "pki", "root.pem")), count: 2, prefix: "SN", start: 2 });
});
afterAll(() => fixture?.close());

describe.concurrent("every command that opens the HSM ends within 10 s with exit 4 and one line", () => {
  for (const command of COMMANDS) {
    for (const fault of FAULTS) {
      it(`${command.name}: ${fault.name}`, async () => {
        const home = copyHome(command.from === "line" ? line : fresh);
        const says = fault.says(command.role, home);
        fault.edit(home, command.role);
        const r = await idmintBounded(["--home", home, ...command.args(home)], { limitMs: LIMIT_MS });
        expectCleanEnd(r, says);
        command.after?.(home);
        expect(fixture.served, "the station reached the fixture").toBe(0);
      });
    }
  }

  // These make their own tokens: only the module can be wrong, named by IDMINT_PKCS11_MODULE.
  const modules = [
    { name: "a module that does not exist", module: () => "/nonexistent/libpkcs11.so", says: /PKCS#11 module \/nonexistent\/libpkcs11\.so does not exist/ },
    { name: "a text file as the module", module: () => textFile, says: /cannot load PKCS#11 module .*not-a-module\.txt/ },
  ];
  for (const { name, module, says } of modules) {
    for (const [what, args] of [
      ["hsm init", ["hsm", "init"]],
      ["demo", ["demo", "--units", "2"]],
    ] as const) {
      it(`${what}: ${name}`, async () => {
        const home = join(s.dir, `${what.replace(" ", "-")}-${++copies}`);
        const r = await idmintBounded(["--home", home, ...args], { env: { IDMINT_PKCS11_MODULE: module() }, limitMs: LIMIT_MS });
        expectCleanEnd(r, says);
      });
    }
  }
});
