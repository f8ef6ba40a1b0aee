/**
 * add-iface, del-iface and update-routes as processes, fed Kata JSON (a file, or stdin with `-`)
 * changed from a valid one: a field of another type, removed, the bytes damaged (a BOM, cut short,
 * non-UTF-8 bytes, duplicate keys, deep nesting, NUL, CRLF), and odd sandbox ids. The answer is an
 * exit the docs list (0-5), a `vcnet: ` line on stderr in vcnet's words (with --json, the error
 * object on stdout too); a refusal leaves the pod namespace and the state directory as they were
 * (the lock file's holder aside), a successful add-iface is undone by del-iface. No VM: the sandbox
 * is attached without one, so the commands change the host side and the record only.
 * Then, in this process: their JSON, and a guest's neighbours, with keys given twice (the same key,
 * another case of it, a spelling Go folds onto it (long s, Kelvin sign) or one it folds onto nothing
 * (ı, İ, ﬅ), an alias, the request's own key, inside list items), read as a small model of Go's
 * encoding/json over Kata's structs reads it (test/helpers/kata-json-go-model.ts) with vcnet's
 * extensions, stated once here (VCNET_EXTENSIONS), every ignored key named once. Addresses are IPv4
 * and IPv6 (interfaces with either or both, routes with v6 destinations, gateways and sources,
 * neighbours with a v6 toIPAddress), with every family form: the family vcnet sends is the one the
 * addresses give (familyAsSent), another of its extensions.
 * Replay or widen a search with VCNET_FUZZ_SEED and VCNET_FUZZ_RUNS (the failure message gives the seed).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDevicePath, sentDevicePath } from '../../../src/agent/device-path.js';
import type { ARPNeighbor, IPAddress, Route } from '../../../src/agent/generated/types_pb.js';
import {
  interfaceRequestFromJson,
  neighboursFromJson,
  parseKataJsonText,
  routesRequestFromJson,
} from '../../../src/agent/kata-network-json.js';
import { InvalidInputError } from '../../../src/errors.js';
import { CLI, stateDirectoryPerTest } from '../../helpers/cli.js';
import {
  changedAt,
  damagedBytes,
  directoryListing,
  fuzzParameters,
  LEAKED,
  type ProgramRun,
  pathsIn,
  runProgram,
} from '../../helpers/entry-point-fuzz.js';
import {
  ARP_NEIGHBOR,
  decodeAs,
  type Extensions,
  fieldsGiven,
  type GoReading,
  type GoScalar,
  goFold,
  INTERFACE,
  type JsonNode,
  jsonText,
  ROUTE,
  ROUTES,
  type ScalarValue,
  UPDATE_INTERFACE_REQUEST,
  UPDATE_ROUTES_REQUEST,
} from '../../helpers/kata-json-go-model.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, linkMac, makePod } from '../../helpers/pod.js';

const skipReason = process.getuid?.() !== 0 ? 'needs root (namespaces, taps, tc)' : undefined;
if (skipReason) console.log(`skipping the Kata JSON fuzz tests: ${skipReason}`);

// Also deletes each test's namespaces after it.
const workDirectory = stateDirectoryPerTest('vcnet-kata-json-fuzz-');
let pod: TestNamespace;

function vcnet(args: string[], input: Buffer | string = ''): ProgramRun {
  return runProgram(CLI, [...args, '--state-dir', join(workDirectory(), 'state')], input, {});
}

/** The state directory as compared: a lock file's content is its last holder, which a refusal may be. */
function stateListing(): string[] {
  return directoryListing(workDirectory()).map((entry) => (entry.includes('/.locks/') ? entry.split(' ')[0]! : entry));
}

