/**
 * The curated library entry: every error class a caller can receive is exported (so `instanceof` and
 * the brands work for users), kernel constants and codec encoders are not (they live in vcnet/netlink),
 * and the channel names are there to subscribe to.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as entry from '../../src/index.js';
import {
  DumpInterruptedError,
  DumpOverrunError,
  LinkNotFoundError,
  NetlinkClosedError,
  NetlinkError,
} from '../../src/netlink/errors.js';
import * as netlinkEntry from '../../src/netlink/index.js';

const source = new URL('../../src', import.meta.url).pathname;

function sourceFiles(directory: string): string[] {
  return readdirSync(directory).flatMap((entryName) => {
    const path = join(directory, entryName);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/**
 * Errors only the programs raise and report themselves (as a CNI error object or a demo step): a
 * library caller never receives them.
 */
const PROGRAM_ONLY_ERRORS = [
  'CniError',
  'CniEnvironmentError',
  'CniConfigError',
  'DemoError',
  // The CLI's: a command line commander refused; ip or tc missing for `vcnet bench`.
  'UsageError',
  'ProgramMissingError',
];

/** Identifiers the docs name beside the library that are fields, options or other programs', not exports. */
const DOCS_NON_EXPORTS = [
  // TypeScript's compiler options and Node's types (the TypeScript section).
  'esModuleInterop',
  'allowSyntheticDefaultImports',
  'skipLibCheck',
  'moduleResolution',
  'typesVersions',
  'AbortSignal',
  // GarbageReport's fields.
  'leftAlone',
  'claimsOnly',
  'namedInterfaces',
  'disableNewNetns',
  'namespaceCreatedByVcnet',
  'lockTimeoutMs',
  'stateDirectory',
  'agentSocket',
  'errorName',
  'vmmRateLimiter',
  'vhostNet',
  'nicIommu',
  'coldPlugVfio',
  'tapOwner',
  'tapGroup',
  'endpointType',
  'namespaceGone',
  'namespaceHeldAt',
  'namespacePathReused',
  'namespaceHeldThrough',
  'heldBy',
  // detachSandbox's options, and what it tells its connectHotplug.
  'connectHotplug',
  'qmpWaitMs',
  'qmpHandshakeTimeoutMs',
  // Node's own: the signal option takes an AbortSignal and rejects with its reason (an AbortError).
  'AbortSignal',
  'AbortError',
  // Fields and options named in other pages' library sentences.
  'vhostUserStorePath',
  'outerName',
  'outerCode',
  'maxEndpoints',
  'overLimit',
  // Kata's functions, named beside vcnet's in compatibility.md.
  'SetupNetworkNamespace',
  'NetworkCreated',
  'generateVCNetworkStructures',
  // Called in examples.md and performance.md: a test helper, system calls and Node's own.
  'makePod',
  'open',
  'sendto',
  'if_nametoindex',
  'snapshot',
  'isLevelEnabled',
  'syscallTime',
  'threadCpuNs',
  'close',
  'abort',
  // watchSandbox's option, TtrpcServer's method, and CommonJS's require (library.md on bundling).
  'serve',
  // A watch's and QemuProcess's method (library.md on `using`).
  'stop',
  'onError',
  'require',
  // The type of the process warning a notice no one took becomes (library.md), not a class.
  'VcnetWarning',
];

const docsDirectory = new URL('../../docs/', import.meta.url);
const docsPages = readdirSync(docsDirectory)
  .filter((name) => name.endsWith('.md'))
  .map((name) => ({ name, text: readFileSync(new URL(name, docsDirectory), 'utf8') }));

