/**
 * The executor sends a plan's netlink steps in one batch, ingress qdiscs included, and falls back to
 * Kata's EBUSY retry only when the kernel refuses an ingress qdisc that way: the qdisc is tried again
 * on its own and what the batch refused after it (its filters) goes once it is there. Any other
 * refusal undoes what the batch made. A scripted handle stands in for the kernel's answers; the
 * real kernel runs the same plans in test/integration/network.
 */
import { describe, expect, it } from 'vitest';
import { RollbackIncompleteError } from '../../../src/errors.js';
import { ETH_P_ALL } from '../../../src/netlink/codec/tc/filter.js';
import { INGRESS_HANDLE, TC_H_INGRESS } from '../../../src/netlink/codec/tc/message.js';
import { NetlinkError } from '../../../src/netlink/errors.js';
import type { NetlinkHandle } from '../../../src/netlink/handle.js';
import { IngressQdiscBusyError } from '../../../src/network/ingress-qdisc.js';
import { applyPlan, sendChanges } from '../../../src/network/plan/apply.js';
import { type ChangeAnswer, sendBatch } from '../../../src/network/plan/batch-send.js';
import { stepOf } from '../../../src/network/plan/inverse.js';
import type { LinkRef, Plan } from '../../../src/network/plan/types.js';

const eth0: LinkRef = { role: 'pod', name: 'eth0', index: 3 };
const eth1: LinkRef = { role: 'pod', name: 'eth1', index: 4 };

/** A redirect between two existing links: the tcfilter shape without the tap (made by ioctl). */
function redirectPlan(): Plan {
  const ingress = (link: LinkRef) =>
    stepOf({ op: 'add-qdisc', link, kind: 'ingress', handle: INGRESS_HANDLE, parent: TC_H_INGRESS });
  const redirect = (link: LinkRef, to: LinkRef) =>
    stepOf({ op: 'add-filter', link, parent: INGRESS_HANDLE, priority: 49152, protocol: ETH_P_ALL, redirectTo: to });
  return {
    model: 'existing',
    device: eth1,
    steps: [
      stepOf({ op: 'set-link', link: eth1, set: { mtu: 1400 } }, { mtu: 1500 }),
      ingress(eth1),
      ingress(eth0),
      redirect(eth0, eth1),
      redirect(eth1, eth0),
    ],
  };
}

const refusal = (errno: string) => Object.assign(new Error(`refused: ${errno}`), { errno });
const lostAnswer = () =>
  Object.assign(new Error('recvfrom netlink: No buffer space available'), { code: 'ENOBUFS', errno: 105 });

/**
 * Answers each request with the next scripted errno for its description ("qdisc 3", "filter 3",
 * "set 4", "delete-filter 4"…), or success. Every batch sent and every lone qdisc add is logged.
 */
function scriptedHandle(script: Record<string, string[]>) {
  const log: string[][] = [];
  /** The links whose ingress qdisc an accepted request made (and none deleted since): what a qdisc dump lists. */
  const ingressOn = new Set<number>();
  /** The links' MTUs as accepted set requests leave them: what a link dump lists (the undo's check reads it). */
  const mtus = new Map([
    [3, 1500],
    [4, 1400],
  ]);
  // After a scripted LOST, the receive failed: that answer and every later one of its batch are
  // lost, though the kernel made each change (a send runs whole).
  let lost: Error | undefined;
  const answer = (request: string, set?: { mtu?: number }) => {
    const errno = script[request]?.shift();
    if (errno === 'LOST') lost = lostAnswer();
    if (errno && errno !== 'LOST') return { ok: false as const, error: refusal(errno) };
    const [verb, index] = request.split(' ');
    if (verb === 'qdisc') ingressOn.add(Number(index));
    if (verb === 'delete-qdisc') ingressOn.delete(Number(index));
    if (verb === 'set' && set?.mtu !== undefined) mtus.set(Number(index), set.mtu);
    if (lost)
      return { ok: false as const, error: NetlinkError.fromFailure({ type: 0, description: request }, lost, '/x') };
    return { ok: true as const, messages: [] };
  };
  const batch = () => {
    const requests: string[] = [];
    const sets = new Map<number, { mtu?: number }>();
    const add = (request: string) => {
      requests.push(request);
      return fake;
    };
    const fake = {
      setLink: (index: number, set: { mtu?: number }) => {
        sets.set(requests.length, set);
        return add(`set ${index}`);
      },
      addQdisc: (spec: { index: number }) => add(`qdisc ${spec.index}`),
      deleteQdisc: (index: number) => add(`delete-qdisc ${index}`),
      addFilter: (spec: { index: number }) => add(`filter ${spec.index}`),
      deleteFilter: (spec: { index: number }) => add(`delete-filter ${spec.index}`),
      send: async () => {
        log.push([...requests]);
        const answers = requests.map((request, position) => answer(request, sets.get(position)));
        lost = undefined;
        return answers;
      },
    };
    return fake;
  };
  const handle = {
    changes: batch,
    addQdisc: async (spec: { index: number }) => {
      log.push([`lone qdisc ${spec.index}`]);
      const outcome = answer(`qdisc ${spec.index}`);
      if (!outcome.ok) throw outcome.error;
    },
    qdiscs: async (index: number) =>
      ingressOn.has(index)
        ? [{ index, handle: INGRESS_HANDLE, parent: TC_H_INGRESS, kind: 'ingress', options: {} }]
        : [],
    filters: async () => [],
    links: async () => [
      { index: 3, name: 'eth0', flags: 0, mtu: mtus.get(3) },
      { index: 4, name: 'eth1', flags: 0, mtu: mtus.get(4) },
    ],
  };
  return { handle: handle as unknown as NetlinkHandle, log };
}

