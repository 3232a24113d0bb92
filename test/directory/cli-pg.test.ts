import { cliSuite } from "./cli.suite.js";
import { onStore } from "./stores.js";

onStore("postgres", cliSuite);
