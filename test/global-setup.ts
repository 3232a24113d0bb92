import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

// CLI tests run the real binary (bin/idmint.js -> dist/), so build it once per test run.
export default function setup(): void {
  const root = fileURLToPath(new URL("..", import.meta.url));
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"], { cwd: root, stdio: "inherit" });
}
