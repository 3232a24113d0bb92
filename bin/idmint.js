#!/usr/bin/env node
// The only place that ends the process: everything else returns an exit code.
// dist/idmint.mjs is dist/ bundled into one file (bin/bundle.mjs), for start-up time; with
// IDMINT_DEBUG set, a bug's stack trace names the TypeScript sources through its source map.
if (process.env.IDMINT_DEBUG) process.setSourceMapsEnabled(true);
const { endOutputOnBrokenPipe, main } = await import("../dist/idmint.mjs");

endOutputOnBrokenPipe();
process.exitCode = await main(process.argv.slice(2));
