// Bundles tsc's output (dist/) for start-up time. Node 20 loads one file in about half the time
// it takes to resolve and read our ~150 modules and the ~400 files of the ASN.1 and X.509
// libraries: a command starts in ~0.2-0.3 s instead of ~0.55 s, and every station, script and
// test starts the binary. dist/idmint.mjs is what bin/idmint.js runs; the modules that start a
// child process or a worker thread are bundled in place, so their callers find them where tsc
// put them. Each bundled module's import.meta.url stays its own file's URL.
import { build } from "esbuild";
import { readFile } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");

// Native addons, pg (whose native half is optional) and libraries that find files of their own at run time stay where npm put them.
const external = ["better-sqlite3", "pkcs11js", "pg", "fastify", "yargs", "uplot"];

/** Rewrites import.meta.url in our modules to their own file's URL, reckoned from where the bundle `outfile` lies. */
function ownMetaUrl(outfile) {
  return {
    name: "own-import-meta-url",
    setup(b) {
      b.onLoad({ filter: /\.js$/ }, async (args) => {
        if (!args.path.startsWith(dist + sep)) return undefined;
        const text = await readFile(args.path, "utf8");
        if (!text.includes("import.meta.url")) return undefined;
        const own = `./${relative(dirname(outfile), args.path).split(sep).join("/")}`;
        return { contents: text.replaceAll("import.meta.url", `new URL(${JSON.stringify(own)}, import.meta.url).href`), loader: "js" };
      });
    },
  };
}

function bundle(entry, outfile) {
  return build({
    ...entry,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external,
    plugins: [ownMetaUrl(outfile)],
    // The libraries bundled from CommonJS call require() for Node's own modules.
    banner: { js: 'import { createRequire as idmintCreateRequire } from "node:module";\nconst require = idmintCreateRequire(import.meta.url);' },
    outfile,
    // Mapped back through tsc's maps to the TypeScript sources: IDMINT_DEBUG=1's stack traces name them (bin/idmint.js).
    sourcemap: true,
    allowOverwrite: true,
    logLevel: "warning",
  });
}

const processes = ["sim/child.js", "dashboard/child.js", "hsm/pkcs11/pool-worker.js", "station/store-writer.js"];
await Promise.all([
  bundle({ stdin: { contents: 'export { main } from "./cli/main.js";\nexport { endOutputOnBrokenPipe } from "./cli/io.js";\n', resolveDir: dist, loader: "js" } }, join(dist, "idmint.mjs")),
  ...processes.map((file) => bundle({ entryPoints: [join(dist, file)] }, join(dist, file))),
]);
