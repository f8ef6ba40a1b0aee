/**
 * `npm install vcnet` on a machine that cannot compile: the package is packed (`npm pack`, whose prepack
 * builds dist/ and the prebuilt addon), installed into an empty folder with install scripts disabled, and
 * the installed `vcnet scan` reads a namespace this test made. The pack runs in a copy of the sources, so
 * the checkout's build/ and dist/ are never rebuilt under other tests.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanupNamespaces } from '../../helpers/namespace.js';
import { makePod } from '../../helpers/pod.js';

const execFileAsync = promisify(execFile);
const ROOT = new URL('../../../', import.meta.url).pathname;
// What `npm pack` needs from the checkout: the package's own files and what its prepack builds them from.
const SOURCES = [
  'package.json',
  'package-lock.json',
  'README.md',
  'CHANGELOG.md',
  'LICENSE',
  'binding.gyp',
  'tsconfig.json',
  'tsconfig.build.json',
  'native',
  'proto',
  'scripts/bundle-entry-points.ts',
  'scripts/keep-native-build.mjs',
  'src',
  'docs',
];
// A file a build of some earlier source left in dist/: prepack starts from an empty dist/, so it must not ship.
const STALE_FILE = 'dist/hypervisor/index.js';
const PREBUILD_DIRECTORY = `prebuilds/${platform()}-${arch()}/`;

let checkoutKeptItsBuild: boolean;
let workspace: string;
let installed: string;
let packedFiles: string[];
let tarball: string;

/** Runs a command without blocking the test worker (a pack and an install take minutes on a busy machine). */
async function run(command: string, args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { cwd, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(
      `${command} ${args.join(' ')} failed in ${cwd}: ${String(error)}\n${stdout ?? ''}\n${stderr ?? ''}`,
    );
  }
}

