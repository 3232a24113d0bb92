#!/usr/bin/env node
// The only place that ends the process: everything else returns an exit code.
import { endOutputOnBrokenPipe } from "../dist/cli/io.js";
import { main } from "../dist/cli/main.js";

endOutputOnBrokenPipe();
process.exitCode = await main(process.argv.slice(2));
