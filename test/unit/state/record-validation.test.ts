/**
 * Records are checked before anything acts on them: damaged, foreign, future and empty records are
 * refused with an error naming the file and the field; empty state directories are refused.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { damagedIdentityField } from '../../../src/netns/namespace-identity.js';
import { BOOT_ID_PATTERN, currentBootId, earlierBootOf } from '../../../src/network/state/boot-id.js';
import { cniContentSchema, sandboxContentSchema } from '../../../src/network/state/network-content-schema.js';
import {
  damagedRecordText,
  parseRecord,
  StateInvalidError,
  salvageNamespace,
  salvageNamespacePath,
} from '../../../src/network/state/record-envelope.js';
import { registeredStateDirectories, registryPath } from '../../../src/network/state/registry.js';
import { SandboxStore, stateDirectory } from '../../../src/network/state/store.js';

const FILE = '/run/vcnet/sandboxes/a/state.json';

type PlumbingJson = Record<string, unknown> & { steps: Array<Record<string, unknown>> };
const plumbingOf = (record: Record<string, unknown>) =>
  (record.network as { endpoints: Array<{ plumbing: PlumbingJson }> }).endpoints[0]!.plumbing;
const stepsOf = (record: Record<string, unknown>) => plumbingOf(record).steps;

function sandboxRecord(id = 'a'): Record<string, unknown> {
  const namespacePath = '/var/run/netns/pod-a';
  return {
    version: 2,
    id,
    namespace: { path: namespacePath, dev: 4, ino: 4026532300, cookie: '4711' },
    createdAt: '2026-11-30T12:00:00.000Z',
    network: {
      version: 1,
      config: {
        namespacePath,
        model: 'tcfilter',
        namespaceCreatedByVcnet: false,
        disableNewNetns: false,
        queues: 1,
        vhostNet: 'auto',
      },
      endpoints: [
        {
          version: 2,
          type: 'virtual',
          index: 0,
          name: 'eth0',
          properties: {
            link: { name: 'eth0', index: 2, type: 1, flags: 69699, mtu: 1500, group: 0 },
            addresses: [{ address: '10.200.0.2', prefixLength: 24 }],
            routes: [],
            neighbours: [],
          },
          plumbing: {
            model: 'tcfilter',
            steps: [
              { step: 'create-link', name: 'tap0_kata', kind: 'tun' },
              { step: 'add-qdisc', link: 'tap0_kata', handle: 0xffff0000, parent: 0xfffffff1, kind: 'ingress' },
              { step: 'add-qdisc', link: 'eth0', handle: 0xffff0000, parent: 0xfffffff1, kind: 'ingress' },
              { step: 'add-filter', link: 'eth0', parent: 0xffff0000, priority: 49152, protocol: 3, kind: 'u32' },
              { step: 'add-filter', link: 'tap0_kata', parent: 0xffff0000, priority: 49152, protocol: 3, kind: 'u32' },
            ],
            tapName: 'tap0_kata',
            tapIndex: 3,
            guestHardwareAddress: '02:00:00:00:00:01',
            queues: 1,
          },
        },
      ],
    },
    hypervisor: { kind: 'qemu' },
  };
}

function refusal(text: string, expectedId = 'a'): StateInvalidError {
  try {
    parseRecord(text, FILE, { expectedId, content: sandboxContentSchema });
  } catch (error) {
    expect(error).toBeInstanceOf(StateInvalidError);
    return error as StateInvalidError;
  }
  throw new Error('the record was accepted');
}

describe('parseRecord', () => {
  it('accepts a complete record and returns envelope and content', () => {
    const record = parseRecord(JSON.stringify(sandboxRecord()), FILE, {
      expectedId: 'a',
      content: sandboxContentSchema,
    });
    expect(record.namespace).toEqual({ path: '/var/run/netns/pod-a', dev: 4, ino: 4026532300, cookie: '4711' });
    expect(record.network.endpoints[0]?.plumbing?.steps).toHaveLength(5);
  });

  it('reads the boot id a record was written in, refuses one that is no boot id, and tells another boot', () => {
    const current = currentBootId();
    expect(current).toMatch(BOOT_ID_PATTERN);
    const record = parseRecord(JSON.stringify({ ...sandboxRecord(), bootId: current }), FILE, {
      content: sandboxContentSchema,
    });
    expect(record.bootId).toBe(current);
    expect(earlierBootOf(record)).toBeUndefined();
    expect(earlierBootOf({})).toBeUndefined();
    const other = '00000000-0000-4000-8000-000000000000';
    expect(earlierBootOf({ bootId: other })).toEqual({ bootId: other, currentBootId: current });
    const error = refusal(JSON.stringify({ ...sandboxRecord(), bootId: 'yesterday' }));
    expect(error.message).toContain('field bootId');
  });

  it('reads the endpoints add-iface waits for the guest to configure (guestPending), and refuses a damaged entry naming its field', () => {
    const entry = {
      name: 'eth0',
      podLink: 'eth0',
      token: 'c0ffee',
      pid: 4242,
      pidStart: '123456',
      since: '2026-12-05T01:00:00.000Z',
      by: 'add-iface',
    };
    const record = parseRecord(JSON.stringify({ ...sandboxRecord(), guestPending: [entry] }), FILE, {
      content: sandboxContentSchema,
    });
    expect((record as unknown as { guestPending: unknown }).guestPending).toEqual([entry]);
    expect(refusal(JSON.stringify({ ...sandboxRecord(), guestPending: [{ ...entry, pid: 0 }] })).message).toContain(
      'field guestPending.0.pid is 0 (expected a process id)',
    );
    expect(refusal(JSON.stringify({ ...sandboxRecord(), guestPending: [{ ...entry, tokn: 'x' }] })).message).toContain(
      'tokn',
    );
    expect(refusal(JSON.stringify({ ...sandboxRecord(), guestPending: [{ ...entry, by: 'cni' }] })).message).toContain(
      'field guestPending.0.by is "cni" (expected add-iface or watch)',
    );
    // The PID namespace of its pid (written since session 33; entries without it still read).
    const withNamespace = { ...entry, pidNamespace: { device: 4, inode: 4026532000 } };
    const read = parseRecord(JSON.stringify({ ...sandboxRecord(), guestPending: [withNamespace] }), FILE, {
      content: sandboxContentSchema,
    });
    expect((read as unknown as { guestPending: unknown }).guestPending).toEqual([withNamespace]);
    const damaged = { ...entry, pidNamespace: { device: 4, inode: -1 } };
    expect(refusal(JSON.stringify({ ...sandboxRecord(), guestPending: [damaged] })).message).toContain(
      'field guestPending.0.pidNamespace.inode is -1 (expected a whole number)',
    );
    expect(
      refusal(JSON.stringify({ ...sandboxRecord(), guestPending: [{ ...entry, pidNamespace: 'pid:[1]' }] })).message,
    ).toContain('field guestPending.0.pidNamespace is "pid:[1]"');
    // Its command's own deadline (written since session 34; entries without it still read).
    const withDeadline = { ...withNamespace, waitsUntil: '2026-12-05T01:13:30.000Z' };
    const deadlineRead = parseRecord(JSON.stringify({ ...sandboxRecord(), guestPending: [withDeadline] }), FILE, {
      content: sandboxContentSchema,
    });
    expect((deadlineRead as unknown as { guestPending: unknown }).guestPending).toEqual([withDeadline]);
    expect(
      refusal(JSON.stringify({ ...sandboxRecord(), guestPending: [{ ...entry, waitsUntil: 810 }] })).message,
    ).toContain('field guestPending.0.waitsUntil is 810 (expected a time)');
  });

  it.each([
    ['null', 'null', '(top level)'],
    ['an array', '[]', '(top level)'],
    ['a string', '"x"', '(top level)'],
    ['truncated JSON', JSON.stringify(sandboxRecord()).slice(0, 80), 'not valid JSON'],
    ['version 99', JSON.stringify({ ...sandboxRecord(), version: 99 }), 'field version'],
    ['version 1 (no namespace identity)', JSON.stringify({ ...sandboxRecord(), version: 1 }), 'field version'],
    ['an empty file', '', 'not valid JSON'],
    ['a foreign JSON object', '{"apiVersion":"v1","kind":"Pod"}', 'field version'],
  ])('refuses %s, naming the file and the field', (_label, text, field) => {
    const error = refusal(text);
    expect(error.code).toBe('VCNET_STATE_INVALID');
    expect(error.message).toContain(FILE);
    expect(error.message).toContain(field);
  });

  it('says a version 1 record was written by an older vcnet, not that it was damaged', () => {
    const error = refusal(JSON.stringify({ ...sandboxRecord(), version: 1 }));
    expect(error.hint).toMatch(/written by an older vcnet \(record version 1, before namespace identities\)/);
    expect(error.hint).toMatch(/detach it with the vcnet that attached it/);
    expect(error.hint).not.toMatch(/damaged/);
  });

  it('says a newer vcnet wrote a record whose nested version is above this one, not that it was damaged', () => {
    for (const path of ['network', 'endpoint'] as const) {
      const record = sandboxRecord();
      const network = record.network as { version: number; endpoints: Array<{ version: number }> };
      if (path === 'network') network.version = 7;
      else network.endpoints[0]!.version = 9;
      const error = refusal(JSON.stringify(record));
      expect(error.field).toBe(path === 'network' ? 'network.version' : 'network.endpoints.0.version');
      expect(error.hint).toMatch(/a newer vcnet wrote this record/);
      expect(error.hint).not.toMatch(/damaged/);
    }
    // An older (lower) nested version than any known is damage, as before.
    const older = sandboxRecord();
    (older.network as { version: number }).version = 0;
    expect(refusal(JSON.stringify(older)).hint).toMatch(/damaged/);
  });

  it('says a key it does not know may be a newer vcnet\'s field, and to keep the file, not "remove it"', () => {
    // How a build rolled back to meets a field added since (madeAfter, unconfirmed, partial were
    // each added so): on a step, on the plumbing, at the top level.
    const cases: Array<[string, (record: Record<string, unknown>) => void]> = [
      ['network.endpoints.0.plumbing.steps.2.addedLater', (r) => (stepsOf(r)[2]!.addedLater = 'tap0_kata')],
      ['network.endpoints.0.plumbing.addedLater', (r) => (plumbingOf(r).addedLater = true)],
      ['addedLater', (r) => (r.addedLater = true)],
    ];
    for (const [field, change] of cases) {
      const record = sandboxRecord();
      change(record);
      const error = refusal(JSON.stringify(record));
      expect(error.code).toBe('VCNET_STATE_INVALID');
      expect(error.field).toBe(field);
      expect(error.message).toMatch(/is not a field this vcnet knows here \(holding .+\)/);
      expect(error.message).toMatch(/a newer vcnet may have written it, or the key was damaged or edited/);
      expect(error.message).not.toMatch(/no vcnet writes it/);
      expect(error.hint).toMatch(/^nothing was changed; keep the file: if a newer vcnet wrote it, detach it/);
      expect(error.hint).toMatch(/with that vcnet/);
      // Removing it is named only as what it leaves: the plumbing of each model, and where to read more.
      expect(error.hint).not.toMatch(/restore or remove it/);
      expect(error.hint).toMatch(/Removing it undoes nothing: a tcfilter tap with its qdiscs and filters/);
      expect(error.hint).toMatch(/a macvtap with the pod link's spare MAC/);
      expect(error.hint).toMatch(/"Records from a newer vcnet" in docs\/troubleshooting.md/);
    }
  });

  it("says what a field of the wrong type accepts in words, not zod's text", () => {
    const record = sandboxRecord();
    record.namespace = null;
    const error = refusal(JSON.stringify(record));
    expect(error.message).toMatch(/field namespace is null \(expected an object\)$/);
    expect(error.message).not.toMatch(/Invalid input/);
  });

  it('refuses the record of another sandbox copied into this one', () => {
    const error = refusal(JSON.stringify(sandboxRecord('b')), 'a');
    expect(error.field).toBe('id');
    expect(error.message).toMatch(/field id is "b", but this is the record of "a"/);
  });

  it('refuses a record without steps, naming the path to the field', () => {
    const record = sandboxRecord();
    const endpoint = (record.network as { endpoints: Array<{ plumbing: Record<string, unknown> }> }).endpoints[0]!;
    delete endpoint.plumbing.steps;
    expect(refusal(JSON.stringify(record)).field).toBe('network.endpoints.0.plumbing.steps');
    const noEndpoints = sandboxRecord();
    delete (noEndpoints.network as Record<string, unknown>).endpoints;
    expect(refusal(JSON.stringify(noEndpoints)).field).toBe('network.endpoints');
    const noNetwork = sandboxRecord();
    delete noNetwork.network;
    expect(refusal(JSON.stringify(noNetwork)).field).toBe('network');
  });

  it("refuses a finished endpoint without the steps its model's attach always records, naming the field", () => {
    type Plumbing = { model: string; steps: Array<Record<string, unknown>>; partial?: true };
    const withPlumbing = (change: (plumbing: Plumbing) => void) => {
      const record = sandboxRecord();
      change((record.network as { endpoints: Array<{ plumbing: Plumbing }> }).endpoints[0]!.plumbing);
      return JSON.stringify(record);
    };
    const accepted = (text: string) => parseRecord(text, FILE, { expectedId: 'a', content: sandboxContentSchema });
    for (const model of ['tcfilter', 'macvtap', 'none']) {
      const error = refusal(
        withPlumbing((plumbing) => {
          plumbing.model = model;
          plumbing.steps = [];
        }),
      );
      expect(error.field, model).toBe('network.endpoints.0.plumbing.steps');
      expect(error.message, model).toContain(`state file ${FILE}: field network.endpoints.0.plumbing.steps is []`);
      expect(error.message, model).toContain(`every ${model} endpoint's attach records`);
    }
    // One redirect of two, a macvtap without the pod link's MAC change: refused, saying what is missing.
    expect(refusal(withPlumbing((plumbing) => plumbing.steps.pop())).message).toContain(
      'two add-filter steps (the redirects both ways) is missing',
    );
    expect(
      refusal(
        withPlumbing((plumbing) => {
          plumbing.model = 'macvtap';
          plumbing.steps = [{ step: 'create-link', name: 'tap0_kata', kind: 'macvtap' }];
        }),
      ).message,
    ).toContain("a change-link (the pod link's MAC) is missing");
    // What a partly refused undo left, an attach under way and a device used as it is: any steps.
    expect(() =>
      accepted(
        withPlumbing((plumbing) => {
          plumbing.steps = plumbing.steps.slice(2, 3);
          plumbing.partial = true;
        }),
      ),
    ).not.toThrow();
    expect(() =>
      accepted(withPlumbing((plumbing) => Object.assign(plumbing, { model: 'pending', steps: [], tapIndex: 0 }))),
    ).not.toThrow();
    expect(() =>
      accepted(withPlumbing((plumbing) => Object.assign(plumbing, { model: 'existing', steps: [] }))),
    ).not.toThrow();
    // An attach cut short whose undo the kernel refused in part (gc without CAP_NET_ADMIN): keepLeft
    // marks it partial, and the next gc must read what this one wrote.
    expect(() =>
      accepted(
        withPlumbing((plumbing) =>
          Object.assign(plumbing, { model: 'pending', steps: plumbing.steps.slice(0, 1), tapIndex: 0, partial: true }),
        ),
      ),
    ).not.toThrow();
    // The whole tcfilter fixture, and the one step of none.
    expect(() => accepted(withPlumbing(() => {}))).not.toThrow();
    expect(() =>
      accepted(
        withPlumbing((plumbing) => Object.assign(plumbing, { model: 'none', steps: plumbing.steps.slice(0, 1) })),
      ),
    ).not.toThrow();
  });

  it('reads a version 1 endpoint without its required steps (a partly refused undo of an older vcnet) as partial', () => {
    // What 07734b0's detach left when the kernel refused to put eth0's IPv6 addresses back: only the
    // refused steps, and no `partial` (that build had no such field).
    const file = fileURLToPath(new URL('../../fixtures/state/endpoint-v1-partial-undo.json', import.meta.url));
    const text = readFileSync(file, 'utf8');
    const record = parseRecord(text, FILE.replace('/a/', '/pod-old/'), {
      expectedId: 'pod-old',
      content: sandboxContentSchema,
    });
    const plumbing = record.network.endpoints[0]!.plumbing as { steps: Array<{ step: string }>; partial?: true };
    expect(plumbing.steps.map((step) => step.step)).toEqual(['remove-addresses', 'remove-addresses']);
    expect(plumbing.partial).toBe(true);
    // Written back by this vcnet (Endpoint.save: the current version, partial kept): read again.
    const saved = JSON.parse(text) as { network: { endpoints: Array<Record<string, unknown>> } };
    saved.network.endpoints[0] = { ...record.network.endpoints[0], version: 2 };
    expect(() =>
      parseRecord(JSON.stringify(saved), FILE, { expectedId: 'pod-old', content: sandboxContentSchema }),
    ).not.toThrow();
    // The same steps in a version 2 record without `partial`: the required-steps rule refuses it.
    const current = JSON.parse(text) as { network: { endpoints: Array<{ version: number }> } };
    current.network.endpoints[0]!.version = 2;
    expect(() =>
      parseRecord(JSON.stringify(current), FILE, { expectedId: 'pod-old', content: sandboxContentSchema }),
    ).toThrow(/every macvtap endpoint's attach records/);
    // A complete version 1 endpoint reads as it is, not partial.
    const complete = sandboxRecord();
    (complete.network as { endpoints: Array<{ version: number }> }).endpoints[0]!.version = 1;
    const parsed = parseRecord(JSON.stringify(complete), FILE, { expectedId: 'a', content: sandboxContentSchema });
    expect((parsed.network.endpoints[0]!.plumbing as { partial?: true }).partial).toBeUndefined();
  });

  it('refuses a record whose namespace is missing, empty or unlike the network it describes', () => {
    const missing = sandboxRecord();
    delete missing.namespace;
    expect(refusal(JSON.stringify(missing)).field).toBe('namespace');
    const empty = sandboxRecord();
    (empty.namespace as Record<string, unknown>).path = '';
    expect(refusal(JSON.stringify(empty)).field).toBe('namespace.path');
    const noInode = sandboxRecord();
    delete (noInode.namespace as Record<string, unknown>).ino;
    expect(refusal(JSON.stringify(noInode)).field).toBe('namespace.ino');
    const elsewhere = sandboxRecord();
    (elsewhere.namespace as Record<string, unknown>).path = '/var/run/netns/other';
    expect(refusal(JSON.stringify(elsewhere)).field).toBe('network.config.namespacePath');
  });

  it('refuses a step, an endpoint or a kernel object with a field of the wrong type or version', () => {
    type Endpoint = {
      version: number;
      plumbing: { steps: Array<Record<string, unknown>> };
      properties: { addresses: Array<Record<string, unknown>> };
    };
    const endpointOf = (record: Record<string, unknown>) => (record.network as { endpoints: Endpoint[] }).endpoints[0]!;
    const wrongPriority = sandboxRecord();
    endpointOf(wrongPriority).plumbing.steps.push({
      step: 'add-filter',
      link: 'eth0',
      parent: 0xffff0000,
      priority: 'high',
      protocol: 3,
      kind: 'u32',
    });
    expect(refusal(JSON.stringify(wrongPriority)).field).toBe('network.endpoints.0.plumbing.steps.5.priority');
    const futureEndpoint = sandboxRecord();
    endpointOf(futureEndpoint).version = 3;
    expect(refusal(JSON.stringify(futureEndpoint)).field).toBe('network.endpoints.0.version');
    const badPrefix = sandboxRecord();
    endpointOf(badPrefix).properties.addresses[0]!.prefixLength = 200;
    expect(refusal(JSON.stringify(badPrefix)).field).toBe('network.endpoints.0.properties.addresses.0.prefixLength');
  });

  it('refuses an unknown plumbing step', () => {
    const record = sandboxRecord();
    const endpoint = (record.network as { endpoints: Array<{ plumbing: { steps: unknown[] } }> }).endpoints[0]!;
    endpoint.plumbing.steps.push({ step: 'format-disk' });
    expect(refusal(JSON.stringify(record)).field).toBe('network.endpoints.0.plumbing.steps.5.step');
  });

  it('validates CNI records with their own content schema', () => {
    const { hypervisor: _, ...rest } = sandboxRecord('ctr-1');
    const record = { ...rest, interfaceName: 'eth0', networkName: 'pods' };
    expect(
      parseRecord(JSON.stringify(record), FILE, { expectedId: 'ctr-1', content: cniContentSchema }).interfaceName,
    ).toBe('eth0');
    expect(() =>
      parseRecord(JSON.stringify({ ...record, interfaceName: undefined }), FILE, {
        expectedId: 'ctr-1',
        content: cniContentSchema,
      }),
    ).toThrow(/field interfaceName/);
  });

  describe('damage that used to pass (fuzzed records)', () => {
    type Endpoint = Record<string, unknown> & {
      plumbing?: Record<string, unknown> & { steps: Array<Record<string, unknown>> };
      properties: { link: Record<string, unknown> };
    };
    const endpointOf = (record: Record<string, unknown>) => (record.network as { endpoints: Endpoint[] }).endpoints[0]!;
    const mutated = (change: (record: Record<string, unknown>) => void, id = 'a') => {
      const record = sandboxRecord(id);
      change(record);
      return record;
    };
    const cniRecord = (change: (record: Record<string, unknown>) => void = () => {}) => {
      const { hypervisor: _, ...rest } = sandboxRecord('ctr-1');
      const record: Record<string, unknown> = {
        ...rest,
        interfaceName: 'eth0',
        networkName: 'pods',
        device: { name: 'tap0_kata', mac: '02:00:00:00:00:01', kind: 'tap' },
      };
      change(record);
      return record;
    };
    const cniRefusal = (record: Record<string, unknown>) => {
      try {
        parseRecord(JSON.stringify(record), FILE, { expectedId: 'ctr-1', content: cniContentSchema });
      } catch (error) {
        expect(error).toBeInstanceOf(StateInvalidError);
        return error as StateInvalidError;
      }
      throw new Error('the record was accepted');
    };

    it.each<[string, (record: Record<string, unknown>) => void, string, RegExp?]>([
      ['an endpoint without plumbing', (r) => delete endpointOf(r).plumbing, 'network.endpoints.0.plumbing'],
      [
        'plumbing renamed by a bit flip',
        (r) => {
          const endpoint = endpointOf(r);
          endpoint.pluíbing = endpoint.plumbing;
          delete endpoint.plumbing;
        },
        'network.endpoints.0.plumbing',
        /"pluíbing", which this vcnet never writes/,
      ],
      [
        'an unknown key beside plumbing',
        (r) => {
          endpointOf(r).plumbingx = 1;
        },
        'network.endpoints.0.plumbingx',
        /a newer vcnet may have written it, or the key was damaged or edited/,
      ],
      ['an unknown key at the top level', (r) => (r.attachingg = true), 'attachingg'],
      [
        'an unknown key in a step',
        (r) => (endpointOf(r).plumbing!.steps[1]!.hadnle = 1),
        'network.endpoints.0.plumbing.steps.1.hadnle',
      ],
      [
        'an unknown key in the network',
        (r) => ((r.network as Record<string, unknown>).endpoint = []),
        'network.endpoint',
      ],
      [
        'a link address that is a list',
        (r) => (endpointOf(r).properties.link.address = []),
        'network.endpoints.0.properties.link.address',
      ],
      [
        'a link address that is no MAC',
        (r) => (endpointOf(r).properties.link.address = 'x'),
        'network.endpoints.0.properties.link.address',
      ],
      [
        'a link name that is a number',
        (r) => (endpointOf(r).properties.link.name = 7),
        'network.endpoints.0.properties.link.name',
      ],
      [
        'a link ifindex 0',
        (r) => (endpointOf(r).properties.link.index = 0),
        'network.endpoints.0.properties.link.index',
      ],
      ['a tap ifindex 0', (r) => (endpointOf(r).plumbing!.tapIndex = 0), 'network.endpoints.0.plumbing.tapIndex'],
      ['an empty tap name', (r) => (endpointOf(r).plumbing!.tapName = ''), 'network.endpoints.0.plumbing.tapName'],
      [
        'an empty guest MAC',
        (r) => (endpointOf(r).plumbing!.guestHardwareAddress = ''),
        'network.endpoints.0.plumbing.guestHardwareAddress',
      ],
      [
        'a step ifindex 0',
        (r) => (endpointOf(r).plumbing!.steps[1]!.index = 0),
        'network.endpoints.0.plumbing.steps.1.index',
      ],
      [
        'an ingress qdisc handle other than ffff:0',
        (r) => (endpointOf(r).plumbing!.steps[1]!.handle = 4294900760),
        'network.endpoints.0.plumbing.steps.1.handle',
        /ffff:0/,
      ],
      [
        'an ingress qdisc under another parent',
        (r) => (endpointOf(r).plumbing!.steps[1]!.parent = 0xffffffff),
        'network.endpoints.0.plumbing.steps.1.parent',
      ],
      [
        'a qdisc kind vcnet never adds',
        (r) => (endpointOf(r).plumbing!.steps[1]!.kind = 'x'),
        'network.endpoints.0.plumbing.steps.1.kind',
      ],
      [
        'a link kind vcnet never makes',
        (r) => (endpointOf(r).plumbing!.steps[0]!.kind = 'x'),
        'network.endpoints.0.plumbing.steps.0.kind',
      ],
      [
        'a filter kind vcnet never adds',
        (r) =>
          endpointOf(r).plumbing!.steps.push({
            step: 'add-filter',
            link: 'eth0',
            parent: 0xffff0000,
            priority: 1,
            protocol: 3,
            kind: 'x',
          }),
        'network.endpoints.0.plumbing.steps.5.kind',
      ],
      [
        'a filter under a parent vcnet never uses',
        (r) =>
          endpointOf(r).plumbing!.steps.push({
            step: 'add-filter',
            link: 'eth0',
            parent: 0x10000,
            priority: 1,
            protocol: 3,
            kind: 'u32',
          }),
        'network.endpoints.0.plumbing.steps.5.parent',
      ],
      [
        'a change-link MAC that is no MAC',
        (r) => endpointOf(r).plumbing!.steps.push({ step: 'change-link', link: 'eth0', before: { address: [] } }),
        'network.endpoints.0.plumbing.steps.5.before.address',
      ],
    ])('refuses %s, naming the file and the field', (_label, change, field, message) => {
      const error = refusal(JSON.stringify(mutated(change)));
      expect(error.code).toBe('VCNET_STATE_INVALID');
      expect(error.field).toBe(field);
      expect(error.message).toContain(`state file ${FILE}: field ${field} `);
      if (message) expect(error.message).toMatch(message);
    });

    it('accepts the plumbing of devices the VM uses as they are, and of an attach cut short', () => {
      const accepted = (change: (record: Record<string, unknown>) => void) =>
        parseRecord(JSON.stringify(mutated(change)), FILE, { expectedId: 'a', content: sandboxContentSchema });
      // vhost-user: no tap, and a pod link without a MAC (existingDevicePlumbing writes "" and 0).
      expect(() =>
        accepted((r) => {
          const endpoint = endpointOf(r);
          endpoint.type = 'vhost-user';
          endpoint.details = { socketPath: '/tmp/vhostuser_10.0.0.2/vhu.sock' };
          endpoint.plumbing = {
            model: 'existing',
            steps: [],
            tapName: '',
            tapIndex: 0,
            guestHardwareAddress: '',
            queues: 1,
          };
        }),
      ).not.toThrow();
      // physical: the VFIO group device, the NIC's own MAC.
      expect(() =>
        accepted((r) => {
          const endpoint = endpointOf(r);
          endpoint.type = 'physical';
          endpoint.details = { pci: { address: '0000:00:03.0' } };
          endpoint.plumbing = {
            model: 'existing',
            steps: [],
            tapName: '',
            tapIndex: 0,
            tapDevicePath: '/dev/vfio/12',
            guestHardwareAddress: '52:54:00:12:34:56',
            queues: 1,
          };
        }),
      ).not.toThrow();
      // pending: journaled before the device exists (Endpoint.save writes "", 0 and "").
      expect(() =>
        accepted((r) => {
          const endpoint = endpointOf(r);
          endpoint.plumbing = {
            ...endpoint.plumbing!,
            model: 'pending',
            tapName: '',
            tapIndex: 0,
            guestHardwareAddress: '',
          };
          r.attaching = true;
        }),
      ).not.toThrow();
      // A tap add-iface made (type "tap"): no pod link, so its link's index is 0.
      expect(() =>
        accepted((r) => {
          const endpoint = endpointOf(r);
          endpoint.type = 'tap';
          endpoint.properties.link.index = 0;
        }),
      ).not.toThrow();
      // A sandbox with no endpoint yet (the first write of an attach).
      expect(() => accepted((r) => ((r.network as { endpoints: unknown[] }).endpoints = []))).not.toThrow();
    });

    it('refuses a CNI record that does not hold exactly its one endpoint', () => {
      expect(() =>
        parseRecord(JSON.stringify(cniRecord()), FILE, { expectedId: 'ctr-1', content: cniContentSchema }),
      ).not.toThrow();
      const none = cniRefusal(cniRecord((r) => ((r.network as { endpoints: unknown[] }).endpoints = [])));
      expect(none.field).toBe('network.endpoints');
      expect(none.message).toMatch(/expected exactly one endpoint/);
      const two = cniRecord((r) => {
        const endpoints = (r.network as { endpoints: unknown[] }).endpoints;
        endpoints.push(structuredClone(endpoints[0]));
      });
      expect(cniRefusal(two).field).toBe('network.endpoints');
      // An ADD under way (no device yet) has none or one.
      const underWay = cniRecord((r) => {
        delete r.device;
        (r.network as { endpoints: unknown[] }).endpoints = [];
      });
      expect(() =>
        parseRecord(JSON.stringify(underWay), FILE, { expectedId: 'ctr-1', content: cniContentSchema }),
      ).not.toThrow();
      delete two.device;
      expect(cniRefusal(two).field).toBe('network.endpoints');
      expect(cniRefusal(cniRecord((r) => ((r.device as Record<string, unknown>).mac = ''))).field).toBe('device.mac');
      expect(cniRefusal(cniRecord((r) => ((r.device as Record<string, unknown>).fd = 3))).field).toBe('device.fd');
    });
  });

  it('salvages the namespace of a damaged record when that part is readable', () => {
    const record = sandboxRecord();
    delete record.network;
    // With its cookie: only that tells the recorded namespace from a later one with its inode.
    expect(salvageNamespace(JSON.stringify(record))).toEqual({ dev: 4, ino: 4026532300, cookie: '4711' });
    const withoutCookie = sandboxRecord();
    delete withoutCookie.network;
    delete (withoutCookie.namespace as Record<string, unknown>).cookie;
    expect(salvageNamespace(JSON.stringify(withoutCookie))).toEqual({ dev: 4, ino: 4026532300 });
    expect(salvageNamespace('{"namespace": {"path": "/x"')).toBeUndefined();
  });

  it('refuses a cookie that is no u64 in decimal, and salvages such a record as one without a cookie', () => {
    for (const cookie of ['47x1', '', '-1', '0471', '18446744073709551616', '1'.repeat(21)]) {
      const record = sandboxRecord();
      (record.namespace as Record<string, unknown>).cookie = cookie;
      const error = refusal(JSON.stringify(record));
      expect(error.field, cookie).toBe('namespace.cookie');
      expect(error.message, cookie).toContain('(expected the namespace cookie (a u64 in decimal))');
      // Its device and inode still say which namespace it was; the damaged cookie says nothing.
      expect(salvageNamespace(JSON.stringify(record)), cookie).toEqual({ dev: 4, ino: 4026532300 });
    }
    for (const cookie of ['0', '1', '18446744073709551615']) {
      const record = sandboxRecord();
      (record.namespace as Record<string, unknown>).cookie = cookie;
      expect(() =>
        parseRecord(JSON.stringify(record), FILE, { expectedId: 'a', content: sandboxContentSchema }),
      ).not.toThrow();
      expect(salvageNamespace(JSON.stringify(record))).toEqual({ dev: 4, ino: 4026532300, cookie });
    }
    // Cut short after the cookie: the same, from the namespace object alone.
    const text = JSON.stringify({ ...sandboxRecord(), namespace: { path: '/x', dev: 4, ino: 9, cookie: 'x' } });
    expect(salvageNamespace(text.slice(0, text.indexOf('"createdAt"') + 5))).toEqual({ dev: 4, ino: 9 });
    // A namespace object damaged elsewhere is no identity, whatever its cookie.
    expect(salvageNamespace(JSON.stringify({ namespace: { path: '/x', dev: 4, cookie: 'x' } }))).toBeUndefined();
  });

  it('salvages the namespace of a record cut short, as a full disk leaves it', () => {
    const text = JSON.stringify(sandboxRecord(), null, 2);
    // Cut inside the network part, well after the namespace.
    const cut = text.slice(0, text.indexOf('"network"') + 40);
    expect(() => JSON.parse(cut)).toThrow();
    expect(salvageNamespace(cut)).toEqual({ dev: 4, ino: 4026532300, cookie: '4711' });
    // Cut inside the namespace object itself: no identity to salvage.
    expect(salvageNamespace(text.slice(0, text.indexOf('"ino"')))).toBeUndefined();
  });

  it('salvages the path of a record cut inside its namespace object, only when the path string is whole', () => {
    const text = JSON.stringify(sandboxRecord(), null, 2);
    const path = '"/var/run/netns/pod-a"';
    const pathEnd = text.indexOf(path) + path.length;
    for (let offset = 0; offset < pathEnd; offset++)
      expect(salvageNamespacePath(text.slice(0, offset))).toBeUndefined();
    for (const offset of [pathEnd, text.indexOf('"dev"') + 8, text.indexOf('"ino"'), text.length])
      expect(salvageNamespacePath(text.slice(0, offset))).toBe('/var/run/netns/pod-a');
    // Escapes are read as JSON reads them; a relative or non-string path names nothing.
    expect(salvageNamespacePath('{"namespace": {"path": "/run/a\\"b", "dev":')).toBe('/run/a"b');
    expect(salvageNamespacePath('{"namespace": {"path": "pod", "dev":')).toBeUndefined();
    expect(salvageNamespacePath('{"namespace": {"path": 5}')).toBeUndefined();
    // A whole record that lost its namespace object still names the path in its network's config.
    const record = sandboxRecord();
    delete record.namespace;
    expect(salvageNamespacePath(JSON.stringify(record))).toBe('/var/run/netns/pod-a');
    expect(salvageNamespacePath('null')).toBeUndefined();
    expect(salvageNamespacePath('[]')).toBeUndefined();
  });
});

describe('damagedIdentityField', () => {
  const recorded = { path: '/var/run/netns/pod-a', dev: 4, ino: 4026532300, cookie: '4711' };
  const now = new Date().toISOString();

  it('names the inode (or device) of a record whose cookie is the namespace found at its path', () => {
    expect(damagedIdentityField({ ...recorded, ino: 4026532301 }, recorded, now)).toBe('namespace.ino');
    expect(damagedIdentityField({ ...recorded, dev: 5 }, recorded, now)).toBe('namespace.dev');
  });

  it('says nothing when the cookies differ or are unknown, or the record is from before this boot', () => {
    const other = { ...recorded, ino: 4026532301 };
    expect(damagedIdentityField(recorded, { ...other, cookie: '4712' }, now)).toBeUndefined();
    expect(damagedIdentityField({ ...recorded, cookie: undefined }, other, now)).toBeUndefined();
    expect(damagedIdentityField(recorded, { ...other, cookie: undefined }, now)).toBeUndefined();
    // The kernel counts cookies from 1 again after a boot: an older record's cookie proves nothing.
    expect(damagedIdentityField(recorded, other, '2001-01-01T00:00:00.000Z')).toBeUndefined();
    expect(damagedIdentityField(recorded, other, undefined)).toBeUndefined();
  });
});

describe('SandboxStore', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'vcnet-state-unit-'));
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it('reads a valid record, and refuses a damaged one without changing the file', () => {
    const store = new SandboxStore('a', root);
    expect(store.read()).toBeUndefined();
    store.write(sandboxRecord());
    expect(store.read<{ id: string }>()?.id).toBe('a');
    mkdirSync(join(root, 'b'));
    writeFileSync(join(root, 'b', 'state.json'), JSON.stringify(sandboxRecord('a')));
    const copied = new SandboxStore('b', root);
    expect(() => copied.read()).toThrow(`state file ${join(root, 'b', 'state.json')}: field id`);
    expect(JSON.parse(readFileSync(copied.statePath, 'utf8')).id).toBe('a');
  });

  it('refuses a record whose bytes are not UTF-8 as damaged, naming the file and the offset; the text stays for salvage', () => {
    // The bytes were read as U+FFFD, and a record damaged inside a string was taken as valid: a
    // link name "e\uFFFDh0" made vcnet-cni CHECK blame the pod (code 105).
    const store = new SandboxStore('a', root);
    store.write(sandboxRecord());
    const written = readFileSync(store.statePath);
    const at = written.indexOf('"eth0"') + 2;
    const refusalOf = (bytes: Buffer): StateInvalidError => {
      writeFileSync(store.statePath, bytes);
      try {
        store.read();
      } catch (error) {
        expect(error).toBeInstanceOf(StateInvalidError);
        return error as StateInvalidError;
      }
      throw new Error('the record was accepted');
    };
    const damaged = Buffer.from(written);
    damaged[at] = 0xff;
    const error = refusalOf(damaged);
    expect(error.message).toBe(
      `state file ${store.statePath}: is not UTF-8 text: the byte at offset ${at} (0xff) is no part of a UTF-8 character`,
    );
    expect(error.code).toBe('VCNET_STATE_INVALID');
    expect(readFileSync(store.statePath)).toEqual(damaged);
    // What gc and vcnet-cni's DEL salvage: the text with each bad byte kept, its namespace whole.
    expect(salvageNamespacePath(damagedRecordText(error) ?? '')).toBe('/var/run/netns/pod-a');
    // A bad byte in the path itself is told as `ls -b` shows it, each byte of a cut sequence on its
    // own and a backslash doubled; it was U+FFFD, which told nothing of the bytes.
    const inPath = written.indexOf('pod-a') + 4;
    const pathDamaged = Buffer.concat([
      written.subarray(0, inPath),
      Buffer.from([0xe2, 0x82, 0x5c, 0x5c, 0xff]),
      written.subarray(inPath + 1),
    ]);
    expect(salvageNamespacePath(damagedRecordText(refusalOf(pathDamaged)) ?? '')).toBe(
      '/var/run/netns/pod-\\xe2\\x82\\\\\\xff',
    );
    expect(damagedRecordText(new StateInvalidError(FILE, 'id', 'is 1'))).toBeUndefined();
    // Each malformed sequence is found where it starts: an overlong form, a surrogate, a code point
    // above U+10FFFF, a lone continuation byte, a sequence cut short by the end.
    const spliced = (bytes: number[], atEnd = false) =>
      atEnd
        ? Buffer.concat([written, Buffer.from(bytes)])
        : Buffer.concat([written.subarray(0, at), Buffer.from(bytes), written.subarray(at)]);
    for (const bytes of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xf5]]) {
      expect(refusalOf(spliced(bytes)).message, bytes.join(',')).toContain(
        `the byte at offset ${at} (0x${bytes[0]!.toString(16)})`,
      );
    }
    expect(refusalOf(spliced([0xe2, 0x82], true)).message).toContain(`offset ${written.length} (0xe2)`);
    // Well-formed UTF-8 of every length is read; a byte order mark is kept, so the JSON is refused.
    writeFileSync(store.statePath, spliced([...Buffer.from('é€😀')]));
    expect(() => store.read()).not.toThrow(/UTF-8/);
    expect(refusalOf(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), written])).message).toContain('is not valid JSON');
  });

  it('keeps the lock beside the sandbox directory, never inside it', () => {
    const store = new SandboxStore('a', root);
    expect(store.lockPath.startsWith(store.directory)).toBe(false);
    expect(store.lockPath).toBe(join(root, '.locks', 'a'));
  });
});

describe('stateDirectory', () => {
  const saved = process.env.VCNET_STATE_DIR;
  afterEach(() => {
    if (saved === undefined) delete process.env.VCNET_STATE_DIR;
    else process.env.VCNET_STATE_DIR = saved;
  });

  it("refuses --state-dir '' and an empty VCNET_STATE_DIR, naming them", () => {
    expect(() => stateDirectory('')).toThrow(/invalid --state-dir: ""/);
    process.env.VCNET_STATE_DIR = '';
    expect(() => stateDirectory()).toThrow(/invalid VCNET_STATE_DIR: ""/);
    process.env.VCNET_STATE_DIR = 'relative/dir';
    expect(stateDirectory()).toBe(join(process.cwd(), 'relative/dir'));
    delete process.env.VCNET_STATE_DIR;
    expect(stateDirectory()).toBe('/run/vcnet/sandboxes');
  });
});

describe('state paths of blanks, or the root', () => {
  const savedDirectory = process.env.VCNET_STATE_DIR;
  const savedRegistry = process.env.VCNET_STATE_REGISTRY;
  afterEach(() => {
    if (savedDirectory === undefined) delete process.env.VCNET_STATE_DIR;
    else process.env.VCNET_STATE_DIR = savedDirectory;
    if (savedRegistry === undefined) delete process.env.VCNET_STATE_REGISTRY;
    else process.env.VCNET_STATE_REGISTRY = savedRegistry;
  });

  it('refuses a whitespace-only --state-dir, VCNET_STATE_DIR or VCNET_STATE_REGISTRY as the empty value (no directory " " made here)', () => {
    expect(() => stateDirectory(' ')).toThrow(/invalid --state-dir: " "/);
    process.env.VCNET_STATE_DIR = ' \t';
    expect(() => stateDirectory()).toThrow(/invalid VCNET_STATE_DIR: " \\t"/);
    process.env.VCNET_STATE_REGISTRY = '  ';
    expect(() => registryPath()).toThrow(/invalid VCNET_STATE_REGISTRY: " {2}"/);
  });

  it('refuses "/" as a state directory', () => {
    expect(() => stateDirectory('/')).toThrow(/invalid --state-dir: "\/" \(accepted: a directory path other than "\/"/);
    process.env.VCNET_STATE_DIR = '//';
    expect(() => stateDirectory()).toThrow(/invalid VCNET_STATE_DIR/);
  });

  it('refuses a registry that is a directory or lies under a file, naming VCNET_STATE_REGISTRY', () => {
    const base = mkdtempSync(join(tmpdir(), 's15cf-registry-'));
    try {
      writeFileSync(join(base, 'file'), '');
      for (const path of [base, join(base, 'file', 'registry')]) {
        expect(() => registeredStateDirectories(path)).toThrow(
          expect.objectContaining({ code: 'VCNET_INVALID_INPUT', field: 'VCNET_STATE_REGISTRY' }),
        );
      }
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('registryPath', () => {
  const saved = process.env.VCNET_STATE_REGISTRY;
  afterEach(() => {
    if (saved === undefined) delete process.env.VCNET_STATE_REGISTRY;
    else process.env.VCNET_STATE_REGISTRY = saved;
  });

  it('refuses an empty VCNET_STATE_REGISTRY naming it, and makes a relative one absolute, as VCNET_STATE_DIR', () => {
    process.env.VCNET_STATE_REGISTRY = '';
    expect(() => registryPath()).toThrow(
      'invalid VCNET_STATE_REGISTRY: "" (accepted: a file path, such as /run/vcnet/state-directories)',
    );
    expect(() => registryPath()).toThrow(expect.objectContaining({ code: 'VCNET_INVALID_INPUT' }));
    process.env.VCNET_STATE_REGISTRY = 'relative/registry';
    expect(registryPath()).toBe(join(process.cwd(), 'relative/registry'));
    process.env.VCNET_STATE_REGISTRY = '/tmp/elsewhere/registry';
    expect(registryPath()).toBe('/tmp/elsewhere/registry');
    delete process.env.VCNET_STATE_REGISTRY;
    expect(registryPath()).toBe('/run/vcnet/state-directories');
  });
});
