/**
 * Changes the kernel made whose answers were lost: a batch really sent to the kernel (which runs all
 * of it) whose acks the receive then fails to read (ENOBUFS, as an overrun receive buffer drops
 * them), through the transport's test seam (setNetlinkRepliesTestHook, never set in production).
 * Every change so sent may have been made: an attach undoes all of it and says "everything it had
 * made was removed" only when that is so; an undo whose own answers are lost keeps everything it
 * could not check in the record, and detach finishes from that record; a detach whose acks are lost
 * looks again before it says what is left.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetlinkHandle } from '../../../src/netlink/handle.js';
import { isGetRequest } from '../../../src/netlink/protocol.js';
import { type LostAnswers, setNetlinkRepliesTestHook } from '../../../src/netlink/transport.js';
import type { NetworkConfig } from '../../../src/network/config.js';
import type { InterworkingModel } from '../../../src/network/interworking-model.js';
import { readSandbox } from '../../../src/network/recorded-network.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { cleanupNamespaces, makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod, podConfig } from '../../helpers/pod.js';

let stateDir: string;

beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'vcnet-lost-answers-'));
});

afterEach(() => {
  setNetlinkRepliesTestHook(undefined);
  cleanupNamespaces();
  rmSync(stateDir, { recursive: true, force: true });
});

// The ifb, the htbs and their filters are in the batches too.
const config = (pod: TestNamespace, model: InterworkingModel): NetworkConfig =>
  podConfig(pod, model, { rateLimit: { rxBitsPerSecond: 10_000_000, txBitsPerSecond: 20_000_000 } });

/**
 * Loses the answers of the change-carrying sends `lose` picks (counted from 1, sends that are only
 * dumps not counted); returns how many such sends there were so far.
 */
function loseAnswers(lose: (send: number) => LostAnswers | undefined): () => number {
  let sends = 0;
  setNetlinkRepliesTestHook((requests) => {
    if (requests.every((request) => isGetRequest(request.type))) return undefined;
    sends++;
    return lose(sends);
  });
  return () => sends;
}

/**
 * Loses the answers of the `at`th change-carrying send and of every send after it, dumps too: the
 * undo can neither know what it did nor look.
 */
function loseAnswersFrom(at: number): void {
  let sends = 0;
  setNetlinkRepliesTestHook((requests) => {
    if (!requests.every((request) => isGetRequest(request.type))) sends++;
    return sends >= at ? { errno: 'ENOBUFS' } : undefined;
  });
}

async function failure(promise: Promise<unknown>): Promise<Error & { code?: string; left?: unknown[] }> {
  return (await promise.then(
    () => new Error('it succeeded'),
    (caught: unknown) => caught,
  )) as Error & { code?: string; left?: unknown[] };
}

/** How many change-carrying sends an attach of a two-interface pod makes (and it detached again). */
async function changeSendsOf(model: InterworkingModel): Promise<number> {
  const { pod } = makePod({ interfaces: 2 });
  const sends = loseAnswers(() => undefined);
  await attachSandbox('count', config(pod, model), { stateDirectory: stateDir });
  const count = sends();
  setNetlinkRepliesTestHook(undefined);
  await detachSandbox('count', { stateDirectory: stateDir });
  pod.delete();
  return count;
}

describe('the seam itself', () => {
  it('loses the answers of a send that deletes links too, which goes out from a pool thread', async () => {
    const namespace = makeNamespace('lostdel');
    namespace.exec('ip', ['link', 'add', 'gone0', 'type', 'veth', 'peer', 'name', 'gone1']);
    using handle = NetlinkHandle.open(namespace.path);
    const { index } = await handle.linkByName('gone0');
    let asked = 0;
    setNetlinkRepliesTestHook((requests) => {
      if (requests.every((request) => isGetRequest(request.type))) return undefined;
      asked++;
      return { errno: 'ENOBUFS' };
    });
    // The answers the seam loses are the ones to this send: its deletion is made, and not confirmed.
    const outcomes = await handle
      .changes()
      .deleteLink(index)
      .send()
      .catch((error: unknown) => error);
    setNetlinkRepliesTestHook(undefined);
    expect(asked).toBe(1);
    expect(String(outcomes instanceof Error ? outcomes.message : JSON.stringify(outcomes))).toMatch(/ENOBUFS/);
    expect(namespace.exec('ip', ['-br', 'link', 'show'])).not.toMatch(/^gone0/m);
  });
});

