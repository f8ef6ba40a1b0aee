/**
 * Every named type an exported signature of 'vcnet' (or 'vcnet/netlink') mentions is exported too, so
 * a caller can name what they pass and receive. Checked on the built declarations (dist/*.d.ts, which
 * the test run builds first) with the TypeScript compiler, one level deep: a type that is exported is
 * checked through its own declaration. The internals below are left out on purpose.
 */
import { resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const DIST = resolve(new URL('../../dist', import.meta.url).pathname);
const ENTRIES = ['index.d.ts', 'netlink/index.d.ts'].map((entry) => resolve(DIST, entry));

/** Named types public signatures mention but the entries do not export, and why. */
const DELIBERATE_INTERNALS: Record<string, string> = {
  // The agent protocol's transport: AgentClient and createAgentServer are the supported surface.
  TtrpcClient: "AgentClient's transport, a private detail the class declares as a member",
  TtrpcServer: "what createAgentServer returns is used only through listen/close; ttrpc's server is internal",
  TtrpcServerOptions: "createAgentServer's pass-through options to the ttrpc server, internal",
  // protobuf-es descriptors: the *Init types built on them are exported.
  InterfaceSchema: 'a protobuf-es descriptor behind InterfaceInit (exported)',
  RouteSchema: 'a protobuf-es descriptor behind RouteInit (exported)',
  ARPNeighborSchema: 'a protobuf-es descriptor behind NeighbourInit (exported)',
  // Netlink internals behind NetlinkHandle: callers open handles, never sockets or batches.
  NetlinkSocket: "NetlinkHandle's socket and ChangeBatch's constructor argument, internal",
  RequestOutcome: "ChangeBatch's per-request outcome inside the protocol engine",
  RequestLike: "NetlinkError's constructor argument: vcnet builds these errors, callers only read them",
  // The plan and its persisted records: their shape is the state file's and changes with it.
  PlumbingContext: "Endpoint.attach's context, built by Network; the plumbing engine's",
  AttachRequest: "Endpoint's plan request, built by Network",
  AttachedPlumbing: "what an Endpoint records of its plumbing (the state file's shape)",
  PlumbingStep: "one recorded plumbing step (the state file's shape)",
  Plan: 'the attach plan (shown as `ip`/`tc` commands by --dry-run)',
  Change: 'one change of a plan (shown as an `ip`/`tc` command by --dry-run)',
  DetachPlan: "Network.planDetach's plan, as Plan",
  EndpointState: "an endpoint's record inside NetworkState (the state file's shape)",
  // Types derived from constants (typeof X): the derived types are exported.
  INTERWORKING_MODELS: 'InterworkingModelName is exported',
  ENDPOINT_TYPES: 'EndpointType is exported',
  NETWORK_STATE_VERSION: "a record's version number",
  SANDBOX_STATE_VERSION: "a record's version number",
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
});
