/**
 * Kata's rate limits (rx_rate_limiter_max_rate towards the VM, tx_rate_limiter_max_rate from it)
 * on a NIC hot-plugged into a running guest with `vcnet add-iface`, with each model: the sandbox's
 * limits, recorded at attach, go on the new NIC's plumbing too (tcfilter: rx on its tap, tx on its
 * pod link; macvtap: tx on its macvtap, rx on an ifb fed from the macvtap's ingress), iperf3 over the
 * new NIC stays under each limit where the guest exceeds them once the classes are raised in the
 * same run, and del-iface takes the new NIC's trees and ifb with it. Detach leaves the pod as it was.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vcnet } from '../helpers/cli.js';
import { guestUnavailableReason, runOnConsole } from '../helpers/guest.js';
import { addSecondInterface, attachAndBootGuest, writeRequest } from '../helpers/hotplug-guest.js';
import { cleanupNamespaces, kernelSupportsLinkKind, makeNamespace } from '../helpers/namespace.js';
import { fingerprint } from '../helpers/pod.js';
import { htbClasses, htbRate, iperf, mbps, raiseHtbClasses } from '../helpers/rate-limit.js';

const unavailable = guestUnavailableReason();
if (unavailable) console.log(`skip hot-plugged rate-limited NIC VM test: ${unavailable}`);

/** Towards the VM, bits/s: low enough that a TCG guest on a busy machine still goes faster unlimited. */
const RX_RATE = 16_000_000;
/** From the VM, bits/s: twice rx, so a limit put on the wrong direction shows. */
const TX_RATE = 32_000_000;
/** htb lets a burst through on top of the rate; a measured rate above this is a limit that does not hold. */
const MARGIN = 1.1;
/** The hot-plugged NIC's subnet: its node end holds .1, the guest's net9 .2. */
const SUBNET = '10.209.0';

type Model = 'tcfilter' | 'macvtap';

let work: string | undefined;

afterEach(() => {
  cleanupNamespaces();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

describe.skipIf(unavailable !== undefined)('a hot-plugged NIC under the sandbox rate limits in a booted guest', () => {
  it.for<{ model: Model; rxDevice: string; txDevice: string }>([
    { model: 'tcfilter', rxDevice: 'tap1_kata', txDevice: 'eth9' },
    { model: 'macvtap', rxDevice: 'ifb1_kata', txDevice: 'tap1_kata' },
  ])(
    '$model: add-iface puts both limits on the new NIC, traffic over it stays under each, del-iface takes them away',
    {
      timeout: 420_000,
    },
    async ({ model, rxDevice, txDevice }, context) => {
      if (model === 'macvtap') {
        const probe = makeNamespace('mvtprobe');
        probe.exec('ip', ['link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
        const supported = kernelSupportsLinkKind(probe, 'macvtap', ['link', 'probe0']);
        if (!supported.ok) {
          console.log(`skip hot-plugged rate-limited NIC VM test with macvtap: ${supported.reason}`);
          context.skip();
        }
      }
      work = mkdtempSync(join(tmpdir(), 'vcnet-plugrate-'));
      const config = join(work, 'configuration.toml');
      writeFileSync(
        config,
        `[hypervisor.qemu]\nrx_rate_limiter_max_rate = ${RX_RATE}\ntx_rate_limiter_max_rate = ${TX_RATE}\n`,
      );
      const setup = await attachAndBootGuest(work, {
        sandbox: 'plugrate',
        attachArgs: ['--config', config, '--model', model],
      });
      const { guest, pod, node, stateDir, sandbox } = setup;
      try {
        const request = addSecondInterface(work, setup, SUBNET);
        const added = vcnet(['add-iface', sandbox, request, '--state-dir', stateDir]);
        expect(added.status, added.stderr).toBe(0);
        expect(htbClasses(pod, rxDevice)).toEqual({ '1:1': htbRate(RX_RATE), '1:2': htbRate(RX_RATE) });
        expect(htbClasses(pod, txDevice)).toEqual({ '1:1': htbRate(TX_RATE), '1:2': htbRate(TX_RATE) });

        await runOnConsole(guest, 'iperf3 -s -D');
        const address = `${SUBNET}.2`;
        const limited = { toGuest: iperf(node.name, address, false), fromGuest: iperf(node.name, address, true) };
        raiseHtbClasses(pod, [rxDevice, txDevice]);
        const unlimited = { toGuest: iperf(node.name, address, false), fromGuest: iperf(node.name, address, true) };
        console.log(
          `hot-plugged NIC rate limit, ${model}: towards the guest ${mbps(limited.toGuest)} (rx limit ${mbps(RX_RATE)}; unlimited ${mbps(unlimited.toGuest)}), ` +
            `from the guest ${mbps(limited.fromGuest)} (tx limit ${mbps(TX_RATE)}; unlimited ${mbps(unlimited.fromGuest)})`,
        );
        expect(limited.toGuest).toBeLessThan(RX_RATE * MARGIN);
        expect(limited.fromGuest).toBeLessThan(TX_RATE * MARGIN);
        expect(unlimited.toGuest, 'TCG too slow to exceed the rx limit: lower RX_RATE').toBeGreaterThan(RX_RATE * 1.5);
        expect(unlimited.fromGuest, 'TCG too slow to exceed the tx limit: lower TX_RATE').toBeGreaterThan(
          TX_RATE * 1.5,
        );
        expect(limited.fromGuest).toBeGreaterThan(RX_RATE * MARGIN);

        const removed = vcnet([
          'del-iface',
          sandbox,
          writeRequest(work, 'del.json', { name: 'net9' }),
          '--state-dir',
          stateDir,
        ]);
        expect(removed.status, removed.stderr).toBe(0);
        const links = pod.exec('ip', ['-br', 'link', 'show']);
        expect(links).not.toMatch(/^(tap1_kata|ifb1_kata)[\s@]/m);
        expect(pod.exec('tc', ['qdisc', 'show', 'dev', 'eth9'])).not.toMatch(/htb|ingress/);
      } finally {
        await guest.kill();
      }
      pod.exec('ip', ['link', 'del', 'eth9']);
      const detached = vcnet(['detach', '--sandbox', sandbox, '--state-dir', stateDir]);
      expect(detached.status, detached.stderr).toBe(0);
      expect(fingerprint(pod)).toEqual(setup.before);
    },
  );
});