beforeAll(async () => {
  workspace = mkdtempSync(join(tmpdir(), 'vcnet-pack-'));
  const source = join(workspace, 'source');
  mkdirSync(source);
  for (const entry of SOURCES) cpSync(join(ROOT, entry), join(source, entry), { recursive: true });
  // The checkout's dev dependencies (tsc, prebuildify) do the building; nothing is downloaded for it.
  symlinkSync(join(ROOT, 'node_modules'), join(source, 'node_modules'));
  mkdirSync(join(source, 'dist', 'hypervisor'), { recursive: true });
  writeFileSync(join(source, STALE_FILE), 'export {};\n');
  await run('npm', ['pack', '--pack-destination', workspace], source);
  checkoutKeptItsBuild = existsSync(join(source, 'build', 'Release', 'vcnet_native.node'));
  const tarballs = readdirSync(workspace).filter((name) => name.endsWith('.tgz'));
  expect(tarballs).toHaveLength(1);
  tarball = join(workspace, tarballs[0]!);
  packedFiles = (await run('tar', ['-tzf', tarball], workspace))
    .split('\n')
    .filter(Boolean)
    .map((path) => path.replace(/^package\//, ''));

  installed = join(workspace, 'consumer');
  mkdirSync(installed);
  // A package.json of its own, so npm installs here and not into some project above /tmp.
  writeFileSync(join(installed, 'package.json'), '{ "name": "consumer", "private": true }\n');
  // --ignore-scripts: no install step runs, so nothing can compile; the addon must come from the tarball.
  await run('npm', ['install', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', tarball], installed);
}, 600_000);

afterEach(() => {
  cleanupNamespaces();
});

afterAll(() => {
  if (workspace) rmSync(workspace, { recursive: true, force: true });
});

describe('the packed vcnet package', () => {
  it("leaves the checkout's own build of the shim in build/Release (prebuildify moves it into prebuilds/)", () => {
    expect(checkoutKeptItsBuild).toBe(true);
  });

  it('ships the prebuilt addon and the sources for a source build, but no local build', () => {
    // prebuildify names it after the package, tagged with the libc it was built against.
    expect(packedFiles.filter((path) => path.startsWith(PREBUILD_DIRECTORY))).toEqual([
      `${PREBUILD_DIRECTORY}vcnet.glibc.node`,
    ]);
    expect(packedFiles).toContain('native/vcnet_native.c');
    expect(packedFiles).toContain('binding.gyp');
    expect(packedFiles).toContain('dist/cli/main.js');
    expect(packedFiles.filter((path) => path.startsWith('build/'))).toEqual([]);
    // package.json says Apache-2.0: the license text goes with it.
    expect(packedFiles).toContain('LICENSE');
  });

  it('ships what its README links to, nothing a stale build left, and of the programs only their bundles', () => {
    // The installed README links to CHANGELOG.md and docs/*.md.
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const linked = [...readme.matchAll(/\]\(((?:docs\/[\w.-]+|CHANGELOG)\.md)/g)].map((match) => match[1]!);
    expect(linked.length).toBeGreaterThan(5);
    for (const path of [...linked, 'CHANGELOG.md', 'docs/history/0.1.0-development.md']) {
      expect(packedFiles, path).toContain(path);
    }
    expect(packedFiles).not.toContain(STALE_FILE);
    // The library does not import tsc's per-module copies of the programs: only the bundles ship.
    expect(packedFiles.filter((path) => /^dist\/(cli|cni)\//.test(path)).sort()).toEqual([
      'dist/cli/main.js',
      'dist/cli/main.js.map',
      'dist/cni/main.js',
      'dist/cni/main.js.map',
    ]);
    // src/ does not ship: every source map carries its sources.
    const maps = packedFiles.filter((path) => path.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(10);
    for (const map of maps) {
      const { sources, sourcesContent } = JSON.parse(
        readFileSync(join(installed, 'node_modules', 'vcnet', map), 'utf8'),
      ) as { sources: string[]; sourcesContent?: Array<string | null> };
      expect(sourcesContent?.length, map).toBe(sources.length);
      expect(
        sourcesContent?.every((content) => typeof content === 'string'),
        map,
      ).toBe(true);
    }
    const manifest = JSON.parse(readFileSync(join(installed, 'node_modules', 'vcnet', 'package.json'), 'utf8')) as {
      os?: string[];
    };
    expect(manifest.os).toEqual(['linux']);
  });

  it('installed without scripts, loads the prebuild and scans a namespace with the installed vcnet', () => {
    const packageDirectory = join(installed, 'node_modules', 'vcnet');
    expect(existsSync(join(packageDirectory, 'build'))).toBe(false);
    const loaded = execFileSync(
      process.execPath,
      ['-e', "console.log(require('node-gyp-build').path(process.argv[1]))", packageDirectory],
      { cwd: installed, encoding: 'utf8' },
    ).trim();
    expect(loaded).toBe(join(packageDirectory, PREBUILD_DIRECTORY, 'vcnet.glibc.node'));

    const { pod } = makePod();
    const scan = spawnSync(join(installed, 'node_modules', '.bin', 'vcnet'), ['scan', '--netns', pod.path], {
      cwd: installed,
      encoding: 'utf8',
    });
    expect(scan.stderr).toBe('');
    expect(scan.status).toBe(0);
    expect(scan.stdout).toMatch(/^NAME\s+KIND\s+MTU/m);
    expect(scan.stdout).toMatch(/eth0\s+veth\s+1500/);
  });

  it('installs no logging or tracing package, and the installed programs still log (pino is bundled in them)', () => {
    // The library's runtime dependencies are its own: pino and pino-pretty are inside the programs'
    // bundles, @opentelemetry/api is an optional peer (the OpenTelemetry SDK a user adds brings it).
    for (const name of ['pino', 'pino-pretty', '@opentelemetry/api']) {
      expect(existsSync(join(installed, 'node_modules', name)), name).toBe(false);
    }
    const { pod } = makePod();
    const scan = (format: string) =>
      spawnSync(
        join(installed, 'node_modules', '.bin', 'vcnet'),
        ['--log-level', 'debug', '--log-format', format, 'scan', '--netns', pod.path],
        { cwd: installed, encoding: 'utf8' },
      );
    const json = scan('json');
    expect(json.status, json.stderr).toBe(0);
    const first = JSON.parse(json.stderr.trim().split('\n')[0]!) as { level: number; msg: string };
    expect(first).toMatchObject({ level: 20, msg: 'netlink batch' });
    const pretty = scan('pretty');
    expect(pretty.status, pretty.stderr).toBe(0);
    expect(pretty.stderr).toMatch(/DEBUG.*: netlink batch/);
  });

  it('installed with scripts, its install step finds the prebuild and compiles nothing', async () => {
    const withScripts = join(workspace, 'consumer-with-scripts');
    mkdirSync(withScripts);
    writeFileSync(join(withScripts, 'package.json'), '{ "name": "consumer-with-scripts", "private": true }\n');
    await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball],
      withScripts,
    );
    // node-gyp-build's install step only runs node-gyp (which would make build/) when no prebuild loads.
    expect(existsSync(join(withScripts, 'node_modules', 'vcnet', PREBUILD_DIRECTORY, 'vcnet.glibc.node'))).toBe(true);
    expect(existsSync(join(withScripts, 'node_modules', 'vcnet', 'build'))).toBe(false);
  }, 300_000);

  it('names the platform when neither a build nor a prebuild fits', () => {
    const empty = join(workspace, 'no-addon');
    mkdirSync(empty, { recursive: true });
    expect(readdirSync(empty)).toEqual([]);
    const { pod } = makePod();
    const scan = spawnSync(join(installed, 'node_modules', '.bin', 'vcnet'), ['scan', '--netns', pod.path], {
      cwd: installed,
      encoding: 'utf8',
      env: { ...process.env, VCNET_PREBUILD: empty },
    });
    expect(scan.status).toBe(5);
    expect(scan.stderr).toContain('no native shim fits this machine');
    expect(scan.stderr).toContain(`platform ${platform()}, arch ${arch()}, libc glibc`);
    expect(scan.stderr).toContain(`ABI ${process.versions.modules}`);
    expect(scan.stderr).toMatch(/hint: .*npm rebuild vcnet/);
  });
});

/**
 * The installed package in a user's own project: loaded from ES modules and CommonJS, and compiled by
 * TypeScript under each module setting a project uses, with `strict` and `skipLibCheck: false` (every
 * .d.ts the package brings is checked: ours and our dependencies'), then run. What does not work is
 * what docs/library.md says does not, with the setting that does.
 */
describe('the installed vcnet in a project of its own', () => {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  /** What each program prints: the entries' exports it uses are functions and classes. */
  const LOADED = 'attachSandbox function, scanNamespace function, VcnetError function, NetlinkHandle function';
  const REPORT =
    "console.log('attachSandbox ' + typeof vcnet.attachSandbox + ', scanNamespace ' + typeof vcnet.scanNamespace + " +
    "', VcnetError ' + typeof vcnet.VcnetError + ', NetlinkHandle ' + typeof netlink.NetlinkHandle);\n";
  const STATIC_IMPORTS =
    "import * as vcnet from 'vcnet';\nimport * as netlink from 'vcnet/netlink';\n" +
    "import { attachSandbox, type NetworkConfig } from 'vcnet';\nimport { encodeNewLink } from 'vcnet/netlink';\n" +
    'export const used: [typeof attachSandbox, typeof encodeNewLink, NetworkConfig | undefined] = [attachSandbox, encodeNewLink, undefined];\n' +
    REPORT;
  const DYNAMIC_IMPORTS =
    "async function main(): Promise<void> {\n  const vcnet = await import('vcnet');\n  const netlink = await import('vcnet/netlink');\n" +
    // A type-only import of an ES module from CommonJS needs `with { 'resolution-mode': 'import' }` (TS1542).
    "  const config: import('vcnet', { with: { 'resolution-mode': 'import' } }).NetworkConfig | undefined = undefined;\n  void config;\n  " +
    REPORT +
    '}\nvoid main();\n';
  /** Node 20.19 and later (and 22.12) load an ES module with require(); older ones throw ERR_REQUIRE_ESM. */
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  const requireEsm = major > 22 || (major === 22 && minor >= 12) || (major === 20 && minor >= 19);
  if (!requireEsm) console.log(`skipping require(esm) checks: Node ${process.versions.node} has no require(esm)`);

  /** Writes a project of its own under the consumer (so node_modules/vcnet resolves) and answers its folder. */
  function project(name: string, packageType: 'module' | 'commonjs', files: Record<string, string>): string {
    const folder = join(installed, name);
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'package.json'), JSON.stringify({ name, private: true, type: packageType }));
    for (const [file, text] of Object.entries(files)) writeFileSync(join(folder, file), text);
    return folder;
  }

  /** Compiles a project with tsc; answers tsc's exit status and its error lines. */
  async function compile(folder: string, compilerOptions: Record<string, unknown>) {
    writeFileSync(
      join(folder, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          skipLibCheck: false,
          target: 'es2022',
          // Node's types from the checkout: the user's project has its own @types/node.
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules', '@types')],
          outDir: 'out',
          ...compilerOptions,
        },
        include: ['*.ts'],
      }),
    );
    try {
      await execFileAsync(process.execPath, [tsc, '-p', folder], { cwd: folder, maxBuffer: 16 * 1024 * 1024 });
      return { status: 0, errors: [] as string[] };
    } catch (error) {
      const { stdout = '', code } = error as { stdout?: string; code?: number };
      return { status: code ?? -1, errors: stdout.split('\n').filter((line) => line.includes('error TS')) };
    }
  }

  it('loads from an ES module, from CommonJS by import(), and by require() on a Node with require(esm), and scans a namespace', () => {
    const { pod } = makePod();
    const programs: Record<string, string> = {
      'esm.mjs': "import * as vcnet from 'vcnet';\nimport * as netlink from 'vcnet/netlink';\n",
      'dynamic.cjs':
        "(async () => {\nconst vcnet = await import('vcnet');\nconst netlink = await import('vcnet/netlink');\n",
      ...(requireEsm
        ? { 'require.cjs': "{\nconst vcnet = require('vcnet');\nconst netlink = require('vcnet/netlink');\n" }
        : {}),
    };
    for (const [file, opening] of Object.entries(programs)) {
      const closing = file === 'dynamic.cjs' ? '})();\n' : file === 'require.cjs' ? '}\n' : '';
      const scan =
        'vcnet.scanNamespace(process.argv[2]).then((scan) => console.log(scan.interfaces.map((info) => info.link.name).join(", ")));\n';
      writeFileSync(join(installed, file), opening + REPORT + scan + closing);
      // require(esm) of a graph with a top-level await throws ERR_REQUIRE_ASYNC_MODULE; Node 20 says nothing else on stderr.
      const loaded = spawnSync(process.execPath, [file, pod.path], { cwd: installed, encoding: 'utf8' });
      expect({ file, status: loaded.status, stderr: loaded.stderr }).toEqual({ file, status: 0, stderr: '' });
      expect(loaded.stdout.split('\n'), file).toEqual([LOADED, 'eth0', '']);
    }
  });

  // Each module setting a project uses, with esModuleInterop and with the setting that works without it.
  const MODULE_SETTINGS: Array<{
    name: string;
    packageType: 'module' | 'commonjs';
    options: Record<string, unknown>;
    source: string;
    needsRequireEsm?: boolean;
  }> = [
    { name: 'nodenext-esm', packageType: 'module', options: { module: 'nodenext' }, source: STATIC_IMPORTS },
    // TypeScript 5.8 and later type require() of an ES module under nodenext, as Node 20.19 runs it.
    {
      name: 'nodenext-cjs',
      packageType: 'commonjs',
      options: { module: 'nodenext' },
      source: STATIC_IMPORTS,
      needsRequireEsm: true,
    },
    { name: 'node16-esm', packageType: 'module', options: { module: 'node16' }, source: STATIC_IMPORTS },
    // node16 does not know require(esm): a CommonJS file reaches vcnet by import() (a static import is TS1479).
    { name: 'node16-cjs', packageType: 'commonjs', options: { module: 'node16' }, source: DYNAMIC_IMPORTS },
    {
      name: 'bundler',
      packageType: 'module',
      options: { module: 'esnext', moduleResolution: 'bundler' },
      source: STATIC_IMPORTS,
    },
    // node10 finds the types through main, types and typesVersions (vcnet/netlink).
    {
      name: 'commonjs-node10',
      packageType: 'commonjs',
      options: { module: 'commonjs', moduleResolution: 'node10' },
      source: STATIC_IMPORTS,
      needsRequireEsm: true,
    },
  ];
  const INTEROP: Array<{ name: string; options: Record<string, unknown> }> = [
    { name: 'esModuleInterop', options: { esModuleInterop: true } },
    {
      name: 'allowSyntheticDefaultImports',
      options: { esModuleInterop: false, allowSyntheticDefaultImports: true },
    },
    // Both off (bundler would turn the second on by itself): vcnet's declarations reach no zod type,
    // whose CommonJS declarations need one of them (TS1259), so nothing needs either.
    {
      name: 'noInteropFlag',
      options: { esModuleInterop: false, allowSyntheticDefaultImports: false },
    },
  ];
  for (const setting of MODULE_SETTINGS) {
    for (const interop of INTEROP) {
      it(`compiles under module ${setting.name} with ${interop.name}, strict and skipLibCheck false, and runs`, async () => {
        const folder = project(`ts-${setting.name}-${interop.name}`, setting.packageType, {
          'index.ts': setting.source,
        });
        const compiled = await compile(folder, { ...setting.options, ...interop.options });
        expect(compiled).toEqual({ status: 0, errors: [] });
        if (setting.needsRequireEsm && !requireEsm) return;
        const ran = spawnSync(process.execPath, [join(folder, 'out', 'index.js')], { cwd: folder, encoding: 'utf8' });
        expect({ status: ran.status, stderr: ran.stderr, stdout: ran.stdout }).toEqual({
          status: 0,
          stderr: '',
          stdout: `${LOADED}\n`,
        });
      }, 120_000);
    }
  }

  it('compiles every js and ts block of docs/library.md against the installed types (strict, skipLibCheck false)', async () => {
    // A block without an import continues the one before it (it uses that block's names).
    const page = readFileSync(join(ROOT, 'docs/library.md'), 'utf8');
    const blocks: Array<{ line: number; code: string }> = [];
    for (const match of page.matchAll(/^```(?:js|ts)\n([\s\S]*?)^```$/gm)) {
      const line = page.slice(0, match.index).split('\n').length;
      const code = match[1]!;
      const previous = blocks.at(-1);
      if (!/^import /m.test(code) && previous) previous.code += code;
      else blocks.push({ line, code });
    }
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    const files = Object.fromEntries(
      blocks.map(({ line, code }) => [`library-md-line-${line}.ts`, `${code}export {};\n`]),
    );
    const folder = project('ts-library-md', 'module', files);
    expect(await compile(folder, { module: 'nodenext', noEmit: true })).toEqual({ status: 0, errors: [] });
  }, 120_000);

  it('under module node16, a static import from a CommonJS file is refused (TS1479) in that file alone', async () => {
    const folder = project('ts-node16-cjs-static', 'commonjs', { 'index.ts': STATIC_IMPORTS });
    const compiled = await compile(folder, { module: 'node16', esModuleInterop: true });
    expect(compiled.status).not.toBe(0);
    expect(compiled.errors.length).toBeGreaterThan(0);
    expect(compiled.errors.filter((line) => !/^index\.ts\(\d+,\d+\): error TS1479: /.test(line))).toEqual([]);
  }, 120_000);
});
