/**
 * decideUnreadable: what gc does with a record it cannot read, the one decision gc acts on (owners.ts
 * when it reads the record, gone-records.ts once it looked for its namespace) and `vcnet list`'s hint
 * states. Row by row, from what a damaged record still tells and where its namespace is.
 */
import { describe, expect, it } from 'vitest';
import type { NamespaceIdentity } from '../../../src/netns/namespace-identity.js';
import {
  decideUnreadable,
  type ToldByUnreadable,
  toldByUnreadable,
  type UnreadableLook,
} from '../../../src/network/state/unreadable-records.js';

const earlier = {
  bootId: '00000000-0000-4000-8000-000000000001',
  currentBootId: '00000000-0000-4000-8000-000000000002',
};
const identity = { dev: 4, ino: 4026532001, cookie: '4097' };
const path = '/var/run/netns/pod';
const namespaceThere: NamespaceIdentity = { path, dev: 4, ino: 4026532002, cookie: '5000' };

/** A look that fails the test when asked: the row must not depend on it. */
const neverLooked: UnreadableLook = {
  namespaceAt: () => {
    throw new Error('the namespace at the path was looked at');
  },
  whereabouts: () => {
    throw new Error("the told namespace's whereabouts were looked at");
  },
};

describe('decideUnreadable', () => {
  const rows: Array<{
    row: string;
    told: ToldByUnreadable;
    look: UnreadableLook;
    decision: ReturnType<typeof decideUnreadable>;
  }> = [
    {
      row: 'an earlier boot (boot id and creation time) is dropped, whatever namespace it tells',
      told: { earlier, identity, path },
      look: neverLooked,
      decision: { action: 'drop', because: 'earlier-boot', earlier, path },
    },
    {
      row: 'identity and path, before gc has looked (its read): dropped once the namespace is gone',
      told: { identity, path },
      look: { namespaceAt: neverLooked.namespaceAt! },
      decision: { action: 'drop-once-gone', identity, path },
    },
    {
      row: 'identity and path, nothing holds the inode: dropped',
      told: { identity, path },
      look: { whereabouts: () => ({ at: 'nowhere' }) },
      decision: { action: 'drop', because: 'namespace-gone', identity, path },
    },
    {
      row: 'identity and path, a later namespace (another cookie) has the inode: dropped, saying its cookie',
      told: { identity, path },
      look: { whereabouts: () => ({ at: 'nowhere', laterCookie: '9999' }) },
      decision: { action: 'drop', because: 'namespace-gone', identity, path, laterCookie: '9999' },
    },
    {
      row: 'identity and path, the namespace held elsewhere: kept, saying where',
      told: { identity, path },
      look: { whereabouts: () => ({ at: 'there', heldAt: '/proc/42/ns/net' }) },
      decision: { action: 'keep', because: 'namespace-there', identity, path, heldAt: '/proc/42/ns/net' },
    },
    {
      row: 'identity and path, where gc could not look: kept',
      told: { identity, path },
      look: { whereabouts: () => ({ at: 'unseen', unseen: { processes: [7] } }) },
      decision: { action: 'keep', because: 'namespace-unseen', identity, path, unseen: { processes: [7] } },
    },
    {
      row: 'a path where a namespace is now, no identity: kept, that namespace left alone',
      told: { path },
      look: { namespaceAt: () => namespaceThere, whereabouts: neverLooked.whereabouts! },
      decision: { action: 'keep', because: 'path-only', path, namespaceThere },
    },
    {
      row: 'a path where no namespace is, no identity: kept, every namespace left alone, saying why',
      told: { path },
      look: {
        namespaceAt: () => {
          throw new Error('ENOENT');
        },
      },
      decision: { action: 'keep', because: 'unknown', path, pathError: 'ENOENT' },
    },
    {
      row: 'nothing told: kept, every namespace left alone',
      told: {},
      look: neverLooked,
      decision: { action: 'keep', because: 'unknown' },
    },
  ];
  for (const { row, told, look, decision } of rows) {
    it(row, () => {
      expect(decideUnreadable(told, look)).toEqual(decision);
    });
  }
});

describe('toldByUnreadable', () => {
  it('tells the identity and path of a record cut short after its namespace', () => {
    const text = `{"id":"sb","namespace":{"path":"${path}","dev":4,"ino":4026532001,"cookie":"4097"},"network":{"endp`;
    expect(toldByUnreadable(text)).toEqual({ identity, path });
  });

  it('tells neither when the path is damaged: the identity is read only with a whole path', () => {
    const text = JSON.stringify({ id: 'sb', namespace: { path: 42, dev: 4, ino: 4026532001, cookie: '4097' } });
    const told = toldByUnreadable(text);
    expect(told).toEqual({});
    expect(decideUnreadable(told)).toEqual({ action: 'keep', because: 'unknown' });
  });

  it('tells the path alone from the network config when the namespace object lost it', () => {
    const text = JSON.stringify({ id: 'sb', namespace: { dev: 4 }, network: { config: { namespacePath: path } } });
    expect(toldByUnreadable(text)).toEqual({ path });
  });

  it('tells the path alone when the record was cut inside its namespace object', () => {
    expect(toldByUnreadable(`{"id":"sb","namespace":{"path":"${path}","dev":4,"in`)).toEqual({ path });
  });

  it('tells nothing of a record cut before its namespace', () => {
    expect(toldByUnreadable('{"id":"sb","vers')).toEqual({});
  });
});
