/**
 * The two programs, dist/cli/main.js (`vcnet`) and dist/cni/main.js (`vcnet-cni`), are bundles
 * (scripts/bundle-entry-points.ts): they and their chunks (dist/chunks/) import only Node's built-in
 * modules, the packages left outside on purpose, and each other, never a module of vcnet's own or a
 * bundled dependency, which Node would load one file at a time again. pino and pino-pretty are
 * bundled into dist/chunks/logging.cjs, which the logger reads at its first log line (a run that logs
 * nothing does not read it); OpenTelemetry is loaded only when asked to export. And each program
 * runs, also logging.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanupNamespaces, makeNamespace } from '../../helpers/namespace.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const DIST = join(ROOT, 'dist');
const PROGRAMS = ['cli/main.js', 'cni/main.js'];
const CHUNKS = readdirSync(join(DIST, 'chunks'))
  .filter((name) => name.endsWith('.js'))
  .map((name) => `chunks/${name}`);
/** scripts/bundle-entry-points.ts's EXTERNAL_PACKAGES, as package names. */
const LEFT_OUTSIDE = ['@opentelemetry/api'];

/** The module specifiers a file imports: statically, and with a literal import(). */
function importsOf(file: string): { static: string[]; dynamic: string[] } {
  const source = readFileSync(join(DIST, file), 'utf8');
  const found = { static: new Set<string>(), dynamic: new Set<string>() };
  for (const match of source.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s*["']([^"']+)["']/gm))
    found.static.add(match[1]!);
  for (const match of source.matchAll(/^\s*import\s*["']([^"']+)["']/gm)) found.static.add(match[1]!);
  for (const match of source.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) found.dynamic.add(match[1]!);
  return { static: [...found.static], dynamic: [...found.dynamic] };
}

const isBuiltin = (specifier: string) =>
  specifier.startsWith('node:') || builtinModules.includes(specifier.split('/')[0]!);
const isRelative = (specifier: string) => specifier.startsWith('.');
/** A relative specifier of `file` as a path under dist/. */
const target = (file: string, specifier: string) => relative(DIST, resolve(dirname(join(DIST, file)), specifier));

/**
 * Programs whose first file imports nothing and loads the program with one import() (src/cli/main.ts
 * and src/cni/main.ts, so that a load refused at the open-file limit is a vcnet error, and a CNI
 * error on stdout): that import is part of every start.
 */
const STARTS_BY_IMPORT = new Set(['cli/main.js', 'cni/main.js']);

/** The files under dist/ a program loads at start: itself and its static imports, through the chunks. */
function filesLoadedAtStart(program: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const imports = importsOf(file);
    const atStart = STARTS_BY_IMPORT.has(file) ? [...imports.static, ...imports.dynamic] : imports.static;
    for (const specifier of atStart) if (isRelative(specifier)) visit(target(file, specifier));
  };
  visit(program);
  return seen;
}

/** Every package a program loads at start: what the files it loads at start import statically. */
function packagesLoadedAtStart(program: string): Set<string> {
  const packages = new Set<string>();
  for (const file of filesLoadedAtStart(program)) {
    for (const specifier of importsOf(file).static) {
      if (!isRelative(specifier) && !isBuiltin(specifier)) packages.add(specifier);
    }
  }
  return packages;
}

