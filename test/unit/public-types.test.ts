/**
 * Every named type an exported signature of 'vcnet' (or 'vcnet/netlink') mentions is exported too, so
 * a caller can name what they pass and receive. Checked on the built declarations (dist/*.d.ts, which
 * the test run builds first) with the TypeScript compiler, one level deep: a type that is exported is
 * checked through its own declaration. The internals below are left out on purpose.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const DIST = resolve(ROOT, 'dist');
const ENTRIES = ['index.d.ts', 'netlink/index.d.ts'].map((entry) => resolve(DIST, entry));

/** Named types public signatures mention but the entries do not export, and why. */
const DELIBERATE_INTERNALS: Record<string, string> = {
  // The agent protocol's transport: AgentClient and createAgentServer are the supported surface.
  TtrpcClient: "AgentClient's transport, a private detail the class declares as a member",
  // protobuf-es descriptors: the *Init types built on them are exported.
  InterfaceSchema: 'a protobuf-es descriptor behind InterfaceInit (exported)',
  RouteSchema: 'a protobuf-es descriptor behind RouteInit (exported)',
  ARPNeighborSchema: 'a protobuf-es descriptor behind NeighbourInit (exported)',
  // Netlink internals behind NetlinkHandle: callers open handles, never sockets or batches.
  NetlinkSocket: "NetlinkHandle's socket and ChangeBatch's constructor argument, internal",
  RouteSocket: "NetlinkHandle.over's argument (@internal: the socket a namespace's identity was read on)",
  RequestLike: "NetlinkError's constructor argument: vcnet builds these errors, callers only read them",
  StateWriteSubject:
    "StateWriteError's constructor argument (what its hint names): vcnet builds these errors, callers only read them",
  // vcnet's own commands hand Network.open/load the namespace they opened and checked by identity
  // (its socket then does the work); callers give a path, as before.
  OpenedNamespace: "Network.open/load's entry as vcnet's own commands give it (internal); callers give a path",
  // A protected member marked @internal, for Endpoint's own subclasses.
  PlanIntent: "Endpoint's plan made ahead of its attach (takePreparedIntent, protected and @internal)",
  // Types derived from constants (typeof X): the derived types are exported.
  INTERWORKING_MODELS: 'InterworkingModelName is exported',
  ENDPOINT_TYPES: 'EndpointType is exported',
  ATTACH_OPERATIONS: 'AttachOperation is exported',
  NETWORK_STATE_VERSION: "a record's version number",
  SANDBOX_STATE_VERSION: "a record's version number",
  ENDPOINT_STATE_VERSION: "a record's version number",
};

/** Named types declared in vcnet that exported declarations mention, with who mentions them. */
function unexportedReferences(): Map<string, Set<string>> {
  const program = ts.createProgram(ENTRIES, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    noEmit: true,
    skipLibCheck: true,
  });
  const checker = program.getTypeChecker();
  const real = (symbol: ts.Symbol) => (symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol);
  const exported = new Set(
    ENTRIES.flatMap((entry) => {
      const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
      return checker.getExportsOfModule(moduleSymbol).map(real);
    }),
  );
  const missing = new Map<string, Set<string>>();
  const visit = (node: ts.Node, from: string): void => {
    const name = ts.isTypeReferenceNode(node)
      ? node.typeName
      : ts.isTypeQueryNode(node)
        ? node.exprName
        : ts.isExpressionWithTypeArguments(node)
          ? node.expression
          : undefined;
    const symbol = name === undefined ? undefined : checker.getSymbolAtLocation(name);
    if (symbol !== undefined) {
      const target = real(symbol);
      const declaration = target.declarations?.[0];
      const ours = declaration?.getSourceFile().fileName.startsWith(`${DIST}/`) ?? false;
      if (ours && !exported.has(target) && !(target.flags & ts.SymbolFlags.TypeParameter)) {
        const users = missing.get(target.getName()) ?? new Set<string>();
        missing.set(target.getName(), users.add(from));
      }
    }
    ts.forEachChild(node, (child) => visit(child, from));
  };
  for (const symbol of exported)
    for (const declaration of symbol.declarations ?? []) visit(declaration, symbol.getName());
  return missing;
}

