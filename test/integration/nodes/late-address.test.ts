/**
 * An address added to the pod link after attach (a DHCP or SLAAC client in the pod, a person),
 * through the public CLI for every model: detach succeeds, keeps that address, and puts back every
 * address and route attach found (the macvtap model took them for the guest), neither failing on
 * the new one (same subnet: the kernel makes it the primary while the pod link has no other) nor
 * removing it.
 */
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest } from '../../helpers/cli.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { attachThenDetach, MODELS } from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-late-address-');

/** eth0's global addresses as `address/prefix`, sorted. */
function globalAddresses(pod: TestNamespace): string[] {
  return pod
    .ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number; scope: string }> }>>(
      'addr',
      'show',
      'dev',
      'eth0',
    )[0]!
    .addr_info.filter((info) => info.scope === 'global')
    .map((info) => `${info.local}/${info.prefixlen}`)
    .sort();
}

/** The main table's routes through eth0, without the kernel's prefix routes (their `src` follows the primary address). */
function gatewayRoutes(pod: TestNamespace): string[] {
  return ['-4', '-6']
    .flatMap((family) => pod.exec('ip', [family, 'route', 'show', 'dev', 'eth0']).split('\n'))
    .filter((line) => line.includes(' via ') || line.startsWith('default'))
    .sort();
}

describe.each(MODELS)('an address added to the pod link after attach, model %s', (model) => {
  it('detach keeps it and puts back every address and route attach found', () => {
    const { pod } = makePod();
    const addressesBefore = globalAddresses(pod);
    const routesBefore = gatewayRoutes(pod);
    const added = ['10.200.0.50/24', 'fd00:200::50/64'];
    const run = attachThenDetach(pod, model, stateDirectory(), {
      between: () => {
        pod.exec('ip', ['addr', 'add', added[0]!, 'dev', 'eth0']);
        pod.exec('ip', ['-6', 'addr', 'add', added[1]!, 'dev', 'eth0', 'nodad']);
      },
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    expect(globalAddresses(pod)).toEqual([...addressesBefore, ...added].sort());
    expect(gatewayRoutes(pod)).toEqual(routesBefore);
  });
});
