import { uploadSuite } from "./upload.suite.js";
import { onStore } from "./stores.js";

onStore("sqlite", uploadSuite);
