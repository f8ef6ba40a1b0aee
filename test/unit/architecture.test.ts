/**
 * Arrows one way: imports in src/ only run down the layers, the native addon is loaded by src/native/
 * alone, the library loads no logger or tracer, and no two files import each other (directly or round
 * a loop). The rules are data (LAYERS); the exceptions are listed, short, each with its reason.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const source = resolve(new URL('../../src', import.meta.url).pathname);

/**
 * The layers, lowest first. A file belongs to the first layer one of whose paths is a prefix of its
 * path under src/; it may import its own layer and the layers named in `mayImport`.
 */
const LAYERS = [
  {
    layer: 'base',
    paths: [
      'errors.ts',
      'error-codes.ts',
      'diagnostics.ts',
      'directory-entries.ts',
      'arguments.ts',
      'event-loop.ts',
      'namespace-file.ts',
      'terminal-text.ts',
      'mac-address.ts',
      'multimap.ts',
      'program-search.ts',
      'queue-limits.ts',
      'shell-word.ts',
      'test-seams.ts',
      'version.ts',
    ],
    mayImport: [],
  },
  { layer: 'native', paths: ['native/'], mayImport: ['base'] },
  { layer: 'codec', paths: ['netlink/codec/'], mayImport: ['base'] },
  { layer: 'netlink', paths: ['netlink/'], mayImport: ['base', 'native', 'codec'] },
  { layer: 'netns', paths: ['netns/'], mayImport: ['base', 'native', 'codec', 'netlink'] },
  { layer: 'hypervisor', paths: ['hypervisor/'], mayImport: ['base', 'native'] },
  // The guest agent applies requests with netlink inside the VM.
  { layer: 'agent', paths: ['agent/'], mayImport: ['base', 'native', 'codec', 'netlink', 'netns'] },
  {
    layer: 'network',
    paths: ['network/'],
    mayImport: ['base', 'native', 'codec', 'netlink', 'netns', 'hypervisor'],
  },
  {
    layer: 'sandbox',
    paths: ['sandbox/'],
    mayImport: ['base', 'native', 'codec', 'netlink', 'netns', 'hypervisor', 'agent', 'network'],
  },
  {
    layer: 'library entry',
    paths: ['index.ts'],
    mayImport: ['base', 'codec', 'netlink', 'netns', 'hypervisor', 'agent', 'network', 'sandbox'],
  },
  // Pieces of the programs that are not the library: the benchmark and the demo run from the CLI.
  {
    layer: 'tools',
    paths: ['benchmark/', 'demo/'],
    // The demo runs the CNI chain vcnet-cni belongs to (cni/bridge-network.ts).
    mayImport: ['base', 'native', 'codec', 'netlink', 'netns', 'hypervisor', 'agent', 'network', 'sandbox', 'cni'],
  },
  // The subscribers (pino, OpenTelemetry) shared by the two programs.
  { layer: 'observability', paths: ['cli/observability/'], mayImport: ['base'] },
  {
    layer: 'cni',
    paths: ['cni/'],
    mayImport: ['base', 'native', 'codec', 'netlink', 'netns', 'network', 'sandbox', 'observability'],
  },
  {
    layer: 'cli',
    paths: ['cli/'],
    mayImport: [
      'base',
      'native',
      'codec',
      'netlink',
      'netns',
      'hypervisor',
      'agent',
      'network',
      'sandbox',
      'tools',
      'observability',
      // `vcnet install-cni` puts the plugin in place.
      'cni',
    ],
  },
] as const;

type LayerName = (typeof LAYERS)[number]['layer'];

/** Only these files may load the addon's loader. */
const NATIVE_LOADER = 'native/binding.ts';

/** Packages the library must not load: the programs' subscribers (and the guest agent program) do. */
const PROGRAM_ONLY_PACKAGES = /^(pino|pino-pretty|@opentelemetry\/.*)$/;
const PROGRAM_FILES = ['cli/observability/', 'agent/guest/main.ts'];

/** Import cycles allowed: none. Each entry would be one cycle's files, sorted; never add to it. */
const KNOWN_CYCLES: string[][] = [];

function sourceFiles(directory: string): string[] {
  return readdirSync(directory).flatMap((entry) => {
    const path = join(directory, entry);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

interface Import {
  from: string;
  /** Path under src/ for a relative import, else the package name. */
  to: string;
  relative: boolean;
}

const IMPORT_PATTERN =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*'([^']+)'|import\s*\(\s*'([^']+)'\s*\)|^import\s+'([^']+)'/gm;

