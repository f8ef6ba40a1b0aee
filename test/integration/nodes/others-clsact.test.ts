/**
 * A pod link that already has a clsact qdisc with classic-BPF filters on both hooks, as eBPF
 * dataplanes (Cilium, Calico's eBPF mode) put on the links they manage, through the public CLI for
 * every model: attach adds its redirect beside them (tcfilter: under clsact's ingress hook, and
 * frames from the node reach it past the other tool's filter, which matches nothing), and detach
 * leaves the clsact qdisc and both hooks' filters exactly as they were.
 */
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest } from '../../helpers/cli.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { attachThenDetach, MODELS, nodeSnapshot } from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-clsact-');

interface TcFilter {
  pref?: number;
  kind?: string;
  options?: { actions?: Array<{ kind: string; to_dev?: string; stats?: { packets?: number } }> };
}

/** Both hooks' filters of eth0, as tc prints them (-s off: the counters move with traffic). */
function hookFilters(pod: TestNamespace): Record<string, unknown> {
  return {
    ingress: pod.tcJson<unknown[]>('filter', 'show', 'dev', 'eth0', 'ingress'),
    egress: pod.tcJson<unknown[]>('filter', 'show', 'dev', 'eth0', 'egress'),
  };
}

/** The clsact an eBPF dataplane leaves: a cBPF filter on each hook that returns 0 (matches nothing, frames go on). */
function addOthersClsact(pod: TestNamespace): string | undefined {
  try {
    pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'clsact']);
    for (const hook of ['ingress', 'egress']) {
      pod.exec('tc', [
        ...['filter', 'add', 'dev', 'eth0', hook, 'prio', '1', 'protocol', 'all'],
        ...['bpf', 'bytecode', '1,6 0 0 0,', 'classid', '1:1'],
      ]);
    }
    return undefined;
  } catch (error) {
    return String((error as { stderr?: string }).stderr ?? error).trim();
  }
}

describe.each(MODELS)("another tool's clsact on the pod link, model %s", (model) => {
  it('attaches beside it and detaches leaving the clsact qdisc and both hooks exactly as they were', (context) => {
    const { pod, node } = makePod();
    const refused = addOthersClsact(pod);
    if (refused) {
      console.log(`skip clsact node shape: this kernel refuses a clsact qdisc or a cBPF filter: ${refused}`);
      context.skip();
    }
    const before = nodeSnapshot(pod);
    const filtersBefore = hookFilters(pod);
    const run = attachThenDetach(pod, model, stateDirectory(), {
      between: () => {
        expect(pod.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', 'eth0').map((q) => q.kind)).toContain(
          'clsact',
        );
        if (model !== 'tcfilter') return;
        const ingress = () => pod.tcJson<TcFilter[]>('-s', 'filter', 'show', 'dev', 'eth0', 'ingress');
        const redirect = () =>
          ingress()
            .flatMap((filter) => filter.options?.actions ?? [])
            .find((action) => action.kind === 'mirred');
        expect(redirect()?.to_dev).toBe('tap0_kata');
        expect(ingress().some((filter) => filter.kind === 'bpf' && filter.pref === 1)).toBe(true);
        // Frames from the node reach the redirect past the other tool's filter (nobody answers: no VM).
        try {
          node.exec('ping', ['-c', '2', '-W', '1', '10.200.0.2']);
        } catch {
          // unanswered: the frames went to the tap
        }
        expect(redirect()?.stats?.packets ?? 0).toBeGreaterThan(0);
      },
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    expect(hookFilters(pod)).toEqual(filtersBefore);
    expect(nodeSnapshot(pod)).toEqual(before);
  });

  // An eBPF dataplane restarting while the VM runs: it takes the ingress hook over, deleting the
  // qdisc there (with vcnet's filters) and putting its clsact in its place. clsact has the handle
  // ffff: as the ingress qdisc did: detach must see it is not the qdisc it added and leave it.
  it('detaches leaving a clsact another tool put in place of the ingress qdisc while attached', (context) => {
    const { pod } = makePod();
    const refused = addOthersClsact(pod);
    if (refused) {
      console.log(`skip clsact node shape: this kernel refuses a clsact qdisc or a cBPF filter: ${refused}`);
      context.skip();
    }
    pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'clsact']);
    let taken = { qdiscs: [] as string[], filters: {} as Record<string, unknown> };
    const run = attachThenDetach(pod, model, stateDirectory(), {
      between: () => {
        for (const kind of ['ingress', 'clsact']) {
          try {
            pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', kind]);
          } catch {
            // not there under this model
          }
        }
        expect(addOthersClsact(pod)).toBeUndefined();
        taken = { qdiscs: nodeSnapshot(pod).qdiscs as string[], filters: hookFilters(pod) };
      },
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    expect(pod.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', 'eth0').map((q) => q.kind)).toContain('clsact');
    expect(hookFilters(pod)).toEqual(taken.filters);
    const after = nodeSnapshot(pod);
    // What detach undoes on the rest (the tap, the macvtap's addresses) is gone; eth0's hooks stay.
    expect((after.qdiscs as string[]).filter((line) => line.startsWith('eth0 '))).toEqual(
      taken.qdiscs.filter((line) => line.startsWith('eth0 ')),
    );
  });
});