describe('an attach whose answers are lost', () => {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model} (with rx and tx limits): at each send, none or one answer read, is undone whole`, async () => {
      const count = await changeSendsOf(model);
      expect(count).toBeGreaterThan(1);
      const { pod } = makePod({ interfaces: 2 });
      const before = fingerprint(pod);
      for (let at = 1; at <= count; at++) {
        for (const answersRead of [0, 1]) {
          const what = `answers lost at send ${at} of ${count}, ${answersRead} read`;
          loseAnswers((send) => (send === at ? { errno: 'ENOBUFS', answersRead } : undefined));
          const error = await failure(attachSandbox('lossy', config(pod, model), { stateDirectory: stateDir }));
          setNetlinkRepliesTestHook(undefined);
          if (error.message === 'it succeeded') {
            // The only answer of that send was read: nothing was lost.
            expect(answersRead, what).toBe(1);
            await detachSandbox('lossy', { stateDirectory: stateDir });
          } else {
            expect(error.code, `${what}: ${error.message}`).toBe('VCNET_ATTACH_FAILED');
            expect(error.message, what).toContain('ENOBUFS');
            expect(error.message, what).toContain('everything it had made was removed');
            expect(readSandbox('lossy', stateDir), what).toBeUndefined();
          }
          expect(fingerprint(pod), what).toEqual(before);
        }
      }
    });
  }
});

describe('an attach whose answers are lost from one send on, its undo too', () => {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model}: keeps everything it could not check in the record, and detach removes it all`, async () => {
      const count = await changeSendsOf(model);
      const { pod } = makePod({ interfaces: 2 });
      const before = fingerprint(pod);
      for (let at = 1; at <= count; at++) {
        const what = `answers lost from send ${at} of ${count} on`;
        loseAnswersFrom(at);
        const error = await failure(attachSandbox('stuck', config(pod, model), { stateDirectory: stateDir }));
        setNetlinkRepliesTestHook(undefined);
        expect(error.code, `${what}: ${error.message}`).toBe('VCNET_ROLLBACK_INCOMPLETE');
        expect(error.message, what).not.toContain('everything it had made was removed');
        // Nothing could be looked at: what is kept is said to be not checked (maybe gone), not left.
        expect(error.message, what).toContain('not checked');
        const json = (error as unknown as { toJSON(): { value: string[]; notChecked?: string[] } }).toJSON();
        expect(json.notChecked?.length, what).toBeGreaterThan(0);
        expect(json.value, what).toEqual([]);
        const recorded = readSandbox('stuck', stateDir)?.network.endpoints.flatMap(
          (endpoint) => endpoint.plumbing?.steps ?? [],
        );
        expect(recorded, what).toEqual(expect.arrayContaining(error.left ?? []));
        const detached = await detachSandbox('stuck', { stateDirectory: stateDir });
        expect(detached.report?.left ?? [], what).toEqual([]);
        expect(readSandbox('stuck', stateDir), what).toBeUndefined();
        expect(fingerprint(pod), what).toEqual(before);
      }
    });
  }
});

describe('a detach whose answers are lost', () => {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model}: looks again, finishes, and says nothing is left`, async () => {
      const { pod } = makePod({ interfaces: 2 });
      const before = fingerprint(pod);
      await attachSandbox('sb', config(pod, model), { stateDirectory: stateDir });
      const sends = loseAnswers((send) => (send === 1 ? { errno: 'ENOBUFS' } : undefined));
      const detached = await detachSandbox('sb', { stateDirectory: stateDir });
      expect(sends()).toBeGreaterThan(0);
      setNetlinkRepliesTestHook(undefined);
      expect(detached.report?.failures ?? []).toEqual([]);
      expect(detached.report?.left ?? []).toEqual([]);
      expect(readSandbox('sb', stateDir)).toBeUndefined();
      expect(fingerprint(pod)).toEqual(before);
    });
  }
});