describe.skipIf(skipReason)('add-iface, del-iface and update-routes fed changed Kata JSON', () => {
  it('del-iface of {"name":"eth9","Name":"eth0","name":0} is refused as Go refuses it, and removes nothing (it removed eth0)', () => {
    pod = makePod({ interfaces: 2 }).pod;
    expect(vcnet(['attach', '--sandbox', 'k1', '--netns', pod.path]).status).toBe(0);
    try {
      const attached = JSON.stringify(fingerprint(pod));
      const before = stateListing();
      const refused = vcnet(['del-iface', 'k1', '-'], '{"name":"eth9","Name":"eth0","name":0}');
      expect(refused.status, refused.stdout).toBe(2);
      expect(refused.stderr).toMatch(/^vcnet: invalid interface\.name: 0 \(accepted: /);
      expect(JSON.stringify(fingerprint(pod))).toBe(attached);
      expect(stateListing()).toEqual(before);
    } finally {
      vcnet(['detach', '--sandbox', 'k1']);
    }
  });

  it('answers every changed input with a documented exit in its own words, and a refusal changes nothing', () => {
    pod = makePod({ interfaces: 2 }).pod;
    const attached = vcnet(['attach', '--sandbox', 'f1', '--netns', pod.path]);
    expect(attached.status, attached.stderr).toBe(0);
    expect(vcnet(['del-iface', 'f1', '-'], '{"name":"eth1"}').status).toBe(0);
    try {
      const podBefore = JSON.stringify(fingerprint(pod));
      const eth1Mac = linkMac(pod, 'eth1');
      const valid = {
        'add-iface': {
          device: 'eth1',
          name: 'eth1',
          IPAddresses: [{ family: 0, address: '10.201.0.2', mask: '24' }],
          mtu: 1500,
          hwAddr: eth1Mac,
          type: 'veth',
          pciPath: '',
          raw_flags: 0,
        },
        'del-iface': { name: 'eth1' },
        'update-routes': [
          { dest: '10.9.0.0/16', gateway: '10.200.0.1', device: 'eth0', source: '', scope: 0, family: 0 },
          { dest: 'default', gateway: '10.200.0.1', device: 'eth0' },
        ],
      };
      const oddValue = fc.oneof(
        fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -0, 2 ** 31, 2 ** 32, 2 ** 53 + 2, '', ' ', '\u0000'),
        fc.constantFrom('\ud800', '💥', [], {}, [[]], 'eth0', 'eth1', '/', '0.0.0.0/0', '::/0', '10.0.0.2/33'),
        fc.constantFrom('__proto__', 'A'.repeat(20_000), 'default', '02:00:00:00:00:01', '00:00:00:00:00:00'),
        fc.string({ maxLength: 10, unit: 'binary' }),
        fc.anything({ maxDepth: 2, maxKeys: 3 }),
      );
      const change = fc.record({
        command: fc.constantFrom('add-iface', 'add-iface', 'del-iface', 'update-routes'),
        pick: fc.nat(),
        remove: fc.boolean(),
        to: oddValue,
        damage: fc.constantFrom(
          'none',
          'none',
          'none',
          'bom',
          'duplicate keys',
          'cut',
          'non-UTF-8',
          'deep',
          'NUL',
          'CRLF',
        ),
        at: fc.nat(),
        viaFile: fc.boolean(),
        json: fc.boolean(),
        sandbox: fc.constantFrom('f1', 'f1', 'f1', 'nope', '', '../x', 'f1/..', '-x'),
      });
      fc.assert(
        fc.property(change, (generated) => {
          const given = valid[generated.command as keyof typeof valid];
          const paths = pathsIn(given);
          const text = JSON.stringify(changedAt(given, paths[generated.pick % paths.length]!, generated)) ?? '';
          const input = damagedKataJson(text, generated.damage, generated.at);
          const stateBefore = stateListing();
          const file = join(workDirectory(), 'input.json');
          if (generated.viaFile) writeFileSync(file, input);
          const args = [generated.command, generated.sandbox, generated.viaFile ? file : '-'];
          const run = vcnet([...args, ...(generated.json ? ['--json'] : [])], generated.viaFile ? '' : input);
          rmSync(file, { force: true });
          const problems: string[] = [];
          if (![0, 1, 2, 3, 4, 5].includes(run.status ?? -1)) problems.push(`exit ${run.status} (${run.signal})`);
          if (LEAKED.test(run.stderr)) problems.push(`words that are not vcnet's: ${run.stderr.slice(0, 600)}`);
          if (run.status !== 0) {
            if (
              !run.stderr.split('\n').some((line) => line.startsWith('vcnet: ') && !line.startsWith('vcnet: warning'))
            )
              problems.push(`no "vcnet: " error line: ${run.stderr.slice(0, 300)}`);
            if (generated.json && !errorCodeIn(run.stdout).startsWith('VCNET_'))
              problems.push(`--json without the error object: ${run.stdout.slice(0, 200)}`);
            if (JSON.stringify(stateListing()) !== JSON.stringify(stateBefore))
              problems.push('the state directory changed');
          } else if (generated.command === 'add-iface') {
            // Undone by the MAC, whatever guest name the changed JSON gave it.
            const undone = vcnet(['del-iface', 'f1', '-'], JSON.stringify({ hwAddr: eth1Mac }));
            if (undone.status !== 0) problems.push(`the del-iface after it failed: ${undone.stderr.slice(0, 300)}`);
          } else if (generated.command === 'del-iface') {
            problems.push('del-iface of an interface the sandbox does not have succeeded');
          }
          if (generated.command !== 'update-routes' && JSON.stringify(fingerprint(pod)) !== podBefore)
            problems.push('the pod namespace is not as it was');
          expect({ args, problems }).toEqual({ args, problems: [] });
        }),
        fuzzParameters(36, 40),
      );
    } finally {
      vcnet(['detach', '--sandbox', 'f1']);
    }
  });
});