describe('the public types', () => {
  const missing = unexportedReferences();

  it('export every named type an exported signature mentions, but the deliberate internals', () => {
    // The check finds references at all: the internals are there.
    expect(missing.get('NetlinkSocket')).toBeDefined();
    const unexplained = [...missing]
      .filter(([name]) => !Object.hasOwn(DELIBERATE_INTERNALS, name))
      .map(([name, users]) => `${name} (used by ${[...users].join(', ')})`);
    expect(unexplained).toEqual([]);
  });

  it('lists no internal that no public signature mentions any more', () => {
    expect(Object.keys(DELIBERATE_INTERNALS).filter((name) => !missing.has(name))).toEqual([]);
  });

  it("bring no zod declaration into a user's program (zod's CommonJS types need esModuleInterop)", () => {
    // Every declaration file a project that imports both entries compiles: the records' zod schemas
    // stay internal, behind plain types (RecordEnvelope, RecordContentSchema). With zod's types in the
    // program, tsc fails inside them (TS1259) unless esModuleInterop, allowSyntheticDefaultImports or
    // skipLibCheck is on; test/integration/package/pack-install.test.ts compiles such a project.
    const program = ts.createProgram(ENTRIES, {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      noEmit: true,
      types: ['node'],
    });
    const files = program.getSourceFiles().map((file) => file.fileName);
    expect(files.filter((file) => file.startsWith(`${DIST}/`)).length).toBeGreaterThan(100);
    // The check sees dependencies' declarations at all: protobuf's are in the program.
    expect(files.some((file) => file.includes('/node_modules/@bufbuild/protobuf/'))).toBe(true);
    expect(files.filter((file) => file.includes('/node_modules/zod/'))).toEqual([]);
  });
});

/** The .d.ts files under dist/, relative to it. */
function declarationFiles(directory = DIST): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return declarationFiles(path);
    return entry.name.endsWith('.d.ts') ? [path.slice(DIST.length + 1)] : [];
  });
}

describe('the diagnostics types', () => {
  it("name none of node:diagnostics_channel's classes, whose type parameters @types/node reordered", () => {
    // @types/node 26 declares TracingChannel<ContextType extends object, StoreType>: a d.ts written
    // TracingChannel<unknown, X> fails a user's strict tsc (TS2344) unless skipLibCheck.
    const naming = declarationFiles().filter((file) =>
      /["']node:diagnostics_channel["']|\b(?:Tracing)?Channel</.test(readFileSync(join(DIST, file), 'utf8')),
    );
    expect(naming).toEqual([]);
  });

  it("docs/diagnostics.md's example type-checks in a strict project against the built declarations", () => {
    const page = readFileSync(join(ROOT, 'docs/diagnostics.md'), 'utf8');
    const code = /<!-- diagnostics-example[^\n]*\n```ts\n([\s\S]*?)```/.exec(page)?.[1];
    expect(code, 'docs/diagnostics.md: no ```ts block after <!-- diagnostics-example').toBeDefined();
    const project = mkdtempSync(join(tmpdir(), 'vcnet-types-'));
    try {
      mkdirSync(join(project, 'node_modules'));
      symlinkSync(ROOT, join(project, 'node_modules', 'vcnet'));
      const file = join(project, 'example.ts');
      writeFileSync(file, code!);
      const program = ts.createProgram([file], {
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        target: ts.ScriptTarget.ES2022,
        strict: true,
        noEmit: true,
        // vcnet's own declarations are checked too; the dependencies' are theirs to answer for.
        skipLibCheck: false,
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules/@types')],
      });
      const problems = ts
        .getPreEmitDiagnostics(program)
        .filter((diagnostic) => {
          const name = diagnostic.file?.fileName;
          return name === undefined || name === file || name.startsWith(`${DIST}/`) || name.includes('/vcnet/dist/');
        })
        .map((diagnostic) => {
          const where = diagnostic.file
            ? `${diagnostic.file.fileName}:${diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0).line + 1}`
            : '';
          return `${where} ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`;
        });
      expect(problems).toEqual([]);
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });
});
