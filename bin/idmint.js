#!/usr/bin/env node
// The only place that ends the process: everything else returns an exit code.
// dist/idmint.mjs is dist/ bundled into one file (bin/bundle.mjs), for start-up time.
import { endOutputOnBrokenPipe, main } from "../dist/idmint.mjs";

endOutputOnBrokenPipe();
process.exitCode = await main(process.argv.slice(2));