/** The code of the `{"error": ...}` line --json prints, or "". */
function errorCodeIn(stdout: string): string {
  try {
    return String(JSON.parse(stdout.trim().split('\n').at(-1) ?? '').error?.code ?? '');
  } catch {
    return '';
  }
}

/** The Interface JSON damaged: the duplicate keys are the ones s36-fuzz found del-iface misread. */
function damagedKataJson(text: string, how: string, at: number): Buffer {
  return damagedBytes(text, how, at, { duplicateKeys: '"name":"eth9","Name":"eth0"', nul: ['eth', 'e\\u0000th'] });
}

describe('add-iface, del-iface, update-routes and neighbours fed Kata JSON with keys given twice', () => {
  /**
   * Go's folding of a key, and spellings that fold onto nothing ASCII: the dotless ı and the dotted İ
   * (JavaScript's toUpperCase and toLowerCase make an i or "i̇" of them) and the ligature ﬅ ("ST" in
   * upper case). Each variant of `name` that changes it.
   */
  const spellings = (name: string) => [
    name,
    name,
    name.toUpperCase(),
    name.toLowerCase(),
    `${name[0]!.toUpperCase()}${name.slice(1)}`,
    name.replace(/s/gi, '\u017f'),
    name.replace(/k/gi, '\u212a'),
    name.replace(/i/g, '\u0131'),
    name.replace(/I/g, '\u0130'),
    name.replace(/st/gi, '\ufb05'),
  ];
  const key = (name: string) => fc.constantFrom(...spellings(name));
  const scalar = (value: ScalarValue): JsonNode => ({ scalar: value });
  const fieldValue = (valid: Array<string | number>, bad: Array<boolean | number | string>) =>
    fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom(...valid).map(scalar) },
      { weight: 1, arbitrary: fc.constant(scalar(null)) },
      { weight: 1, arbitrary: fc.constantFrom(...bad).map(scalar) },
    );
  const entry = (name: string, value: fc.Arbitrary<JsonNode>) => fc.tuple(key(name), value);
  const object = (entries: Array<fc.Arbitrary<[string, JsonNode]>>, maxLength: number) =>
    fc.array(fc.oneof(...entries), { maxLength }).map((object): JsonNode => ({ object }));
  const unknownKey = entry('colour', fieldValue(['red'], [5]));
  const uint = fieldValue([0, 253, '1400'], [-1, 1.5, 'x']);
  const int = fieldValue([0, 128, -1, '2'], [1.5, 2 ** 31, 'x']);
  const family = fieldValue([0, 'v4', 2, 1, 'v6', 10], ['x', 7]);
  const devicePath = fieldValue(['', '02/00', '02.0/00.0', '03/00'], [5, 'zz']);
  const address = object(
    [
      entry('family', family),
      entry('address', fieldValue(['10.0.0.1', '10.0.0.2', '2001:db8::1', 'fe80::1'], [5])),
      entry('mask', fieldValue(['24', '16', '64'], [true])),
      unknownKey,
    ],
    5,
  );
  const listOf = (item: fc.Arbitrary<JsonNode>) =>
    fc.oneof(
      {
        weight: 6,
        arbitrary: fc
          .array(fc.oneof({ weight: 6, arbitrary: item }, { weight: 1, arbitrary: fc.constant(scalar(null)) }), {
            maxLength: 3,
          })
          .map((array): JsonNode => ({ array })),
      },
      { weight: 1, arbitrary: fc.constantFrom<JsonNode>(scalar(null), scalar(5), { object: [] }) },
    );
  const anInterface = object(
    [
      entry('name', fieldValue(['eth0', 'eth1'], [0])),
      entry('device', fieldValue(['eth0'], [true])),
      entry('IPAddresses', listOf(address)),
      entry('mtu', fieldValue([1400, 1500, '1400'], [-1, 'x', 2 ** 53 + 2])),
      entry('hwAddr', fieldValue(['02:00:00:00:00:01'], [1])),
      entry('devicePath', devicePath),
      entry('pciPath', devicePath),
      entry('type', fieldValue(['veth', 'tap'], [1])),
      entry('raw_flags', uint),
      fc.tuple(fc.constantFrom('linkType', 'LinkType', 'lin\u212aType', 'type_'), fieldValue(['veth', 'tap'], [1])),
      fc.tuple(fc.constantFrom('rawFlags', 'RAWFLAGS', 'rawFlag\u017f'), uint),
      fc.tuple(fc.constantFrom('PciAddr', 'pciaddr'), devicePath),
      unknownKey,
    ],
    8,
  );
  const interfaceJson = fc.oneof(
    { weight: 2, arbitrary: anInterface },
    {
      weight: 1,
      // The request around it, its key in any spelling (one Go folds onto nothing makes no request).
      arbitrary: fc
        .array(
          fc.tuple(
            key('interface'),
            fc.oneof(
              { weight: 4, arbitrary: anInterface },
              { weight: 1, arbitrary: fc.constantFrom(scalar(null), scalar(5)) },
            ),
          ),
          { minLength: 1, maxLength: 3 },
        )
        .map((object): JsonNode => ({ object })),
    },
  );
  const aRoute = object(
    [
      entry('dest', fieldValue(['10.0.0.0/8', '10.1.0.0/16', '', 'default', '2001:db8:1::/48', '::/0'], [0])),
      entry('gateway', fieldValue(['10.0.0.254', '', 'fe80::1', '2001:db8::fe'], [0])),
      entry('device', fieldValue(['eth0', 'eth1'], [true])),
      entry('source', fieldValue(['', '10.0.0.1', '2001:db8::1'], [1])),
      entry('scope', uint),
      entry('family', family),
      entry('flags', uint),
      entry('mtu', uint),
      unknownKey,
    ],
    7,
  );
  const routesMessage = object(
    [entry('Routes', listOf(aRoute)), fc.tuple(fc.constant('Routes'), listOf(aRoute)), unknownKey],
    3,
  );
  const routesJson = fc.oneof(
    listOf(aRoute),
    routesMessage,
    fc
      .array(
        fc.tuple(
          key('routes'),
          fc.oneof(
            { weight: 4, arbitrary: routesMessage },
            { weight: 1, arbitrary: fc.constantFrom<JsonNode>(scalar(null), scalar(5), { array: [] }) },
          ),
        ),
        { minLength: 1, maxLength: 3 },
      )
      .map((object): JsonNode => ({ object })),
  );
  const aNeighbour = object(
    [
      entry(
        'toIPAddress',
        fc.oneof({ weight: 4, arbitrary: address }, { weight: 1, arbitrary: fc.constant(scalar(null)) }),
      ),
      entry('device', fieldValue(['eth0', 'eth1'], [true])),
      entry('lladdr', fieldValue(['02:00:00:00:00:02', ''], [0])),
      entry('state', int),
      entry('flags', int),
      unknownKey,
    ],
    7,
  );

  /** What vcnet read, in the model's terms. */
  function vcnetReading(read: (ignoredKeys: string[]) => unknown): GoReading {
    const ignoredKeys: string[] = [];
    try {
      return { refused: false, value: read(ignoredKeys), ignored: ignoredKeys };
    } catch (error) {
      if (error instanceof InvalidInputError) return { refused: true };
      throw error;
    }
  }
  const addressData = (address: IPAddress | undefined) => ({
    family: address?.family ?? 0,
    address: address?.address ?? '',
    mask: address?.mask ?? '',
  });
  const routeData = (route: Route) => ({
    dest: route.dest,
    gateway: route.gateway,
    device: route.device,
    source: route.source,
    scope: route.scope,
    family: route.family,
    flags: route.flags,
    mtu: route.mtu,
  });
  const neighbourData = (neighbour: ARPNeighbor) => ({
    toIPAddress: addressData(neighbour.toIPAddress),
    device: neighbour.device,
    lladdr: neighbour.lladdr,
    state: neighbour.state,
    flags: neighbour.flags,
  });

  it('reads them as Go encoding/json decodes them (a model of its rules), and names every key it ignored', () => {
    fc.assert(
      fc.property(interfaceJson, routesJson, listOf(aNeighbour), (anInterfaceJson, someRoutesJson, neighbours) => {
        const interfaceText = jsonText(anInterfaceJson);
        const readInterface = vcnetReading((ignoredKeys) => {
          const message = interfaceRequestFromJson(parseKataJsonText(interfaceText, 'interface'), { ignoredKeys });
          return {
            device: message.device,
            name: message.name,
            IPAddresses: message.IPAddresses.map(addressData),
            mtu: Number(message.mtu),
            hwAddr: message.hwAddr,
            devicePath: message.devicePath,
            type: message.type,
            raw_flags: message.rawFlags,
          };
        });
        expect({ interfaceText, read: readInterface }).toEqual({
          interfaceText,
          read: vcnetModelInterface(anInterfaceJson),
        });
        const routesText = jsonText(someRoutesJson);
        const readRoutes = vcnetReading((ignoredKeys) =>
          routesRequestFromJson(parseKataJsonText(routesText, 'routes'), { ignoredKeys })?.map(routeData),
        );
        expect({ routesText, read: readRoutes }).toEqual({ routesText, read: vcnetModelRoutes(someRoutesJson) });
        const neighboursText = jsonText(neighbours);
        const readNeighbours = vcnetReading((ignoredKeys) =>
          neighboursFromJson(parseKataJsonText(neighboursText, 'neighbours'), 'neighbours', { ignoredKeys }).map(
            neighbourData,
          ),
        );
        expect({ neighboursText, read: readNeighbours }).toEqual({
          neighboursText,
          read: vcnetModelNeighbours(neighbours),
        });
      }),
      fuzzParameters(40, 2000),
    );
  });
});

