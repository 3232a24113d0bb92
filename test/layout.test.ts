import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO, run, scratch } from "./helpers.js";

// The folders the rules speak of; the check runs over every product folder, the bench and cli/.
const CHECKED = ["core", "hsm", "pki", "ledger", "serials", "link", "device", "sim", "cms", "station", "directory", "operator", "vouchers", "dashboard", "cli", "bench"];
const DEPCRUISE = join(REPO, "node_modules", ".bin", "depcruise");

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

/** dependency-cruiser with the project's rules (.dependency-cruiser.cjs), run in `cwd` over the folders that exist there. */
function cruise(cwd: string, folders: string[]): Violation[] {
  const r = run(DEPCRUISE, ["--config", join(cwd, ".dependency-cruiser.cjs"), "--output-type", "json", ...folders], { cwd });
  if (!r.stdout.trim().startsWith("{")) throw new Error(`depcruise did not run (exit ${r.code}): ${r.stderr.trim()}`);
  return (JSON.parse(r.stdout) as { summary: { violations: Violation[] } }).summary.violations;
}

describe("the module table of DESIGN.md, checked by dependency-cruiser", () => {
  const s = scratch("layout");
  afterAll(() => s.cleanup());

  it("holds for the whole tree: no upward arrow, no cycle, no import past a face", () => {
    const folders = CHECKED.filter((f) => existsSync(join(REPO, f)));
    const violations = cruise(REPO, folders);
    expect(violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`)).toEqual([]);
  });

  it("fails on a planted upward arrow, a planted cycle and an import past an index.ts", () => {
    const planted: Record<string, string> = {
      "core/index.ts": "export const core = 1;\n",
      "pki/index.ts": 'export { csr } from "./csr.js";\n',
      "pki/csr.ts": 'import { station } from "../station/index.js";\nexport const csr = station;\n',
      "station/index.ts": 'export const station = 1;\nexport { a } from "./a.js";\n',
      "station/a.ts": 'import { b } from "./b.js";\nexport const a = b;\n',
      "station/b.ts": 'import { a } from "./a.js";\nimport { csr } from "../pki/csr.js";\nexport const b = () => [a, csr];\n',
    };
    for (const [path, text] of Object.entries(planted)) {
      mkdirSync(dirname(join(s.dir, path)), { recursive: true });
      writeFileSync(join(s.dir, path), text);
    }
    copyFileSync(join(REPO, ".dependency-cruiser.cjs"), join(s.dir, ".dependency-cruiser.cjs"));
    writeFileSync(join(s.dir, "tsconfig.check.json"), JSON.stringify({ compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext" } }));
    const found = cruise(s.dir, ["core", "pki", "station"]).map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`);
    expect(found).toEqual(
      expect.arrayContaining([
        "pki-imports-only-hsm: pki/csr.ts -> station/index.ts",
        "through-the-face: station/b.ts -> pki/csr.ts",
        expect.stringMatching(/^no-cycle: station\/(a|b)\.ts -> station\/(a|b)\.ts$/),
      ]),
    );
  });
});