describe('the bundled programs', () => {
  it('pino and pino-pretty are in dist/chunks/logging.cjs alone, which no program imports (the logger requires it)', () => {
    const logging = readFileSync(join(DIST, 'chunks/logging.cjs'), 'utf8');
    expect(logging).toMatch(/^\/\/ node_modules\/pino\/pino\.js$/m);
    expect(logging).toMatch(/^\/\/ node_modules\/pino-pretty\/index\.js$/m);
    const holdsPino = (file: string) => /^\/\/ node_modules\/pino\//m.test(readFileSync(join(DIST, file), 'utf8'));
    expect([...PROGRAMS, ...CHUNKS].filter(holdsPino)).toEqual([]);
  });

  it('the programs are executable after a build (a `vcnet` that npm link points at dist/ keeps running)', () => {
    for (const program of PROGRAMS) {
      expect({ program, executable: (statSync(join(DIST, program)).mode & 0o111) === 0o111 }).toEqual({
        program,
        executable: true,
      });
    }
  });

  it('dist/chunks holds the code the two programs share, and no chunk of an earlier build', () => {
    expect(CHUNKS.length).toBeGreaterThan(0);
    const imported = new Set<string>();
    for (const file of [...PROGRAMS, ...CHUNKS]) {
      const { static: statics, dynamic } = importsOf(file);
      for (const specifier of [...statics, ...dynamic].filter(isRelative)) imported.add(target(file, specifier));
    }
    expect(CHUNKS.filter((chunk) => !imported.has(chunk))).toEqual([]);
  });

  for (const file of [...PROGRAMS, ...CHUNKS]) {
    it(`dist/${file} imports only Node's modules, ${LEFT_OUTSIDE.join(', ')} and chunks`, () => {
      const { static: statics, dynamic } = importsOf(file);
      const specifiers = [...statics, ...dynamic];
      const unexpected = specifiers.filter(
        (specifier) =>
          !isBuiltin(specifier) &&
          !LEFT_OUTSIDE.includes(specifier) &&
          !(isRelative(specifier) && CHUNKS.includes(target(file, specifier))),
      );
      expect(unexpected).toEqual([]);
    });
  }

  for (const program of STARTS_BY_IMPORT) {
    it(`dist/${program}, the first file, imports nothing (its import() of the program is all it loads: a refused load is vcnet's error)`, () => {
      const { static: statics, dynamic } = importsOf(program);
      expect(statics.filter((specifier) => !isBuiltin(specifier))).toEqual([]);
      expect(dynamic).toHaveLength(1);
      expect(dynamic[0]).toMatch(/^\.\.\/chunks\/program-[A-Z0-9]+\.js$/);
    });
  }

  it('vcnet loads no package from node_modules at start (node-gyp-build is bundled), OpenTelemetry only when asked', () => {
    // A static import of a chunk's: the walk through the chunks sees what they import.
    expect([...packagesLoadedAtStart('cli/main.js')]).toEqual([]);
    const bundled = [...filesLoadedAtStart('cli/main.js')].filter((file) =>
      /^\/\/ \S*node_modules\/node-gyp-build\/node-gyp-build\.js$/m.test(readFileSync(join(DIST, file), 'utf8')),
    );
    expect(bundled).toHaveLength(1);
  });

  it("vcnet loads the agent's protobuf descriptors only for the commands that use them", () => {
    const protobuf = (file: string) => readFileSync(join(DIST, file), 'utf8').includes('fileDesc(');
    // They are in the bundles (the pattern finds them), but in a chunk loaded on demand.
    expect([...PROGRAMS, ...CHUNKS].some(protobuf)).toBe(true);
    expect([...filesLoadedAtStart('cli/main.js')].filter(protobuf)).toEqual([]);
    expect([...filesLoadedAtStart('cni/main.js')].filter(protobuf)).toEqual([]);
  });

  it('vcnet-cni does not load OpenTelemetry at start (only when its environment asks)', () => {
    const loaded = packagesLoadedAtStart('cni/main.js');
    expect(loaded).not.toContain('@opentelemetry/api');
  });

  afterEach(cleanupNamespaces);

  it('vcnet writes log lines at the level asked (pino is loaded for the first one)', () => {
    const namespace = makeNamespace('entry');
    const run = (level: string) =>
      spawnSync(
        process.execPath,
        [join(DIST, 'cli/main.js'), '--log-level', level, 'scan', '--netns', namespace.path],
        {
          encoding: 'utf8',
        },
      );
    const debug = run('debug');
    expect(debug.status, debug.stderr).toBe(0);
    const lines = debug.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { level: number; msg: string });
    expect(lines.some((line) => line.level === 20 && line.msg === 'netlink batch')).toBe(true);
    const quiet = run('warn');
    expect(quiet.status, quiet.stderr).toBe(0);
    expect(quiet.stderr).toBe('');
  });

  it('vcnet reads the logging packages only for a first log line', () => {
    const namespace = makeNamespace('entry');
    // A preload that tells on stdout-free stderr when anything requires the logging file.
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-entry-'));
    const preload = join(directory, 'tell.cjs');
    writeFileSync(
      preload,
      "const Module = require('node:module'); const load = Module._load;\n" +
        "Module._load = function (request, ...rest) { if (String(request).endsWith('logging.cjs')) process.stderr.write('REQUIRED logging.cjs\\n'); return load.call(this, request, ...rest); };\n",
    );
    try {
      const run = (level: string) =>
        spawnSync(
          process.execPath,
          ['--require', preload, join(DIST, 'cli/main.js'), '--log-level', level, 'scan', '--netns', namespace.path],
          { encoding: 'utf8' },
        );
      expect(run('warn').stderr).toBe('');
      expect(run('debug').stderr).toContain('REQUIRED logging.cjs');
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('vcnet says on stderr that OTEL_* asks for spans it cannot export without @opentelemetry/sdk-node', () => {
    const namespace = makeNamespace('entry');
    // The checkout has the SDK as a dev dependency: the preload makes it unresolvable, as in an install without it.
    const hide = fileURLToPath(new URL('../../helpers/hide-otel-sdk.mjs', import.meta.url));
    const run = spawnSync(
      process.execPath,
      ['--import', hide, join(DIST, 'cli/main.js'), 'scan', '--netns', namespace.path],
      { encoding: 'utf8', env: { ...process.env, OTEL_TRACES_EXPORTER: 'console' } },
    );
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toContain('@opentelemetry/sdk-node is not installed');
  });

  // An install of vcnet alone has no @opentelemetry package: the exporter's import of the API failed
  // with Node's ERR_MODULE_NOT_FOUND and its trace, exit 1 (vcnet-cni: no result, a DEL too).
  it('vcnet and vcnet-cni say on stderr that OTEL_* asks for spans when no @opentelemetry package is installed, and run', () => {
    const namespace = makeNamespace('entry');
    const hide = fileURLToPath(new URL('../../helpers/hide-otel-packages.mjs', import.meta.url));
    const env = { ...process.env, OTEL_TRACES_EXPORTER: 'console' };
    const warning =
      'vcnet: warning: OTEL_* variables ask for trace export, but @opentelemetry/api is not installed (@opentelemetry/sdk-node brings it): install @opentelemetry/sdk-node next to vcnet to export spans\n';
    const scan = spawnSync(
      process.execPath,
      ['--import', hide, join(DIST, 'cli/main.js'), 'scan', '--netns', namespace.path],
      {
        encoding: 'utf8',
        env,
      },
    );
    expect(scan.status, scan.stderr).toBe(0);
    expect(scan.stderr).toBe(warning);
    expect(scan.stdout).toMatch(/^NAME/);
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-entry-'));
    try {
      // A DEL with nothing recorded: it must succeed whatever the plugin's environment holds.
      const del = spawnSync(process.execPath, ['--import', hide, join(DIST, 'cni/main.js')], {
        encoding: 'utf8',
        input: JSON.stringify({
          cniVersion: '1.0.0',
          name: 'entry',
          type: 'vcnet-cni',
          stateDir: join(directory, 'state'),
        }),
        env: {
          ...env,
          CNI_COMMAND: 'DEL',
          CNI_CONTAINERID: 'entry1',
          CNI_IFNAME: 'eth0',
          CNI_NETNS: '',
          CNI_PATH: '/nonexistent',
        },
      });
      expect(del.status, del.stderr).toBe(0);
      expect(del.stderr).toBe(warning);
      expect(del.stdout).toBe('');
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('the logger loads pino for the first line at its level, not for calls below it', () => {
    const script = `
      const { createRequire } = await import('node:module');
      const { configureLogger } = await import(${JSON.stringify(join(DIST, 'cli/observability/logger.js'))});
      const cache = createRequire(import.meta.url).cache;
      const pinoLoaded = () => Object.keys(cache).some((path) => path.includes('/node_modules/pino/'));
      const log = configureLogger({ level: 'warn', format: 'json' });
      log.info('below'); log.debug('below');
      const before = [pinoLoaded(), log.isLevelEnabled('info'), log.isLevelEnabled('warn'), log.level];
      log.warn({ field: 1 }, 'at warn');
      console.log(JSON.stringify([...before, pinoLoaded()]));
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual([false, false, true, 'warn', true]);
    const lines = run.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, field: 1, msg: 'at warn' });
  });

  it('vcnet and vcnet-cni validate records and configs without compiling code (zod jitless: a one-shot process never wins the compile back)', () => {
    const preload = fileURLToPath(new URL('../../helpers/code-from-strings-preload.mjs', import.meta.url));
    const MADE = 'code-from-strings-preload: a function compiled from a string';
    // The preload sees what zod would do: a function compiled from a string is reported.
    const control = spawnSync(process.execPath, ['--import', preload, '-e', "new Function('return 1')()"], {
      encoding: 'utf8',
    });
    expect(control.stderr).toContain(MADE);

    const namespace = makeNamespace('entry');
    namespace.exec('ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0']);
    namespace.exec('ip', ['link', 'set', 'eth0', 'up']);
    namespace.exec('ip', ['address', 'add', '10.9.0.2/24', 'dev', 'eth0']);
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-entry-'));
    try {
      const vcnet = (...args: string[]) =>
        spawnSync(process.execPath, ['--import', preload, join(DIST, 'cli/main.js'), '--log-level', 'error', ...args], {
          encoding: 'utf8',
        });
      // attach validates its config and writes its record; list and detach read it back.
      for (const args of [
        ['attach', '--sandbox', 'jitless', '--netns', namespace.path, '--state-dir', directory],
        ['list', '--json', '--state-dir', directory],
        ['detach', '--sandbox', 'jitless', '--state-dir', directory],
      ]) {
        const run = vcnet(...args);
        expect({ args, status: run.status, stderr: run.stderr }).toEqual({ args, status: 0, stderr: '' });
      }
      // A config with an object to validate, refused by a field (no namespace needed to get that far).
      const add = spawnSync(process.execPath, ['--import', preload, join(DIST, 'cni/main.js')], {
        input: JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'vcnet-cni', stateDir: 'relative' }),
        env: {
          ...process.env,
          CNI_COMMAND: 'ADD',
          CNI_CONTAINERID: 'jitless',
          CNI_NETNS: namespace.path,
          CNI_IFNAME: 'eth0',
          CNI_PATH: '/usr/lib/cni',
        },
        encoding: 'utf8',
      });
      expect(JSON.parse(add.stdout)).toMatchObject({ code: 7, msg: expect.stringContaining('stateDir') });
      expect(add.stderr).not.toContain(MADE);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('vcnet runs', () => {
    expect(execFileSync(process.execPath, [join(DIST, 'cli/main.js'), '--version'], { encoding: 'utf8' }).trim()).toBe(
      '0.1.0',
    );
  });

  for (const level of [undefined, 'debug']) {
    it(`vcnet-cni answers VERSION${level ? ` with VCNET_LOG_LEVEL=${level} (its logger chunk loads)` : ''}`, () => {
      const output = execFileSync(process.execPath, [join(DIST, 'cni/main.js')], {
        input: '{}',
        env: { ...process.env, CNI_COMMAND: 'VERSION', ...(level ? { VCNET_LOG_LEVEL: level } : {}) },
        encoding: 'utf8',
      });
      expect(JSON.parse(output).supportedVersions).toContain('1.1.0');
    });
  }
});
