/**
 * The exported functions that read a caller's objects, fed generated values (docs/library.md
 * "Arguments"): each either answers or throws a VcnetError whose message says what is wrong in
 * vcnet's words. Never a TypeError ("text.trim is not a function", "Cannot convert object to
 * primitive value"), zod's own wording ("Invalid input: expected object, received null", "Too big:
 * expected number to be <=2147483647"), or "[object Object]", "undefined" or "NaN" for a value.
 * No function here touches the kernel or a state directory.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseCniConfig } from '../../src/cni/config.js';
import { describeGivenValue, type FieldIssue } from '../../src/errors.js';
import {
  classifyScan,
  defineNetworkConfig,
  hypervisorDeviceConfig,
  interfaceFromJson,
  neighbourFromJson,
  neighboursFromJson,
  networkConfigFromKata,
  parseInterworkingModel,
  parseKataConfiguration,
  routeFromJson,
  routesFromJson,
  VcnetError,
  validateNetworkConfig,
} from '../../src/index.js';

/** Texts that must never reach a user: another layer's words, or a value printed as JavaScript stringifies it. */
const LEAKED =
  /\[object \w+\]|\bundefined\b|\bNaN\b|Invalid input|Too (big|small)|expected \w+ to (be|have)|received \w+|is not a function|is not iterable|Cannot (read|convert|set)/;

// Leaves without undefined or NaN: a value the caller gave is printed as given, and a nested
// undefined or NaN in it would be the caller's own text, not a leak (a top-level undefined is below).
const leaf = fc.oneof(
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.string({ maxLength: 8 }),
  fc.constantFrom(null, '', 0, -1, 2 ** 31, 2 ** 53, 1e21, 'tcfilter', 'eth0', '10.0.0.2', '24', '/run/netns/x'),
);
const anything = fc.oneof(
  { weight: 1, arbitrary: fc.constant(undefined) },
  {
    weight: 9,
    arbitrary: fc.anything({
      maxDepth: 2,
      maxKeys: 4,
      values: [leaf],
      withNullPrototype: true,
      withBigInt: true,
      withDate: true,
      withMap: true,
      withSet: true,
      withBoxedValues: true,
      withSparseArray: false,
    }),
  },
);
/** A record with some of these keys, each a plausible value or anything. */
const someOf = (fields: Record<string, fc.Arbitrary<unknown>>) =>
  fc.record(Object.fromEntries(Object.entries(fields).map(([key, value]) => [key, fc.oneof(value, anything)])), {
    requiredKeys: [],
  });

const networkConfig = someOf({
  namespacePath: fc.constantFrom('/run/netns/s15lb-x', 'relative'),
  model: fc.constantFrom('tcfilter', 'MACVTAP', 'default', 'x'),
  queues: fc.constantFrom(1, 0, 257, 1.5),
  vhostNet: fc.constantFrom('auto', 'off', 'on'),
  namedInterfaces: fc.constantFrom(['eth0'], [''], []),
  tapOwner: fc.constantFrom(0, -1, 2 ** 31),
  rateLimit: fc.constant({ rxBitsPerSecond: 8 }),
});
const ipAddress = someOf({ family: fc.constantFrom(0, 1, 'v6'), address: leaf, mask: fc.constantFrom('24', 'x') });
const kataInterface = someOf({
  name: fc.constant('eth0'),
  IPAddresses: fc.array(ipAddress, { maxLength: 2 }),
  mtu: fc.constantFrom(1500, 0, 65536),
  hwAddr: fc.constantFrom('02:00:00:00:00:01', 'zz'),
});
const kataRoute = someOf({
  dest: fc.constantFrom('default', '10.0.0.0/24', '10.0.0.0/33'),
  gateway: fc.constantFrom('', '10.0.0.1'),
  scope: fc.constantFrom(0, 253, 256),
  family: fc.constantFrom(0, 1, 7),
});
const kataNeighbour = someOf({ toIPAddress: ipAddress, lladdr: fc.constant('02:00:00:00:00:01'), state: leaf });
const scan = fc.oneof(
  someOf({
    interfaces: fc.array(
      someOf({
        link: someOf({ name: fc.constant('eth0'), kind: fc.constantFrom('veth', 'bridge'), flags: fc.integer() }),
        addresses: fc.constant([]),
        routes: fc.constant([]),
        neighbours: fc.constant([]),
      }),
      { maxLength: 2 },
    ),
  }),
  anything,
);
const label = fc.oneof(fc.constantFrom(undefined, 'field'), anything);
const cniConfig = someOf({
  model: fc.constant('tcfilter'),
  queues: fc.constant(2),
  tapOwner: fc.constantFrom(0, 'root', 2 ** 31),
  tapGroup: fc.constant(0),
  stateDir: fc.constant('/tmp/s15lb-never-made'),
  lockTimeoutMs: fc.constant(0),
  rateLimit: someOf({ rx: fc.constant(8), tx: fc.constant(0) }),
  prevResult: someOf({
    interfaces: fc.array(fc.oneof(someOf({ name: fc.constant('eth0'), mac: leaf, sandbox: leaf }), anything)),
    ips: fc.array(someOf({ address: fc.constant('10.0.0.2/24') })),
    routes: fc.array(someOf({ dst: fc.constant('0.0.0.0/0') })),
  }),
});

