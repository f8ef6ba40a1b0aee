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

  it("resolves its types under TypeScript's old node10 resolution too (main, types, typesVersions)", async () => {
    writeFileSync(
      join(installed, 'check.ts'),
      "import { attachSandbox, type NetworkConfig } from 'vcnet';\n" +
        "import { encodeNewLink } from 'vcnet/netlink';\n" +
        'export const used: [typeof attachSandbox, typeof encodeNewLink, NetworkConfig | undefined] = [attachSandbox, encodeNewLink, undefined];\n',
    );
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    for (const resolution of ['node10', 'nodenext']) {
      const module = resolution === 'node10' ? 'commonjs' : 'nodenext';
      await run(
        process.execPath,
        [
          tsc,
          '--noEmit',
          '--strict',
          '--skipLibCheck',
          '--types',
          'node',
          '--typeRoots',
          join(ROOT, 'node_modules', '@types'),
          '--module',
          module,
          '--moduleResolution',
          resolution,
          'check.ts',
        ],
        installed,
      );
    }
  }, 120_000);

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