describe('applyPlan batches', () => {
  it('sends every netlink step of a plan in one batch', async () => {
    const { handle, log } = scriptedHandle({});
    const applied = await applyPlan(redirectPlan(), { handle, namespacePath: '/x', keepFds: false });
    expect(log).toEqual([['set 4', 'qdisc 4', 'qdisc 3', 'filter 3', 'filter 4']]);
    expect(applied.records.map((record) => record.step)).toEqual([
      'change-link',
      'add-qdisc',
      'add-qdisc',
      'add-filter',
      'add-filter',
    ]);
  });

  it('retries an ingress qdisc refused with EBUSY on its own, then sends what failed after it', async () => {
    // eth0's ingress is busy twice (the batch, then the first lone try); its filter fails meanwhile.
    const { handle, log } = scriptedHandle({ 'qdisc 3': ['EBUSY', 'EBUSY'], 'filter 3': ['EINVAL'] });
    const journal: string[][] = [];
    const applied = await applyPlan(redirectPlan(), {
      handle,
      namespacePath: '/x',
      keepFds: false,
      journal: (records) =>
        journal.push(records.map((record) => `${record.step} ${'link' in record ? record.link : ''}`)),
    });
    expect(log).toEqual([
      ['set 4', 'qdisc 4', 'qdisc 3', 'filter 3', 'filter 4'],
      ['lone qdisc 3'],
      ['lone qdisc 3'],
      ['filter 3'],
    ]);
    // Everything was made; the records list each object once, in an order that undoes cleanly.
    expect(applied.records.map((record) => `${record.step} ${'link' in record ? record.link : ''}`)).toEqual([
      'change-link eth1',
      'add-qdisc eth1',
      'add-filter eth1',
      'add-qdisc eth0',
      'add-filter eth0',
    ]);
    // The journal named every object before it was asked for.
    expect(journal.at(-1)).toHaveLength(5);
  });

  it('fails at a refusal a busy ingress qdisc did not cause, without sending it again', async () => {
    // eth0's filter waited for its busy qdisc and goes again; eth1's was refused for its own reason.
    const { handle, log } = scriptedHandle({ 'qdisc 3': ['EBUSY'], 'filter 3': ['EINVAL'], 'filter 4': ['EPERM'] });
    await expect(applyPlan(redirectPlan(), { handle, namespacePath: '/x', keepFds: false })).rejects.toMatchObject({
      errno: 'EPERM',
    });
    expect(log.slice(0, 3)).toEqual([
      ['set 4', 'qdisc 4', 'qdisc 3', 'filter 3', 'filter 4'],
      ['lone qdisc 3'],
      ['filter 3'],
    ]);
    // Then the undo, and nothing else.
    expect([...(log[3] ?? [])].sort()).toEqual(['delete-qdisc 3', 'delete-qdisc 4', 'set 4']);
    expect(log).toHaveLength(4);
  });

  it('fails on any other refusal and undoes what the batch made', async () => {
    const { handle, log } = scriptedHandle({ 'filter 3': ['EPERM'] });
    await expect(applyPlan(redirectPlan(), { handle, namespacePath: '/x', keepFds: false })).rejects.toMatchObject({
      errno: 'EPERM',
    });
    expect(log[0]).toEqual(['set 4', 'qdisc 4', 'qdisc 3', 'filter 3', 'filter 4']);
    // The undo batch deletes both qdiscs vcnet made (eth1's filter goes with its qdisc) and puts
    // eth1's MTU back; nothing is asked of the filter that was never made.
    expect([...(log[1] ?? [])].sort()).toEqual(['delete-qdisc 3', 'delete-qdisc 4', 'set 4']);
    expect(log).toHaveLength(2);
  });
});

