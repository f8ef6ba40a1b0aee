/**
 * Link kinds and tc classifiers a real node's pods have that some kernels lack (this project's CI
 * kernel has none of them), through the public CLI for every model: a VLAN sub-interface (Multus'
 * vlan plugin gives a pod net1 as one), an ipvlan pod link (the ipvlan CNI plugin), and another
 * tool's matchall filter on the pod link's ingress. Each case first makes the object in the pod and,
 * when the kernel refuses it, prints why and is skipped, never passed. Kinds whose module makes
 * links of its own in every namespace when it loads (dummy's dummy0, the tunnels' tunl0, sit0...)
 * are not made here: that would change the host's own namespace.
 */
import { describe, expect, it, type TestContext } from 'vitest';
import { stateDirectoryPerTest } from '../../helpers/cli.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { attachThenDetach, logRecords, MODELS, nodeSnapshot } from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-link-kinds-');

/** Runs `args` (ip or tc) in the pod; on the kernel's refusal prints `what` and why, and skips the case. */
function makeOrSkip(context: TestContext, pod: TestNamespace, what: string, command: 'ip' | 'tc', args: string[]) {
  try {
    pod.exec(command, args);
  } catch (error) {
    console.log(
      `skip ${what}: this kernel refuses it: ${String((error as { stderr?: string }).stderr ?? error).trim()}`,
    );
    context.skip();
  }
}

describe.each(MODELS)('link kinds of a real node, model %s', (model) => {
  it('a VLAN sub-interface: skipped with a notice while it has no address; with one, refused by name and nothing left', (context) => {
    const { pod } = makePod();
    makeOrSkip(context, pod, 'vlan link kind', 'ip', [
      ...['link', 'add', 'link', 'eth0', 'name', 'net1', 'type', 'vlan', 'id', '100'],
    ]);
    pod.exec('ip', ['link', 'set', 'net1', 'up']);
    let before = nodeSnapshot(pod);
    let run = attachThenDetach(pod, model, stateDirectory(), { sandbox: `vlan-bare-${model}` });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    expect(run.output?.endpoints.map((endpoint) => endpoint.source)).toEqual(['eth0']);
    expect(logRecords(run.attached.stderr).map((record) => record.msg)).toContainEqual(
      expect.stringMatching(/^skipped net1 \(kind vlan\): no address/),
    );
    expect(nodeSnapshot(pod)).toEqual(before);

    pod.exec('ip', ['addr', 'add', '10.210.100.2/24', 'dev', 'net1']);
    before = nodeSnapshot(pod);
    run = attachThenDetach(pod, model, stateDirectory(), { sandbox: `vlan-${model}` });
    expect(run.attached.status).toBe(1);
    expect(run.attached.stderr).toContain('unsupported network interface net1: kind vlan');
    expect(nodeSnapshot(pod)).toEqual(before);
  });

  it('an ipvlan pod link beside eth0: attached (joined by tc redirects, whatever the model) and left as found', (context) => {
    const { pod } = makePod();
    makeOrSkip(context, pod, 'ipvlan link kind', 'ip', [
      ...['link', 'add', 'link', 'eth0', 'name', 'ipv0', 'type', 'ipvlan', 'mode', 'l2'],
    ]);
    pod.exec('ip', ['link', 'set', 'ipv0', 'up']);
    pod.exec('ip', ['addr', 'add', '10.200.0.60/24', 'dev', 'ipv0']);
    const before = nodeSnapshot(pod);
    const run = attachThenDetach(pod, model, stateDirectory(), {
      between: (attached) => {
        if (model === 'none') return;
        const tap = attached.output?.endpoints.find((endpoint) => endpoint.source === 'ipv0')?.tap;
        expect(tap).toBeTruthy();
        const actions = pod
          .tcJson<Array<{ options?: { actions?: Array<{ kind: string; to_dev?: string }> } }>>(
            ...['filter', 'show', 'dev', 'ipv0', 'ingress'],
          )
          .flatMap((filter) => filter.options?.actions ?? []);
        expect(actions).toContainEqual(expect.objectContaining({ kind: 'mirred', to_dev: tap }));
      },
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    expect(run.output?.endpoints.map((endpoint) => endpoint.source).sort()).toEqual(['eth0', 'ipv0']);
    expect(nodeSnapshot(pod)).toEqual(before);
  });

  it("another tool's matchall filter on the pod link's ingress: attach beside it, detach leaves it as it was", (context) => {
    const { pod } = makePod();
    pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
    makeOrSkip(context, pod, 'matchall classifier', 'tc', [
      ...['filter', 'add', 'dev', 'eth0', 'ingress', 'prio', '60000', 'matchall', 'classid', '1:1'],
    ]);
    const filters = () => pod.tcJson<unknown[]>('filter', 'show', 'dev', 'eth0', 'ingress');
    const before = nodeSnapshot(pod);
    const filtersBefore = filters();
    const run = attachThenDetach(pod, model, stateDirectory());
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    expect(filters()).toEqual(filtersBefore);
    expect(nodeSnapshot(pod)).toEqual(before);
  });
});