/** An identifier in backticks, bare or called (`name` or `name(...)`), camelCase or PascalCase. */
const BACKTICKED_IDENTIFIER = /`([A-Za-z][A-Za-z0-9]*)(?:\([^`]*\))?`/g;
const isCompoundIdentifier = (name: string) => /^(?:[a-z]+[A-Z]\w*|[A-Z][a-z]+[A-Z]\w*)$/.test(name);

describe("the 'vcnet' entry", () => {
  const exported = new Set(Object.keys(entry));

  it('exports every error class the library throws', () => {
    const classes = sourceFiles(source).flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/^export class (\w+) extends (\w+Error)\b/gm)].map((match) => ({
        name: match[1]!,
        file: relative(source, file),
      })),
    );
    expect(classes.length).toBeGreaterThan(25);
    // The brands are keyed by errorName (Symbol.for('vcnet.error.<errorName>')): names must be unique.
    const names = classes.map(({ name }) => name);
    expect(names.filter((name, position) => names.indexOf(name) !== position)).toEqual([]);
    const missing = classes
      .filter(({ name }) => !exported.has(name) && !PROGRAM_ONLY_ERRORS.includes(name))
      .map(({ name, file }) => `${name} (${file})`);
    expect(missing).toEqual([]);
    for (const { name } of classes.filter(({ name }) => exported.has(name))) {
      const type = (entry as Record<string, unknown>)[name] as { prototype: unknown };
      expect(type.prototype instanceof entry.VcnetError, `${name} is a VcnetError`).toBe(true);
    }
    // Each class states its own errorName (a bundler renames classes; an inherited one would brand a
    // subclass as its parent), equal to the class's name in the source.
    for (const { name, file } of classes) {
      const text = readFileSync(join(source, file), 'utf8');
      expect(text, `${name} states errorName`).toContain(`export class ${name} extends`);
      expect(text.split(`export class ${name} extends`)[1]?.split('\n')[1]?.trim(), `${name} (${file})`).toBe(
        `static override readonly errorName: string = '${name}';`,
      );
    }
  });

  it("keeps the netlink layer's errors in netlink/errors.ts: both entries export the same classes", () => {
    const classes = { DumpInterruptedError, DumpOverrunError, LinkNotFoundError, NetlinkClosedError, NetlinkError };
    for (const [name, type] of Object.entries(classes)) {
      expect(type, name).toBeDefined();
      expect((entry as Record<string, unknown>)[name], `vcnet's ${name}`).toBe(type);
    }
    // vcnet/netlink's header promises the netlink errors: all five, the same classes as vcnet's.
    for (const [name, type] of Object.entries(classes)) {
      expect((netlinkEntry as Record<string, unknown>)[name], `vcnet/netlink's ${name}`).toBe(type);
    }
    expect(readFileSync(join(source, 'netlink/handle.ts'), 'utf8')).not.toMatch(
      /^export class \w+ extends \w+Error\b/m,
    );
  });

  it('leaves kernel constants and codec encoders to vcnet/netlink', () => {
    const codecOnly = Object.keys(netlinkEntry).filter((name) => name !== 'NetlinkHandle' && exported.has(name));
    // What both entries share: the handle's errors and the codec's two error classes.
    expect(codecOnly.sort()).toEqual([
      'AddressFormatError',
      'DumpInterruptedError',
      'DumpOverrunError',
      'LinkNotFoundError',
      'MalformedMessageError',
      'NetlinkClosedError',
      'NetlinkError',
    ]);
  });

  it('pins every name vcnet/netlink exports: a codec helper becoming public is a decision made here', () => {
    // Values only (types leave no trace at run time). Sorted as Array.prototype.sort sorts them.
    expect(Object.keys(netlinkEntry).sort()).toEqual([
      'ActionAttribute',
      'AddressAttribute',
      'AddressFamily',
      'AddressFlag',
      'AddressFormatError',
      'AddressProtocol',
      'Attributes',
      'CLSACT_INGRESS_PARENT',
      'ChangeBatch',
      'DumpInterruptedError',
      'DumpOverrunError',
      'ETH_P_ALL',
      'ETH_P_IP',
      'ETH_P_IPV6',
      'ExtendedAck',
      'FOREVER',
      'GactAttribute',
      'HTB_PROTOCOL_VERSION',
      'HardwareType',
      'HtbAttribute',
      'IFADDRMSG_LENGTH',
      'IFINFOMSG_LENGTH',
      'INGRESS_HANDLE',
      'InterfaceFlag',
      'IpvlanAttribute',
      'IpvlanMode',
      'LinkAttribute',
      'LinkInfoAttribute',
      'LinkNotFoundError',
      'MATCH_ALL_U32_KEYS',
      'MacvlanAttribute',
      'MacvlanMode',
      'MalformedMessageError',
      'MatchallAttribute',
      'MessageFlag',
      'MessageType',
      'MessageWriter',
      'MirredAction',
      'MirredAttribute',
      'NDMSG_LENGTH',
      'NETLINK_ROUTE',
      'NLA_F_NESTED',
      'NLA_F_NET_BYTEORDER',
      'NLA_HEADER_LENGTH',
      'NLA_TYPE_MASK',
      'NLMSG_HEADER_LENGTH',
      'NeighbourAttribute',
      'NeighbourFlag',
      'NeighbourState',
      'NetlinkClosedError',
      'NetlinkError',
      'NetlinkHandle',
      'OperationalState',
      'RTEXT_FILTER_SKIP_STATS',
      'RTMSG_LENGTH',
      'RTNEXTHOP_LENGTH',
      'RouteAttribute',
      'RouteFeature',
      'RouteFlag',
      'RouteMetric',
      'RoutePreference',
      'RouteProtocol',
      'RouteScope',
      'RouteTable',
      'RouteType',
      'TCMSG_LENGTH',
      'TC_H_INGRESS',
      'TC_H_ROOT',
      'TC_U32_TERMINAL',
      'TcActionResult',
      'TcAttribute',
      'TunAttribute',
      'U32Attribute',
      'VethAttribute',
      'bytesToIp',
      'bytesToMac',
      'decodeActions',
      'decodeAddress',
      'decodeClass',
      'decodeDone',
      'decodeError',
      'decodeExpires',
      'decodeFilter',
      'decodeGactOptions',
      'decodeGateway',
      'decodeHtbQdiscOptions',
      'decodeIpvlanMode',
      'decodeLink',
      'decodeMacvlanMode',
      'decodeMatchallOptions',
      'decodeMetrics',
      'decodeMirredOptions',
      'decodeMultipath',
      'decodeNeighbour',
      'decodePrioQdiscOptions',
      'decodeQdisc',
      'decodeRoute',
      'decodeTcHeader',
      'decodeTunInfo',
      'decodeU32Options',
      'encodeActions',
      'encodeAddress',
      'encodeDeleteFilter',
      'encodeDeleteLink',
      'encodeDeleteQdisc',
      'encodeFilter',
      'encodeGactOptions',
      'encodeGetAddress',
      'encodeGetLink',
      'encodeGetNeighbour',
      'encodeGetRoute',
      'encodeGetTc',
      'encodeHtbClass',
      'encodeHtbQdiscOptions',
      'encodeIpvlanData',
      'encodeMacvlanData',
      'encodeMatchallOptions',
      'encodeMetrics',
      'encodeMirredOptions',
      'encodeMultipath',
      'encodeNeighbour',
      'encodeNewLink',
      'encodePrioQdiscOptions',
      'encodeQdisc',
      'encodeRoute',
      'encodeSetLink',
      'encodeU32Options',
      'encodeVethData',
      'errnoName',
      'familyOf',
      'formatHandle',
      'gatewayAttribute',
      'htbDefaultBurstBytes',
      'ingressQdisc',
      'ipToBytes',
      'isCachedRoute',
      'isDone',
      'isMacAddress',
      'macToBytes',
      'namesByValue',
      'networkOf',
      'parseCidr',
      'parseHandle',
      'splitMessages',
      'tcMajor',
      'tcMinor',
      'writeInfoMessage',
      'writeTcMessage',
    ]);
  });

  it("names each NetlinkHandle change with its ChangeBatch's verb, and no other name (no del* alias)", () => {
    const handle = netlinkEntry.NetlinkHandle.prototype as unknown as Record<string, unknown>;
    const batch = netlinkEntry.ChangeBatch.prototype as unknown as Record<string, unknown>;
    // Not listed by for...in, as the class's own methods are not.
    expect(Object.keys(handle)).toEqual([]);
    // Every change method of the handle: one verb per operation (add, set, replace, delete), and each
    // one the batch has too (replaceRoute is the batch's addRoute(spec, true)).
    const methods = Object.getOwnPropertyNames(handle);
    const changes = methods.filter((name) => /^(add|set|replace|delete|del|remove|change)[A-Z]/.test(name)).sort();
    expect(changes).toEqual([
      'addAddress',
      'addFilter',
      'addHtbClass',
      'addLink',
      'addNeighbour',
      'addQdisc',
      'addRoute',
      'deleteAddress',
      'deleteFilter',
      'deleteLink',
      'deleteLinkGroup',
      'deleteNeighbour',
      'deleteQdisc',
      'deleteRoute',
      'replaceRoute',
      'setLink',
    ]);
    expect(changes.filter((name) => name !== 'replaceRoute' && typeof batch[name] !== 'function')).toEqual([]);
  });

  // Types leave no trace at run time: they are looked for among the entry's exported names.
  const typeExports = readFileSync(new URL('../../src/index.ts', import.meta.url), 'utf8')
    .split('\n')
    .filter((line) => !/^\s*(\/\/|\/?\*)/.test(line))
    .join('\n');
  const isExported = (name: string) => exported.has(name) || new RegExp(`\\b${name}\\b`).test(typeExports);

  it('exports every function and class docs/library.md names', () => {
    const guide = docsPages.find(({ name }) => name === 'library.md')!.text;
    // `name(...)`, `name` and `Name` in backticks that are identifiers (not fields such as `code`).
    const named = new Set(
      [...guide.matchAll(BACKTICKED_IDENTIFIER)].map((match) => match[1]!).filter(isCompoundIdentifier),
    );
    expect(named.has('watchSandbox')).toBe(true);
    expect([...named].filter((name) => !isExported(name) && !DOCS_NON_EXPORTS.includes(name))).toEqual([]);
  });

  it("exports what every docs page imports from 'vcnet', calls, or names as the library's", () => {
    const named = new Map<string, string>();
    for (const { name: page, text } of docsPages) {
      const note = (name: string) => named.set(name, named.get(name) ?? page);
      // import { a, b } from 'vcnet' (not 'vcnet/netlink', the codec's entry).
      for (const match of text.matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*'vcnet'/g)) {
        for (const part of match[1]!.split(',')) {
          const name = part
            .trim()
            .replace(/^type\s+/, '')
            .split(/\s+as\s+/)[0]!;
          if (name !== '') note(name);
        }
      }
      // `name(...)`: a function call the reader is shown.
      for (const match of text.matchAll(/`([A-Za-z_]\w*)\([^`]*\)`/g)) note(match[1]!);
      // Identifiers in a paragraph or table row that speaks of the library ("in the library").
      for (const block of text.split(/\n\s*\n|\n(?=\|)/).filter((part) => /\blibrary\b/i.test(part))) {
        for (const match of block.matchAll(BACKTICKED_IDENTIFIER)) {
          if (isCompoundIdentifier(match[1]!)) note(match[1]!);
        }
      }
    }
    expect(named.get('qemuHotplugPortArguments')).toBeDefined();
    expect(named.get('tracing')).toBe('diagnostics.md');
    const missing = [...named]
      .filter(([name]) => !isExported(name) && !DOCS_NON_EXPORTS.includes(name))
      .map(([name, page]) => `${name} (${page})`);
    expect(missing).toEqual([]);
  });

  it("keeps the hypervisor layer's helpers internal, its clients and builders public", () => {
    const internals = [
      'MAC_PATTERN',
      'MAX_QUEUES',
      'DEVICE_ID_PATTERN',
      'FIRST_INHERITED_FD_SLOT',
      'mapDeviceFdsToChildSlots',
      'passedFdNames',
      'vfioDeviceAddArguments',
      'qemuVhostUserChardevId',
      'normalizeMac',
      'escapeQemuOptionValue',
      'kataRevertBytes',
      'bandwidthTokenBucket',
      'RATE_LIMITER_REFILL_TIME_MS',
    ];
    expect(internals.filter((name) => exported.has(name))).toEqual([]);
    for (const name of ['QmpClient', 'spawnQemu', 'buildQemuCommand', 'hotplugNetworkDevice', 'qemuNetworkArguments']) {
      expect(exported.has(name), name).toBe(true);
    }
    for (const name of ['cloudHypervisorAddNetRequest', 'firecrackerNetworkInterfaceRequest', 'QmpCommandError']) {
      expect(exported.has(name), name).toBe(true);
    }
  });

  it('names the options of the sandbox functions and the agent server, as types', () => {
    for (const name of [
      'AttachSandboxOptions',
      'DetachSandboxOptions',
      'PlanSandboxAttachOptions',
      'PlanSandboxDetachOptions',
      'TtrpcServer',
      'TtrpcServerOptions',
      'TtrpcConnection',
    ]) {
      expect(isExported(name), name).toBe(true);
    }
  });

  it('names the diagnostics channels', () => {
    expect(entry.DiagnosticsChannel.attach).toBe('vcnet:attach');
    expect(entry.DiagnosticsChannel.netlinkBatch).toBe('vcnet:netlink:batch');
  });
});
