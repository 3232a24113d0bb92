#!/usr/bin/env node
// The only place that ends the process: everything else returns an exit code.
import { main } from "../dist/cli/main.js";

process.exitCode = await main(process.argv.slice(2));