/** The message with each value the caller gave taken out: a value is printed as given, its own undefined too. */
function ownWords(error: VcnetError): string {
  const issues = (error as { issues?: FieldIssue[] }).issues ?? [];
  let text = error.message;
  for (const value of [error.value, ...issues.map((issue) => issue.value)]) {
    if (value !== undefined) text = text.replaceAll(describeGivenValue(value), '<value>');
  }
  return text;
}

const TARGETS: Record<string, [fc.Arbitrary<unknown[]>, (...args: never[]) => unknown]> = {
  defineNetworkConfig: [fc.tuple(fc.oneof(networkConfig, anything)), defineNetworkConfig],
  validateNetworkConfig: [fc.tuple(fc.oneof(networkConfig, anything)), validateNetworkConfig],
  networkConfigFromKata: [fc.tuple(anything, anything), networkConfigFromKata],
  parseKataConfiguration: [
    fc.tuple(fc.oneof(fc.constantFrom('[runtime]\ninternetworking_model = "x"', 'a = ', '[[['), anything), label),
    parseKataConfiguration,
  ],
  parseInterworkingModel: [fc.tuple(fc.oneof(fc.constant('tcfilter'), anything), label), parseInterworkingModel],
  interfaceFromJson: [fc.tuple(fc.oneof(kataInterface, anything), label, anything), interfaceFromJson],
  routeFromJson: [fc.tuple(fc.oneof(kataRoute, anything), label, anything), routeFromJson],
  routesFromJson: [fc.tuple(fc.oneof(fc.array(kataRoute, { maxLength: 2 }), anything), label), routesFromJson],
  neighbourFromJson: [fc.tuple(fc.oneof(kataNeighbour, anything), label), neighbourFromJson],
  neighboursFromJson: [fc.tuple(fc.oneof(fc.array(kataNeighbour), anything), label), neighboursFromJson],
  classifyScan: [fc.tuple(scan, anything), classifyScan],
  hypervisorDeviceConfig: [
    fc.tuple(fc.oneof(fc.constant('qemu'), anything), anything, anything),
    hypervisorDeviceConfig,
  ],
  parseCniConfig: [
    fc.tuple(cniConfig.map((fields) => ({ cniVersion: '1.0.0', name: 'n', type: 'vcnet-cni', ...fields }))),
    parseCniConfig,
  ],
};

describe('exported functions fed generated values', () => {
  for (const [name, [args, work]] of Object.entries(TARGETS)) {
    it(`${name} answers, or throws a VcnetError in vcnet's words`, () => {
      fc.assert(
        fc.property(args, (given) => {
          let thrown: unknown;
          try {
            (work as (...values: unknown[]) => unknown)(...given);
          } catch (error) {
            thrown = error;
          }
          if (thrown === undefined) return;
          expect(thrown, String(thrown)).toBeInstanceOf(VcnetError);
          expect(ownWords(thrown as VcnetError)).not.toMatch(LEAKED);
        }),
        { numRuns: 150, seed: 15 },
      );
    });
  }
});
