import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// CLI tests run the real binary (bin/idmint.js -> dist/idmint.mjs, see bin/bundle.mjs), so build it once per test run, from
// scratch: a file left in dist/ by an older layout would let a test pass that a clean clone fails.
export default function setup(): void {
  const root = fileURLToPath(new URL("..", import.meta.url));
  rmSync(join(root, "dist"), { recursive: true, force: true });
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"], { cwd: root, stdio: "inherit" });
  execFileSync(process.execPath, ["bin/bundle.mjs"], { cwd: root, stdio: "inherit" });
}