/**
 * What vcnet reads beyond Go's encoding/json over Kata's structs, on purpose, stated once: the model
 * is given these and nothing else, so the comparison fails on anything else vcnet reads otherwise
 * than Kata's runtime would.
 */
const VCNET_EXTENSIONS: Extensions = {
  // Both names Kata gave Interface field 6: pciPath until 2025, devicePath since (checked below).
  fields: { Interface: { pciPath: 'string' } },
  // Kata 1.x's untagged Go fields LinkType and PciAddr, protobuf JSON's rawFlags, and type_, the
  // name in the serde JSON of Kata's Rust protocol crate; matched as Go folds keys, as 1.x's were.
  aliases: { Interface: { linktype: 'type', type_: 'type', rawflags: 'raw_flags', pciaddr: 'pciPath' } },
  scalar: vcnetScalar,
  // A request's fields are named as the message's given alone ("interface.name", "routes[0].dest").
  unnamed: new Set([UPDATE_INTERFACE_REQUEST.name, UPDATE_ROUTES_REQUEST.name, ROUTES.name]),
};

const INTEGER_TEXT = /^-?(0|[1-9][0-9]*)$/;

/**
 * Kata's IPFamily only as 0/1, "v4"/"v6" or Kata 1.x's netlink numbers 2 and 10 (Go takes any
 * int32); an integer also as a decimal string (protobuf JSON's 64-bit form); an mtu at most 2^53-1,
 * what a JavaScript number holds exactly (Go takes any uint64).
 */
