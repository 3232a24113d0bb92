import { createRequire } from "node:module";
import { dirname, extname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";

/**
 * The module `name` beside the module at `metaUrl`, to run in a child process or a worker
 * thread, and the execArgv that can load it: compiled JS beside compiled JS, or the TS
 * source under a TS loader. Sources need tsx in the child even when this process has none
 * (vitest transforms its modules itself); when it does have it, the second --import of the
 * same loader URL is the same module and runs once.
 */
export function siblingModule(metaUrl: string, name: string): { path: string; execArgv: string[] } {
  const self = fileURLToPath(metaUrl);
  const ext = extname(self);
  const path = join(dirname(self), `${name}${ext}`);
  if (ext !== ".ts") return { path, execArgv: process.execArgv };
  const tsx = pathToFileURL(createRequire(metaUrl).resolve("tsx")).href;
  return { path, execArgv: [...process.execArgv, "--import", tsx] };
}

/**
 * Starts the module `name` beside `metaUrl` in a worker thread (see siblingModule). Node 20
 * applies --import loaders to the main thread only, so from TS sources the worker first
 * registers tsx itself and then imports the module.
 */
export function siblingWorker(metaUrl: string, name: string, workerData: unknown): Worker {
  const { path } = siblingModule(metaUrl, name);
  if (extname(path) !== ".ts") return new Worker(path, { workerData });
  const tsxApi = pathToFileURL(createRequire(metaUrl).resolve("tsx/esm/api").replace(/\.cjs$/, ".mjs")).href;
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${JSON.stringify(pathToFileURL(path).href)}); })`;
  return new Worker(bootstrap, { eval: true, workerData });
}
