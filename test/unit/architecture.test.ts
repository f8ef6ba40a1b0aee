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
      'abort-listeners.ts',
      'errors.ts',
      'error-codes.ts',
      'diagnostics.ts',
      'directory-entries.ts',
      'arguments.ts',
      'event-loop.ts',
      'go-key-fold.ts',
      'namespace-file.ts',
      'parse-options.ts',
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

/**
 * The network layer's own sublayers, lowest first, the same way: a file under src/network/ belongs to
 * the sublayer with the longest path that is a prefix of its path, and may import its own sublayer
 * and those named in `mayImport`. (The layer table above says what network/ may import from outside.)
 */
const NETWORK_SUBLAYERS = [
  // Names and checks every part shares: interface kinds, models, tap ownership, user namespaces.
  {
    sublayer: 'definitions',
    paths: [
      'network/network-info.ts',
      'network/interworking-model.ts',
      'network/tap-owner.ts',
      'network/ingress-qdisc.ts',
      'network/user-namespace.ts',
      'network/vfio.ts',
      'network/rate-limit.ts',
    ],
    mayImport: [],
  },
  // The records' formats, the store, its locks and the registry of state directories.
  { sublayer: 'state', paths: ['network/state/'], mayImport: ['definitions'] },
  // The pure planners and the one executor (its undo of recorded steps is plan/undo.ts), and
  // foreign-filters.ts tells vcnet's tc objects from other tools' (plan, detach and gc ask it).
  {
    sublayer: 'plan',
    paths: ['network/plan/', 'network/foreign-filters.ts', 'network/tc-repair.ts'],
    mayImport: ['definitions'],
  },
  // Internetworking models: what each needs to build (one request per model, planned and applied
  // by attachByPlan), and the tap/pod interface pair.
  {
    sublayer: 'model',
    paths: ['network/model/', 'network/interface-pair.ts'],
    mayImport: ['definitions', 'plan'],
  },
  { sublayer: 'endpoint', paths: ['network/endpoint/'], mayImport: ['definitions', 'state', 'plan', 'model'] },
  {
    sublayer: 'scan',
    paths: ['network/scan.ts', 'network/link-name.ts'],
    mayImport: ['definitions', 'plan', 'model', 'endpoint'],
  },
  // A sandbox's network and what is built on it; state/records.ts is the sandbox record's shape,
  // made of the network's own (NetworkState, GuestRoute).
  {
    sublayer: 'network',
    paths: [
      'network/network.ts',
      'network/config.ts',
      'network/guest.ts',
      'network/hypervisor-devices.ts',
      'network/namespace-watcher.ts',
      'network/recorded-network.ts',
      'network/state/records.ts',
    ],
    mayImport: ['definitions', 'state', 'plan', 'model', 'endpoint', 'scan'],
  },
  // Garbage collection, and the undoing of attaches a killed process left unfinished; the wait for a
  // busy VMM (QEMU's QMP, Cloud Hypervisor's API) without the locks that gc's and watch's undo of a
  // hot-plug and detach share, with how much of such a wait was under the lock (time-under-lock, which
  // add-iface's and the other commands' waits say too).
  {
    sublayer: 'gc',
    paths: [
      'network/gc/',
      'network/garbage-collector.ts',
      'network/unfinished-attach.ts',
      'network/sandbox-vmm-wait.ts',
      'network/time-under-lock.ts',
    ],
    mayImport: ['definitions', 'state', 'plan', 'model', 'endpoint', 'scan', 'network'],
  },
] as const;

type NetworkSublayerName = (typeof NETWORK_SUBLAYERS)[number]['sublayer'];

/**
 * Imports within src/network/ that run up its sublayers, each with its reason. Never add to it: a
 * new one is fixed where it is made.
 */
const KNOWN_UPWARD_NETWORK_IMPORTS: string[] = [];

/**
 * The modules that may forward names: the two package entries, and errors.ts, which gives every layer
 * the error base and the code registry (error-codes.ts) from one import.
 */
const REEXPORTING_MODULES = ['index.ts', 'netlink/index.ts', 'errors.ts'];

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

/**
 * Static imports and re-exports, `import()` and bare imports, each of a string in single or double
 * quotes; `import()` of a template literal too (a computed one is kept as written: see its test).
 */
