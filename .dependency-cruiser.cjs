// The module table of ../shared/DESIGN.md as import rules, checked by test/layout.test.ts in
// `npm test`. A module may import itself, `core/`, and the modules listed for it, each only
// through its face (`index.ts`; `directory/` also has a client-only face).
const MODULES = {
  cli: ["dashboard", "station", "link", "device", "sim", "directory", "operator", "vouchers", "serials", "ledger", "cms", "pki", "hsm"],
  dashboard: ["station"],
  station: ["link", "serials", "pki", "cms", "ledger", "hsm", "directory", "sim"],
  link: ["pki"],
  device: ["link", "cms", "pki", "hsm"],
  // The simulator checks its own options (the vendor root, serial syntax) with pki's parsers, as device/ does.
  sim: ["device", "link", "pki"],
  directory: ["pki", "cms", "ledger"],
  operator: ["directory", "pki", "cms"],
  vouchers: ["pki", "cms", "hsm", "ledger"],
  serials: ["pki", "hsm"],
  // The ledger signs checkpoints with the station key: pki owns the ECDSA DER encoding it needs.
  ledger: ["hsm", "pki"],
  cms: ["pki", "hsm"],
  pki: ["hsm"],
  hsm: [],
  core: [],
};
const ALL = Object.keys(MODULES);
const anyOf = (names) => `^(${names.join("|")})/`;
const FACES = ["^(" + ALL.join("|") + ")/index\\.ts$", "^directory/client/index\\.ts$"];

module.exports = {
  forbidden: [
    ...Object.entries(MODULES).map(([module, allowed]) => ({
      name: `${module}-imports-only-${allowed.length ? allowed.join("-") : "core"}`,
      comment: `${module}/ may import only ${[...allowed, "core"].join(", ")} (DESIGN.md's module table)`,
      severity: "error",
      from: { path: `^${module}/` },
      to: { path: anyOf(ALL), pathNot: anyOf([module, "core", ...allowed]) },
    })),
    {
      name: "through-the-face",
      comment: "another module is imported only through its index.ts (directory/ also through directory/client/index.ts)",
      severity: "error",
      from: { path: "^([a-z]+)/", pathNot: "^(test|bench)/" },
      to: { path: anyOf(ALL), pathNot: ["^$1/", ...FACES] },
    },
    {
      name: "bench-through-the-face",
      comment: "bench/ imports only module faces, never cli/",
      severity: "error",
      from: { path: "^bench/" },
      to: { path: ["^cli/", anyOf(ALL)], pathNot: FACES },
    },
    {
      name: "nothing-imports-cli",
      comment: "cli/ is the top: only cli/ itself and the tests import it",
      severity: "error",
      from: { pathNot: "^(cli|test)/" },
      to: { path: "^cli/" },
    },
    {
      name: "hsm-interfaces-only",
      comment: "pki/, ledger/ and cms/ take the HSM's interfaces (types) only, never its PKCS#11 code",
      severity: "error",
      from: { path: "^(pki|ledger|cms)/" },
      to: { path: "^hsm/", dependencyTypesNot: ["type-only"] },
    },
    {
      name: "station-starts-sim-only",
      comment: "station/ imports sim/ only to start --sim (station/run.ts)",
      severity: "error",
      from: { path: "^station/", pathNot: "^station/run\\.ts$" },
      to: { path: "^sim/" },
    },
    {
      name: "directory-client-face",
      comment: "station/ and operator/ reach the directory through its client face, which does not load the server",
      severity: "error",
      from: { path: "^(station|operator)/" },
      to: { path: "^directory/", pathNot: "^directory/client/index\\.ts$" },
    },
    {
      name: "no-cycle",
      comment: "no import cycle, within a module or across modules",
      severity: "error",
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(node_modules|dist)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.check.json" },
    moduleSystems: ["es6"],
  },
};
