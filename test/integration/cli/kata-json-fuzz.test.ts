/**
 * add-iface, del-iface and update-routes as processes, fed Kata JSON (a file, or stdin with `-`)
 * changed from a valid one: a field of another type, removed, the bytes damaged (a BOM, cut short,
 * non-UTF-8 bytes, duplicate keys, deep nesting, NUL, CRLF), and odd sandbox ids. The answer is an
 * exit the docs list (0-5), a `vcnet: ` line on stderr in vcnet's words (with --json, the error
 * object on stdout too); a refusal leaves the pod namespace and the state directory as they were
 * (the lock file's holder aside), a successful add-iface is undone by del-iface. No VM: the sandbox
 * is attached without one, so the commands change the host side and the record only.
 * Then, in this process: their JSON with keys given twice (the same key, another case of it, an alias,
 * the request's own key, inside list items), read as a small model of Go's encoding/json reads it
 * (test/helpers/kata-json-go-model.ts), every ignored key named once.
 * Replay or widen a search with VCNET_FUZZ_SEED and VCNET_FUZZ_RUNS (the failure message gives the seed).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Route } from '../../../src/agent/generated/types_pb.js';
import {
  interfaceRequestFromJson,
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
  type JsonNode,
  jsonText,
  type ModelReading,
  modelInterface,
  modelRoutes,
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

describe('add-iface, del-iface and update-routes fed Kata JSON with keys given twice', () => {
  const key = (name: string) =>
    fc.constantFrom(name, name, name.toUpperCase(), name.toLowerCase(), `${name[0]!.toUpperCase()}${name.slice(1)}`);
  const scalar = (value: null | boolean | number | string): JsonNode => ({ scalar: value });
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
  const family = fieldValue([0, 'v4', 2], ['x', 7]);
  const address = object(
    [
      entry('family', family),
      entry('address', fieldValue(['10.0.0.1', '10.0.0.2'], [5])),
      entry('mask', fieldValue(['24', '16'], [true])),
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
      entry('mtu', fieldValue([1400, 1500, '1400'], [-1, 'x'])),
      entry('hwAddr', fieldValue(['02:00:00:00:00:01'], [1])),
      entry('type', fieldValue(['veth', 'tap'], [1])),
      entry('raw_flags', uint),
      fc.tuple(fc.constantFrom('linkType', 'LinkType', 'type_', 'rawFlags'), fieldValue(['veth', 'tap', 1], [true])),
      unknownKey,
    ],
    8,
  );
  const interfaceJson = fc.oneof(
    { weight: 2, arbitrary: anInterface },
    {
      weight: 1,
      arbitrary: fc
        .array(
          fc.oneof(
            { weight: 4, arbitrary: anInterface },
            { weight: 1, arbitrary: fc.constantFrom(scalar(null), scalar(5)) },
          ),
          { minLength: 1, maxLength: 3 },
        )
        .map((values): JsonNode => ({ object: values.map((value) => ['interface', value]) })),
    },
  );
  const aRoute = object(
    [
      entry('dest', fieldValue(['10.0.0.0/8', '10.1.0.0/16', ''], [0])),
      entry('gateway', fieldValue(['10.0.0.254', ''], [0])),
      entry('device', fieldValue(['eth0', 'eth1'], [true])),
      entry('source', fieldValue([''], [1])),
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
        fc.oneof(
          { weight: 4, arbitrary: routesMessage },
          { weight: 1, arbitrary: fc.constantFrom<JsonNode>(scalar(null), scalar(5), { array: [] }) },
        ),
        { minLength: 1, maxLength: 3 },
      )
      .map((values): JsonNode => ({ object: values.map((value) => ['routes', value]) })),
  );

  /** What vcnet read, in the model's terms. */
  function vcnetReading(read: (ignoredKeys: string[]) => unknown): ModelReading {
    const ignoredKeys: string[] = [];
    try {
      return { refused: false, value: read(ignoredKeys), ignored: ignoredKeys };
    } catch (error) {
      if (error instanceof InvalidInputError) return { refused: true };
      throw error;
    }
  }
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

  it('reads them as Go encoding/json decodes them (a model of its rules), and names every key it ignored', () => {
    fc.assert(
      fc.property(interfaceJson, routesJson, (anInterfaceJson, someRoutesJson) => {
        const interfaceText = jsonText(anInterfaceJson);
        const readInterface = vcnetReading((ignoredKeys) => {
          const message = interfaceRequestFromJson(parseKataJsonText(interfaceText, 'interface'), { ignoredKeys });
          return {
            device: message.device,
            name: message.name,
            IPAddresses: message.IPAddresses.map(({ family, address, mask }) => ({ family, address, mask })),
            mtu: Number(message.mtu),
            hwAddr: message.hwAddr,
            type: message.type,
            raw_flags: message.rawFlags,
          };
        });
        expect({ interfaceText, read: readInterface }).toEqual({
          interfaceText,
          read: modelInterface(anInterfaceJson),
        });
        const routesText = jsonText(someRoutesJson);
        const readRoutes = vcnetReading((ignoredKeys) =>
          routesRequestFromJson(parseKataJsonText(routesText, 'routes'), { ignoredKeys })?.map(routeData),
        );
        expect({ routesText, read: readRoutes }).toEqual({ routesText, read: modelRoutes(someRoutesJson) });
      }),
      fuzzParameters(40, 2000),
    );
  });
});
