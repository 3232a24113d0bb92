import { defineConfig } from "vitest/config";

// PKCS#11 state is process-global and native code never sees env changes made in worker
// threads, so every test file runs in its own forked process with its own idmint home
// (and so its own SoftHSM token directory). See ../shared/STACK.md.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    pool: "forks",
    // vitest's default on 2 cores is one fork at a time; most of the suite waits on the
    // processes it spawns, so two files at once finish in about half the time.
    maxWorkers: 2,
    isolate: true,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