function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const from = relative(source, file);
  return [...text.matchAll(IMPORT_PATTERN)].map((match) => {
    const specifier = (match[1] ?? match[2] ?? match[3])!;
    if (!specifier.startsWith('.')) return { from, to: specifier, relative: false };
    const target = relative(source, resolve(dirname(file), specifier)).replace(/\.js$/, '.ts');
    return { from, to: target, relative: true };
  });
}

function layerOf(path: string): LayerName {
  const found = LAYERS.find(({ paths }) => paths.some((prefix) => path === prefix || path.startsWith(prefix)));
  if (!found) throw new Error(`${path} is in no layer: add its folder to LAYERS`);
  return found.layer;
}

const allowed = new Map<LayerName, readonly LayerName[]>(LAYERS.map(({ layer, mayImport }) => [layer, mayImport]));

function runsUpward({ from, to }: { from: string; to: string }): boolean {
  const fromLayer = layerOf(from);
  const toLayer = layerOf(to);
  return fromLayer !== toLayer && !allowed.get(fromLayer)!.includes(toLayer);
}

const files = sourceFiles(source);
const imports = files.flatMap(importsOf);
const local = imports.filter((edge) => edge.relative);

describe('architecture', () => {
  it('sees the imports (the parser works)', () => {
    expect(local.length).toBeGreaterThan(200);
    expect(local).toContainEqual({ from: 'netlink/handle.ts', to: 'netlink/transport.ts', relative: true });
    expect(local).toContainEqual({ from: 'index.ts', to: 'errors.ts', relative: true });
  });

  it('every import runs down the layers (or stays in its layer)', () => {
    // The rule catches what it is meant to.
    expect(runsUpward({ from: 'netlink/handle.ts', to: 'network/network.ts' })).toBe(true);
    expect(runsUpward({ from: 'agent/client.ts', to: 'cli/main.ts' })).toBe(true);
    expect(runsUpward({ from: 'hypervisor/qmp.ts', to: 'cni/errors.ts' })).toBe(true);
    expect(runsUpward({ from: 'network/network.ts', to: 'netlink/handle.ts' })).toBe(false);
    const upward = local
      .filter(runsUpward)
      .map(({ from, to }) => `${from} (${layerOf(from)}) -> ${to} (${layerOf(to)})`);
    expect(upward).toEqual([]);
  });

  it('only src/native/ loads the native addon', () => {
    const outside = local.filter(({ from, to }) => to === NATIVE_LOADER && !from.startsWith('native/'));
    expect(outside.map(({ from }) => from)).toEqual([]);
    // A .node file named, or node-gyp-build imported or required. (createRequire alone is allowed:
    // the CLI's logger requires pino with it.)
    const requires = files.filter((file) =>
      /\.node['"]|from 'node-gyp-build'|require\(\s*['"]node-gyp-build['"]/.test(readFileSync(file, 'utf8')),
    );
    expect(requires.map((file) => relative(source, file))).toEqual([NATIVE_LOADER]);
  });

  it('the library imports no logger or tracer: only the programs do', () => {
    const heavy = imports.filter(
      ({ from, to, relative: isRelative }) =>
        !isRelative && PROGRAM_ONLY_PACKAGES.test(to) && !PROGRAM_FILES.some((prefix) => from.startsWith(prefix)),
    );
    expect(heavy.map(({ from, to }) => `${from} -> ${to}`)).toEqual([]);
  });

  it('has no import cycles between files, except the known ones', () => {
    // Tarjan's strongly connected components over the file graph.
    const graph = new Map<string, string[]>();
    for (const { from, to } of local) graph.set(from, [...(graph.get(from) ?? []), to]);
    const index = new Map<string, number>();
    const lowest = new Map<string, number>();
    const stack: string[] = [];
    const onStack = new Set<string>();
    const cycles: string[][] = [];
    let counter = 0;
    const visit = (node: string): void => {
      index.set(node, counter);
      lowest.set(node, counter++);
      stack.push(node);
      onStack.add(node);
      for (const next of graph.get(node) ?? []) {
        if (!index.has(next)) {
          visit(next);
          lowest.set(node, Math.min(lowest.get(node)!, lowest.get(next)!));
        } else if (onStack.has(next)) {
          lowest.set(node, Math.min(lowest.get(node)!, index.get(next)!));
        }
      }
      if (lowest.get(node) === index.get(node)) {
        const component: string[] = [];
        let member: string;
        do {
          member = stack.pop()!;
          onStack.delete(member);
          component.push(member);
        } while (member !== node);
        if (component.length > 1) cycles.push(component.sort());
      }
    };
    for (const node of graph.keys()) if (!index.has(node)) visit(node);
    expect(cycles.sort()).toEqual(KNOWN_CYCLES);
  });
});