const IMPORT_PATTERN =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*(['"])([^'"]+)\1|import\s*\(\s*(['"`])([^'"`]+)\3\s*\)|^import\s+(['"])([^'"]+)\5/gm;

function importsOf(file: string): Import[] {
  return importsIn(readFileSync(file, 'utf8'), file);
}

/** The imports in `text`, the source of `file`. */
function importsIn(text: string, file: string): Import[] {
  const from = relative(source, file);
  return [...text.matchAll(IMPORT_PATTERN)].map((match) => {
    const specifier = (match[2] ?? match[4] ?? match[6])!;
    // A path computed at run time (`${…}`) names no file this test can check: kept as written.
    if (!specifier.startsWith('.') || specifier.includes('${')) return { from, to: specifier, relative: false };
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

function networkSublayerOf(path: string): NetworkSublayerName {
  const matches = NETWORK_SUBLAYERS.flatMap(({ sublayer, paths }) =>
    paths.filter((prefix) => path === prefix || path.startsWith(prefix)).map((prefix) => ({ sublayer, prefix })),
  );
  const found = matches.sort((a, b) => b.prefix.length - a.prefix.length)[0];
  if (!found) throw new Error(`${path} is in no sublayer of network/: add it to NETWORK_SUBLAYERS`);
  return found.sublayer;
}

const allowedInNetwork = new Map<NetworkSublayerName, readonly NetworkSublayerName[]>(
  NETWORK_SUBLAYERS.map(({ sublayer, mayImport }) => [sublayer, mayImport]),
);

function runsUpNetwork({ from, to }: { from: string; to: string }): boolean {
  if (!from.startsWith('network/') || !to.startsWith('network/')) return false;
  const fromSublayer = networkSublayerOf(from);
  const toSublayer = networkSublayerOf(to);
  return fromSublayer !== toSublayer && !allowedInNetwork.get(fromSublayer)!.includes(toSublayer);
}

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

  it('sees dynamic imports of every quoting, as it sees static ones', () => {
    const file = join(source, 'network/plan/sample.ts');
    const sample = [
      "const a = await import('./single.js');",
      'const b = await import("./double.js");',
      'const c = await import(`./template.js`);',
      "import d from './static.js';",
      'export { e } from "./reexported.js";',
      "import './side-effect.js';",
    ].join('\n');
    expect(importsIn(sample, file).map(({ to }) => to)).toEqual([
      'network/plan/single.ts',
      'network/plan/double.ts',
      'network/plan/template.ts',
      'network/plan/static.ts',
      'network/plan/reexported.ts',
      'network/plan/side-effect.ts',
    ]);
    // A path computed at run time could be any layer's: src/ has none.
    expect(importsIn(`await import(\`./\${name}.js\`);`, file)).toEqual([
      { from: 'network/plan/sample.ts', to: `./\${name}.js`, relative: false },
    ]);
    expect(imports.filter(({ to }) => to.includes('${')).map(({ from, to }) => `${from}: ${to}`)).toEqual([]);
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

  it('within src/network/, every import runs down the sublayers (or stays in its sublayer)', () => {
    // Every file is in one sublayer, the longest matching path deciding.
    for (const file of files.map((path) => relative(source, path)).filter((path) => path.startsWith('network/'))) {
      networkSublayerOf(file);
    }
    expect(networkSublayerOf('network/state/records.ts')).toBe('network');
    expect(networkSublayerOf('network/state/store.ts')).toBe('state');
    // The rule catches what it is meant to.
    expect(runsUpNetwork({ from: 'network/plan/plan-attach.ts', to: 'network/endpoint/endpoint.ts' })).toBe(true);
    expect(runsUpNetwork({ from: 'network/state/owners.ts', to: 'network/gc/report.ts' })).toBe(true);
    expect(runsUpNetwork({ from: 'network/scan.ts', to: 'network/network.ts' })).toBe(true);
    expect(runsUpNetwork({ from: 'network/endpoint/endpoint.ts', to: 'network/plan/types.ts' })).toBe(false);
    expect(runsUpNetwork({ from: 'network/gc/unfinished.ts', to: 'network/network.ts' })).toBe(false);
    const upward = local
      .filter(runsUpNetwork)
      .map(({ from, to }) => `${from} (${networkSublayerOf(from)}) -> ${to} (${networkSublayerOf(to)})`);
    expect([...new Set(upward)].sort()).toEqual(KNOWN_UPWARD_NETWORK_IMPORTS);
  });

  it('src/ re-exports nothing but from its entries: a name is imported from the module that declares it', () => {
    // The parser sees the forms it looks for (none is left in src/network/ to show it).
    const sample = [
      "import { a, type B as C } from './x.js';",
      'export { a, C, own };',
      "export type { D } from './y.js';",
      "export * from './z.js';",
    ].join('\n');
    expect(reexportsOf(sample).sort()).toEqual(['*', 'C', 'D', 'a']);
    const reexports = files
      .filter((file) => !REEXPORTING_MODULES.includes(relative(source, file)))
      .flatMap((file) => reexportsOf(readFileSync(file, 'utf8')).map((name) => `${relative(source, file)}: ${name}`));
    expect(reexports.sort()).toEqual([]);
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

/** Names a module's text forwards: `export { a } from '...'`, `export *`, and `export { a }` of a name it imports. */
function reexportsOf(text: string): string[] {
  const imported = new Set(
    [...text.matchAll(/^import\s+(?:type\s+)?\{([^}]*)\}/gm)].flatMap((match) =>
      match[1]!.split(',').map(
        (part) =>
          part
            .replace(/^\s*type\s+/, '')
            .trim()
            .split(/\s+as\s+/)
            .at(-1)!,
      ),
    ),
  );
  const forwarded = [...text.matchAll(/^export\s+(?:type\s+)?\{([^}]*)\}\s*(from\s*'[^']+')?/gm)].flatMap((match) =>
    match[1]!
      .split(',')
      .map(
        (part) =>
          part
            .replace(/^\s*type\s+/, '')
            .trim()
            .split(/\s+as\s+/)[0]!,
      )
      .filter((name) => name !== '' && (match[2] !== undefined || imported.has(name))),
  );
  const starred = [...text.matchAll(/^export\s+\*/gm)].map(() => '*');
  return [...forwarded, ...starred];
}