function vcnetScalar(type: GoScalar, value: Exclude<ScalarValue, null>): { value: unknown } | 'refused' | undefined {
  if (type === 'IPFamily') {
    if (value === 0 || value === 2 || value === 'v4') return { value: 0 };
    return value === 1 || value === 10 || value === 'v6' ? { value: 1 } : 'refused';
  }
  if (type === 'string') return undefined;
  const number = typeof value === 'string' && INTEGER_TEXT.test(value) ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number)) return 'refused';
  const [min, max] =
    type === 'uint64' ? [0, Number.MAX_SAFE_INTEGER] : type === 'uint32' ? [0, 0xffffffff] : [-(2 ** 31), 2 ** 31 - 1];
  return number >= min && number <= max ? { value: number } : 'refused';
}

/** vcnet refuses what Go would decode into a nil pointer and Kata's runtime then sends or dereferences. */
function withoutNil<Item>(items: Array<Item | null> | null): Item[] | undefined {
  return (items ?? []).includes(null) ? undefined : ((items ?? []) as Item[]);
}

type Plain = Record<string, unknown>;
const REFUSED: GoReading = { refused: true };

/**
 * add-iface's and del-iface's JSON: an Interface, or the UpdateInterfaceRequest around one
 * (isRequest); its device path in a form Kata's agent takes, devicePath and pciPath the same path
 * when both are given; each address's family as sent (familyAsSent), a v6 family with an IPv4
 * address refused.
 */
