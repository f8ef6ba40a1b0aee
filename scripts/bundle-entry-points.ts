/**
 * Replaces the two programs tsc built, dist/cli/main.js (`vcnet`) and dist/cni/main.js (`vcnet-cni`),
 * with one file each that holds all of vcnet's modules and its pure-JavaScript dependencies.
 *
 * Why: Node's ESM loader resolves, reads and compiles every module file on its own. A `vcnet attach`
 * loaded about 300 of them (vcnet's, zod's, commander's, protobuf's), which cost more than half of the
 * command's 0.4 s on a node; the attach itself is a millisecond. A runtime starts `vcnet-cni` for every
 * pod ADD, CHECK and DEL. `npm run bench -- startup` measures both against `node -e 0`.
 *
 * Code the programs load only on demand (`await import(...)`: the CNI plugin's logger and trace
 * exporter, loaded only when its environment asks for them) goes to chunks in dist/chunks/, shared by
 * both programs, so it still costs nothing when unused. dist/chunks/ sits as deep as dist/cli/ and
 * dist/cni/, so paths that bundled modules compute from their own location (`../cni/main.js`, the
 * package root above) are the same from every output file.
 *
 * The library (dist/index.js, dist/netlink/index.js and the rest) stays one module per file: programs
 * that import vcnet bundle it themselves if they want to.
 *
 * pino and pino-pretty go into one CommonJS file of their own, dist/chunks/logging.cjs, which the
 * logger requires at its first log line (most commands write none: nothing of them is read at start).
 * pino-pretty runs as a stream on the main thread, not as a pino transport, which would start a
 * worker from pino's own files. So the package needs neither at run time.
 *
 * Left outside the bundles, loaded from node_modules as before: @opentelemetry/*. The SDK is imported
 * by name only when tracing is configured, and it must share the API package's global registration
 * with the code that made the spans.
 *
 * node-gyp-build is bundled: src/native/binding.ts asks it only for the shim's path under the package
 * root it names (build/Release or prebuilds/), and requires that file itself. Imported from
 * node_modules, it cost every start Node's CommonJS-from-ESM translation (reading the package, the
 * export lexer): about 5 ms of `vcnet --version`, more than it does (docs/performance.md).
 *
 * A runtime may run vcnet-cni while vcnet is rebuilt on a node. So the new chunks are written first
 * (their names carry a hash of their content, so they never overwrite a chunk in use), then each
 * program is replaced by a rename, and only then are the chunks no program names any more removed.
 * At every moment both programs and everything they import exist.
 */
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

// Paths below are relative to the package root, wherever this is run from.
const ROOT = fileURLToPath(new URL('..', import.meta.url));
process.chdir(ROOT);

const EXTERNAL_PACKAGES = ['@opentelemetry/*'] as const;

const CHUNKS = 'dist/chunks';
const LOGGING_PACKAGES = 'logging.cjs';
const built = await build({
  // dist/cli/main.js and dist/cni/main.js, over tsc's.
  entryPoints: ['src/cli/main.ts', 'src/cni/main.ts'],
  outbase: 'src',
  outdir: 'dist',
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  external: [...EXTERNAL_PACKAGES],
  // Bundled CommonJS dependencies (commander, node-gyp-build) require Node's built-in modules: an ES module has no
  // `require` of its own, so each output file makes one.
  banner: {
    js: "import { createRequire as __vcnetCreateRequire } from 'node:module';\nconst require = __vcnetCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
  absWorkingDir: ROOT,
  write: false,
});

// The logger's packages: one file, required by path (src/cli/observability/logger.ts).
const logging = await build({
  stdin: {
    contents: "module.exports = { pino: require('pino').pino, pretty: require('pino-pretty') };",
    resolveDir: ROOT,
    loader: 'js',
    sourcefile: 'logging-packages.cjs',
  },
  outfile: join(CHUNKS, LOGGING_PACKAGES),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  logLevel: 'warning',
  absWorkingDir: ROOT,
  write: false,
});

const outputs = [...built.outputFiles, ...logging.outputFiles].map((file) => ({
  path: relative(process.cwd(), file.path),
  contents: file.contents,
}));
const isChunk = (path: string) => dirname(path) === CHUNKS;
mkdirSync(CHUNKS, { recursive: true });
// The chunks (with their source maps) first, then the programs, each file by rename so that no
// reader sees half of one.
for (const output of [
  ...outputs.filter(({ path }) => isChunk(path)),
  ...outputs.filter(({ path }) => !isChunk(path)),
]) {
  const temporary = join(dirname(output.path), `.${basename(output.path)}.${process.pid}.tmp`);
  // The programs executable: `npm link` points `vcnet` at dist/cli/main.js itself and sets the bit
  // only when it links, so a build after the link would leave a command that cannot run.
  const program = !isChunk(output.path) && output.path.endsWith('.js');
  writeFileSync(temporary, output.contents, { mode: program ? 0o755 : 0o644 });
  renameSync(temporary, output.path);
}
const current = new Set(outputs.filter(({ path }) => isChunk(path)).map(({ path }) => basename(path)));
for (const name of readdirSync(CHUNKS)) {
  if (!current.has(name)) rmSync(join(CHUNKS, name), { force: true });
}
