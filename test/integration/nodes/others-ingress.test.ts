/**
 * A pod link that already has a plain ingress qdisc with another tool's filter, both made by `tc`
 * (`tc qdisc add dev eth0 ingress`, `tc filter add dev eth0 ingress ...`), through the public CLI
 * for every model: detach leaves the filters exactly as `tc filter show` printed them before. The
 * kernel reports every filter of a block under the parent of the last filter added to it (the
 * block's classid): tc's `ingress` is ffff:fff2, so a redirect added under Kata's ffff:0000 made
 * `tc filter show` print `parent ffff:` on the other tool's filters from then on, after detach too.
 */
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest } from '../../helpers/cli.js';
import { attachThenDetach, MODELS, nodeSnapshot } from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-others-ingress-');

describe.each(MODELS)("another tool's filter on the pod link's ingress qdisc, made by tc, model %s", (model) => {
  it('detach leaves the filters as tc showed them before attach', () => {
    const { pod } = makePod();
    pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
    // A classifier after vcnet's redirect (which has priority 49152): it takes nothing from the VM.
    pod.exec('tc', [
      ...['filter', 'add', 'dev', 'eth0', 'ingress', 'prio', '60000', 'protocol', 'ip'],
      ...['u32', 'match', 'ip', 'dst', '10.9.9.9/32', 'classid', '1:1'],
    ]);
    const filters = () => pod.tcJson<unknown[]>('filter', 'show', 'dev', 'eth0', 'ingress');
    const filtersBefore = filters();
    const before = nodeSnapshot(pod);
    const run = attachThenDetach(pod, model, stateDirectory());
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    expect(filters()).toEqual(filtersBefore);
    expect(nodeSnapshot(pod)).toEqual(before);
  });
});