function vcnetModelInterface(node: JsonNode): GoReading {
  const request = isRequest(node, 'interface');
  const reading = request
    ? decodeAs(node, UPDATE_INTERFACE_REQUEST, 'interface', VCNET_EXTENSIONS)
    : decodeAs(node, INTERFACE, 'interface', VCNET_EXTENSIONS);
  if (reading.refused) return reading;
  const value = (request ? (reading.value as Plain).interface : reading.value) as Plain | null;
  const addresses = withoutNil(value?.IPAddresses as Plain[] | null);
  if (value === null || addresses === undefined) return REFUSED;
  const given = value.devicePath as string;
  const old = value.pciPath as string;
  if (given && old && sentDevicePath(given) !== sentDevicePath(old)) return REFUSED;
  if (!isDevicePath(given || old)) return REFUSED;
  // A v6 family with an IPv4 address is refused (the address cannot say which was meant).
  if (addresses.some((address) => address.family === 1 && isIPv4(address.address as string))) return REFUSED;
  const { pciPath: _, ...rest } = value;
  return {
    ...reading,
    value: { ...rest, IPAddresses: addresses.map(addressAsSent), devicePath: sentDevicePath(given || old) },
  };
}

/**
 * update-routes' JSON: a list, the agent's Routes message (a key Go folds onto `Routes`), or the
 * UpdateRoutesRequest around one; a nil list (undefined) changes nothing; a request whose Routes
 * message has no Routes is the empty set only when none of its keys was ignored (a misspelt Routes
 * would remove every route).
 */