describe('applyPlan with answers lost', () => {
  it('undoes every change whose answer was lost, as made, and throws the loss', async () => {
    // The receive fails at eth0's qdisc: it and both filters were made, and their answers lost.
    const { handle, log } = scriptedHandle({ 'qdisc 3': ['LOST'] });
    const error = await applyPlan(redirectPlan(), { handle, namespacePath: '/x', keepFds: false }).then(
      () => undefined,
      (caught: unknown) => caught as NetlinkError,
    );
    expect(error).toBeInstanceOf(NetlinkError);
    expect(error?.errno).toBe('ENOBUFS');
    expect(error?.answerLost).toBe(true);
    expect(log[0]).toEqual(['set 4', 'qdisc 4', 'qdisc 3', 'filter 3', 'filter 4']);
    // Both qdiscs go (with the filters in them), eth0's too, whose add was never answered.
    expect([...(log[1] ?? [])].sort()).toEqual(['delete-qdisc 3', 'delete-qdisc 4', 'set 4']);
    expect(log).toHaveLength(2);
  });
});

describe('sendChanges (the watch putting back tc objects)', () => {
  const changes = () => redirectPlan().steps.map((step) => step.change);

  it('sends them in one batch and answers each, a refusal neither stopping the rest nor throwing', async () => {
    const { handle, log } = scriptedHandle({ 'filter 3': ['EPERM'] });
    const answers = await sendChanges(handle, changes());
    expect(log).toEqual([['set 4', 'qdisc 4', 'qdisc 3', 'filter 3', 'filter 4']]);
    expect(answers.map((answer) => (answer.ok ? 'ok' : (answer.error as { errno?: string }).errno))).toEqual([
      'ok',
      'ok',
      'ok',
      'EPERM',
      'ok',
    ]);
  });

  it('retries an ingress qdisc refused with EBUSY as attach does, then sends again what the batch refused on its link', async () => {
    const { handle, log } = scriptedHandle({
      'qdisc 3': ['EBUSY', 'EBUSY'],
      'filter 3': ['EINVAL'],
      'filter 4': ['EPERM'],
    });
    const answers = await sendChanges(handle, changes());
    expect(log).toEqual([
      ['set 4', 'qdisc 4', 'qdisc 3', 'filter 3', 'filter 4'],
      ['lone qdisc 3'],
      ['lone qdisc 3'],
      // eth1's filter was refused for its own reason, on another link: not sent again.
      ['filter 3'],
    ]);
    expect(answers.map((answer) => answer.ok)).toEqual([true, true, true, true, false]);
  });

  it('sends nothing for no changes', async () => {
    const { handle, log } = scriptedHandle({});
    expect(await sendChanges(handle, [])).toEqual([]);
    expect(log).toEqual([]);
  });
});

