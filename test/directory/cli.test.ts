import { cliSuite } from "./cli.suite.js";
import { onStore } from "./stores.js";

onStore("sqlite", cliSuite);