function vcnetModelRoutes(node: JsonNode): GoReading {
  if ('scalar' in node && node.scalar === null) return { refused: false, value: undefined, ignored: [] };
  let reading: GoReading;
  let routes: Plain[] | null;
  if (isRequest(node, 'routes')) {
    reading = decodeAs(node, UPDATE_ROUTES_REQUEST, 'routes', VCNET_EXTENSIONS);
    if (reading.refused) return reading;
    const message = (reading.value as Plain).routes as Plain | null;
    if (message === null) return { ...reading, value: undefined };
    if (!fieldsGiven(message).has('Routes')) return reading.ignored.length > 0 ? REFUSED : { ...reading, value: [] };
    routes = message.Routes as Plain[] | null;
  } else if ('object' in node && node.object.some(([key]) => goFold(key) === 'routes')) {
    reading = decodeAs(node, ROUTES, 'routes', VCNET_EXTENSIONS);
    if (reading.refused) return reading;
    routes = (reading.value as Plain).Routes as Plain[] | null;
  } else {
    reading = decodeAs(node, { sliceOf: ROUTE }, 'routes', VCNET_EXTENSIONS);
    if (reading.refused) return reading;
    routes = reading.value as Plain[] | null;
  }
  if (routes === null) return { ...reading, value: undefined };
  const items = withoutNil(routes);
  if (items === undefined) return REFUSED;
  return { ...reading, value: items.map(routeAsSent) };
}

/** The neighbours of a guest's JSON: a list (null: none); a neighbour without toIPAddress has the empty address. */
function vcnetModelNeighbours(node: JsonNode): GoReading {
  const reading = decodeAs(node, { sliceOf: ARP_NEIGHBOR }, 'neighbours', VCNET_EXTENSIONS);
  if (reading.refused) return reading;
  const items = withoutNil(reading.value as Array<Plain | null> | null);
  if (items === undefined) return REFUSED;
  const empty = { family: 0, address: '', mask: '' };
  return {
    ...reading,
    value: items.map((item) => ({ ...item, toIPAddress: addressAsSent((item.toIPAddress as Plain | null) ?? empty) })),
  };
}

/**
 * The family vcnet sends, made true to the addresses (Go keeps the number given; Kata's agent picks
 * its parser by it): a v6 family stays, else the first address given (not "" or "default") decides.
 */
function familyAsSent(family: unknown, addresses: readonly unknown[]): number {
  if (family === 1) return 1;
  const first = addresses.find((address) => address !== '' && address !== 'default');
  return typeof first === 'string' && isIPv6(first.split('/')[0] ?? '') ? 1 : 0;
}

function addressAsSent(address: Plain): Plain {
  return { ...address, family: familyAsSent(address.family, [address.address]) };
}

/** A route as vcnet sends it: its family as familyAsSent gives it, dest "default" as that family's default. */
function routeAsSent(route: Plain): Plain {
  const family = familyAsSent(route.family, [route.dest, route.gateway, route.source]);
  const dest = route.dest === 'default' ? (family === 1 ? '::/0' : '0.0.0.0/0') : route.dest;
  return { ...route, family, dest };
}

/**
 * vcnet's test for the request around one message: every key is `field` as Go folds it (as Go decodes
 * the request's field), one value at least an object.
 */
function isRequest(node: JsonNode, field: string): boolean {
  return (
    'object' in node &&
    node.object.length > 0 &&
    node.object.every(([key]) => goFold(key) === field) &&
    node.object.some(([, child]) => 'object' in child)
  );
}
