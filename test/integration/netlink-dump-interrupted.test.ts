/**
 * A big dump while another process keeps changing the namespace: the kernel marks such dumps
 * NLM_F_DUMP_INTR, and vcnet must send them again rather than use them. 150 veth pairs (300 links
 * with addresses, a link dump of a dozen datagrams) in a fresh namespace; a shell loop adds and
 * deletes a link and an address meanwhile. Every dump vcnet hands back must carry no message marked
 * interrupted and hold each of the 300 links exactly once; whether the kernel marked any is printed.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeAddress, encodeGetAddress } from '../../src/netlink/codec/address.js';
import { MessageFlag, MessageType } from '../../src/netlink/codec/constants.js';
import { decodeLink, encodeGetLink } from '../../src/netlink/codec/link.js';
import { DumpInterruptedError } from '../../src/netlink/errors.js';
import { NetlinkHandle } from '../../src/netlink/handle.js';
import { cleanupNamespaces, makeNamespace } from '../helpers/namespace.js';

const PAIRS = 150;
const DURATION_MS = 4000;
const notRoot = process.getuid?.() !== 0;
if (notRoot) console.log('skip dump-interrupted kernel test: needs root (CAP_NET_ADMIN, netns)');

let churn: ChildProcess | undefined;

afterEach(() => {
  churn?.kill('SIGKILL');
  churn = undefined;
  cleanupNamespaces();
});

describe('dumps during changes', () => {
  it.skipIf(notRoot)(
    'never uses a dump the kernel marked NLM_F_DUMP_INTR: sends it again, and each result is whole',
    { timeout: 120_000 },
    async () => {
      const namespace = makeNamespace('intr');
      const commands: string[] = [];
      for (let i = 0; i < PAIRS; i++) {
        commands.push(
          `link add v${i} type veth peer name w${i}`,
          `address add 10.${20 + (i >> 7)}.${i & 127}.1/24 dev v${i}`,
        );
      }
      execFileSync('ip', ['-n', namespace.name, '-batch', '-'], { input: `${commands.join('\n')}\n` });
      const handle = NetlinkHandle.open(namespace.path);
      const retries: string[] = [];
      const onRetry = (event: unknown) =>
        retries.push((event as { request: { description: string } }).request.description);
      subscribe('vcnet:netlink:dump-retried', onRetry);
      try {
        churn = spawn(
          'sh',
          [
            '-c',
            `while true; do ip -n ${namespace.name} link add zz type veth peer name zy; ` +
              `ip -n ${namespace.name} address add 10.99.0.1/32 dev v0; ` +
              `ip -n ${namespace.name} link del zz; ip -n ${namespace.name} address del 10.99.0.1/32 dev v0; done`,
          ],
          { stdio: 'ignore' },
        );
        const stable = new Set<string>();
        for (let i = 0; i < PAIRS; i++) stable.add(`v${i}`).add(`w${i}`);
        let linkDumps = 0;
        let addressDumps = 0;
        let gaveUp = 0;
        const deadline = Date.now() + DURATION_MS;
        while (Date.now() < deadline) {
          const [links, addresses] = await handle.socket
            .batch()
            .add(MessageType.GETLINK, MessageFlag.DUMP, 'list links', (w) => encodeGetLink(w))
            .add(MessageType.GETADDR, MessageFlag.DUMP, 'list addresses', (w) => encodeGetAddress(w))
            .send();
          for (const outcome of [links!, addresses!]) {
            if (!outcome.ok) {
              // Five interrupted attempts in a row: a typed error, never a half-consistent list.
              expect(outcome.error).toBeInstanceOf(DumpInterruptedError);
              gaveUp++;
              continue;
            }
            expect(outcome.messages.filter((message) => message.flags & MessageFlag.DUMP_INTR)).toEqual([]);
          }
          if (links!.ok) {
            linkDumps++;
            const names = links!.messages
              .filter((message) => message.type === MessageType.NEWLINK)
              .map((message) => decodeLink(message).name)
              .filter((name) => stable.has(name));
            expect(names.length).toBe(stable.size);
            expect(new Set(names).size).toBe(stable.size);
          }
          if (addresses!.ok) {
            addressDumps++;
            const ours = addresses!.messages
              .filter((message) => message.type === MessageType.NEWADDR)
              .map((message) => decodeAddress(message))
              .filter((address) => address.address.startsWith('10.2'));
            expect(new Set(ours.map((address) => address.address)).size).toBe(PAIRS);
          }
        }
        console.log(
          `NLM_F_DUMP_INTR: the kernel marked ${retries.filter((what) => what === 'list links').length} link and ` +
            `${retries.filter((what) => what === 'list addresses').length} address dump(s) interrupted while ${linkDumps} link and ` +
            `${addressDumps} address dumps completed (each sent again; ${gaveUp} gave up after 5 attempts)`,
        );
        expect(linkDumps).toBeGreaterThan(0);
      } finally {
        unsubscribe('vcnet:netlink:dump-retried', onRetry);
        handle.close();
      }
    },
  );
});
