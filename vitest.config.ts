import { defineConfig } from "vitest/config";

// PKCS#11 state is process-global and native code never sees env changes made in worker
// threads, so every test file runs in its own forked process with its own idmint home
// (and so its own SoftHSM token directory). See ../shared/STACK.md.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    pool: "forks",
    isolate: true,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
