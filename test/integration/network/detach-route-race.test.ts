/**
 * A route set in the place of a recorded one between detach's plan and its send: the plan saw the
 * place free, the kernel answers the add EEXIST. Theirs stays, as when the plan sees it, and the same
 * notice says the recorded route was not put back over it; it used to pass silently as "already
 * there". The moment is made by a vcnet:notice subscriber (notices of the plan are published before
 * its batch is sent) that sets the route from outside, as another program would.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { channels } from '../../../src/diagnostics.js';
import { Network } from '../../../src/network/network.js';
import { cleanupNamespaces } from '../../helpers/namespace.js';
import { makePod, tcfilterConfig } from '../../helpers/pod.js';

afterEach(() => {
  cleanupNamespaces();
});

describe('a route set in a recorded route place while detach sends', () => {
  it('stays, and the notice names it and the recorded route not put back', async () => {
    const { pod } = makePod();
    const network = Network.open(tcfilterConfig(pod, { model: 'macvtap' }));
    await network.addEndpoints();
    const state = structuredClone(network.save());
    network.close();
    // A notice of the plan (the macvtap renamed since attach) is the moment between plan and send.
    pod.exec('ip', ['link', 'set', 'tap0_kata', 'name', 'renamed0']);
    const notices: string[] = [];
    let raced = false;
    const listener = (notice: { message: string }) => {
      notices.push(notice.message);
      if (raced) return;
      raced = true;
      execFileSync('ip', ['-n', pod.name, 'route', 'add', '10.100.0.0/16', 'dev', 'eth0']);
    };
    channels.notice.subscribe(listener);
    const again = Network.load(state);
    try {
      const report = await again.removeEndpoints();
      expect(report.failures).toEqual([]);
    } finally {
      channels.notice.unsubscribe(listener);
      again.close();
    }
    expect(raced).toBe(true);
    const routes = pod.ipJson<Array<{ dst: string; gateway?: string }>>('route', 'show', '10.100.0.0/16');
    expect(routes, 'theirs stays').toEqual([expect.objectContaining({ dst: '10.100.0.0/16' })]);
    expect(routes[0]?.gateway).toBeUndefined();
    expect(notices).toContainEqual(
      expect.stringMatching(
        /^left the route 10\.100\.0\.0\/16 dev eth0 .* of the route attach removed, 10\.100\.0\.0\/16 via 10\.200\.0\.1 dev eth0 .*mtu 1400, which is not put back over it$/,
      ),
    );
  });
});