describe('sendBatch (the one sending core of attach, the watch and their tests)', () => {
  const changes = () => redirectPlan().steps.map((step) => step.change);
  const byIndex = { indexOf: (ref: LinkRef) => ref.index! };
  const summary = (answers: ChangeAnswer[]) =>
    answers.map((answer) => (answer.ok ? 'ok' : ((answer.error as { errno?: string }).errno ?? answer.error.name)));

  it('adds each busy ingress qdisc on its own in turn, and after each sends what the batch refused on its link', async () => {
    const { handle, log } = scriptedHandle({
      'qdisc 4': ['EBUSY'],
      'qdisc 3': ['EBUSY'],
      'filter 3': ['EINVAL'],
      'filter 4': ['EINVAL'],
    });
    const told: string[] = [];
    let sends = 0;
    const answers = await sendBatch(handle, changes(), {
      ...byIndex,
      beforeSend: () => void sends++,
      answered: (position, answer) => void told.push(`${position} ${answer.ok ? 'ok' : 'refused'}`),
      failOnRefusal: true,
    });
    expect(log).toEqual([
      ['set 4', 'qdisc 4', 'qdisc 3', 'filter 3', 'filter 4'],
      ['lone qdisc 4'],
      ['filter 4'],
      ['lone qdisc 3'],
      ['filter 3'],
    ]);
    expect(summary(answers)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    // Every send, batch or lone, is announced first (attach journals there)…
    expect(sends).toBe(5);
    // …and every answer is told as it comes: the batch's in order, then each one given again.
    expect(told).toEqual(['0 ok', '1 refused', '2 refused', '3 refused', '4 refused', '1 ok', '4 ok', '2 ok', '3 ok']);
  });

  it('failing on refusals, stops at the first that is not a busy ingress qdisc or held back by one', async () => {
    // eth1's filter is refused for its own reason: after eth0's qdisc is there, eth0's filter goes
    // again, and eth1's refusal ends the send; nothing more is asked of the kernel.
    const { handle, log } = scriptedHandle({ 'qdisc 3': ['EBUSY'], 'filter 3': ['EINVAL'], 'filter 4': ['EPERM'] });
    await expect(sendBatch(handle, changes(), { ...byIndex, failOnRefusal: true })).rejects.toMatchObject({
      errno: 'EPERM',
    });
    expect(log).toEqual([['set 4', 'qdisc 4', 'qdisc 3', 'filter 3', 'filter 4'], ['lone qdisc 3'], ['filter 3']]);
  });

  it('failing on refusals, throws the first refusal before any retry', async () => {
    const { handle, log } = scriptedHandle({ 'set 4': ['EPERM'], 'qdisc 3': ['EBUSY'] });
    await expect(sendBatch(handle, changes(), { ...byIndex, failOnRefusal: true })).rejects.toMatchObject({
      errno: 'EPERM',
    });
    expect(log).toHaveLength(1);
  });

  it('sends a refusal whose cause the caller took away again, with all the batch refused after it', async () => {
    const { handle, log } = scriptedHandle({ 'qdisc 4': ['EEXIST'], 'filter 4': ['EINVAL'] });
    const asked: number[] = [];
    const answers = await sendBatch(handle, changes(), {
      ...byIndex,
      failOnRefusal: true,
      retryRefused: async (position) => {
        asked.push(position);
        return true;
      },
    });
    expect(asked).toEqual([1]);
    expect(log).toEqual([
      ['set 4', 'qdisc 4', 'qdisc 3', 'filter 3', 'filter 4'],
      ['qdisc 4', 'filter 4'],
    ]);
    expect(summary(answers)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
  });

  it('a busy ingress qdisc refused on its own too: thrown when failing, else its answer (and its filter is not sent again)', async () => {
    const busy = () => ({ 'qdisc 3': Array(6).fill('EBUSY'), 'filter 3': ['EINVAL'] });
    const failing = scriptedHandle(busy());
    await expect(sendBatch(failing.handle, changes(), { ...byIndex, failOnRefusal: true })).rejects.toBeInstanceOf(
      IngressQdiscBusyError,
    );
    const answering = scriptedHandle(busy());
    const answers = await sendBatch(answering.handle, changes(), byIndex);
    expect(summary(answers)).toEqual(['ok', 'ok', 'IngressQdiscBusyError', 'EINVAL', 'ok']);
    expect(answering.log.filter((sent) => sent[0] === 'filter 3')).toEqual([]);
  });
});

describe('a rollback that cannot finish', () => {
  it('reports everything made as left when the undo cannot even start (its link dump refused)', async () => {
    const { handle, log } = scriptedHandle({ 'filter 3': ['EPERM'] });
    (handle as unknown as { links: () => Promise<never> }).links = async () => {
      throw refusal('EIO');
    };
    const journal: string[][] = [];
    const error = await applyPlan(redirectPlan(), {
      handle,
      namespacePath: '/x',
      keepFds: false,
      journal: (records) => journal.push(records.map((record) => record.step)),
    }).then(
      () => undefined,
      (caught: unknown) => caught as RollbackIncompleteError,
    );
    expect(error).toBeInstanceOf(RollbackIncompleteError);
    expect(error?.message).toContain('refused: EPERM');
    expect(error?.message).toContain('refused: EIO');
    expect(error?.message).not.toContain('everything it had made was removed');
    // Nothing was undone (no second batch): all four objects made are left, and journaled as such.
    expect(log).toHaveLength(1);
    expect(error?.left).toHaveLength(4);
    expect(journal.at(-1)).toEqual(['change-link', 'add-qdisc', 'add-qdisc', 'add-filter']);
  });

  it('keeps its own error when the journal cannot be written, and sends nothing after', async () => {
    const { handle, log } = scriptedHandle({});
    const full = Object.assign(new Error('no space left on device, write'), { code: 'ENOSPC' });
    await expect(
      applyPlan(redirectPlan(), {
        handle,
        namespacePath: '/x',
        keepFds: false,
        journal: () => {
          throw full;
        },
      }),
    ).rejects.toBe(full);
    // The journal is written before a step is sent: a journal that fails stops the attach first.
    expect(log).toEqual([]);
  });
});
