import { storeSuite } from "./store.suite.js";
import { onStore } from "./stores.js";

onStore("sqlite", storeSuite);
