/**
 * A running watch puts back the tc objects vcnet made for an attached tcfilter endpoint that someone
 * else deletes: the pod link's ingress qdisc with its redirect to the tap (`tc qdisc del dev eth0
 * ingress`), the tap's redirect to the pod link, the htb rate limits and the classes under them; as
 * the record has them, so a detach afterwards still leaves the pod exactly as found. A filter of
 * another tool at vcnet's priority is left alone, with a notice saying what to do, said once (and one
 * in another chain is not taken for vcnet's after a delete whose answer was lost; a u32 of theirs
 * that vcnet's redirect joined, or that joins the redirect the watch made again, stays when vcnet's
 * is taken away). A watch that starts finds what was deleted while none ran. A detach while watching
 * is not undone by it.
 */
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { channels, type NoticeEvent } from '../../../src/diagnostics.js';
import { MessageType } from '../../../src/netlink/codec/constants.js';
import { isGetRequest } from '../../../src/netlink/protocol.js';
import { setNetlinkRepliesTestHook } from '../../../src/netlink/transport.js';
import { type WatchSummary, watchSandbox } from '../../../src/sandbox/sandbox-watch.js';
import { setTrafficControlRetryTestHook } from '../../../src/sandbox/tc-repair-retry.js';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { vcnet } from '../../helpers/cli.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { until } from '../../helpers/until.js';

const cleanup = cleanupAfterEach();

interface TcFilter {
  pref: number;
  kind: string;
  options?: { actions?: Array<{ kind: string; to_dev?: string; stats?: { packets?: number } }> };
}

/** The ingress filters of `dev` at `priority` that redirect (mirred) to `target`. */
function redirects(pod: TestNamespace, dev: string, priority: number, target: string): TcFilter[] {
  return pod
    .tcJson<TcFilter[]>('-s', 'filter', 'show', 'dev', dev, 'ingress')
    .filter(
      (filter) =>
        filter.pref === priority &&
        filter.options?.actions?.some((action) => action.kind === 'mirred' && action.to_dev === target) === true,
    );
}

function redirectedPackets(pod: TestNamespace, dev: string, target: string): number {
  return redirects(pod, dev, 49152, target)
    .flatMap((filter) => filter.options?.actions ?? [])
    .reduce((sum, action) => sum + (action.stats?.packets ?? 0), 0);
}

function htbRate(pod: TestNamespace, dev: string): string | undefined {
  return /class htb 1:2 .*rate (\S+)/.exec(pod.exec('tc', ['class', 'show', 'dev', dev]))?.[1];
}

/** What went through class 1:2 of `dev`'s htb, and what it dropped (this tc prints classes as text only). */
function defaultClassStats(pod: TestNamespace, dev: string): { packets: number; dropped: number } {
  const text = pod.exec('tc', ['-s', 'class', 'show', 'dev', dev, 'classid', '1:2']);
  const [, packets, dropped] = /Sent \d+ bytes (\d+) pkt \(dropped (\d+)/.exec(text) ?? [];
  return { packets: Number(packets ?? Number.NaN), dropped: Number(dropped ?? Number.NaN) };
}

/**
 * Another tool's ingress qdisc on eth0, with its `filter` (tc's words), made when the watch's repair
 * first lists filters: between its look and its send. Later requests go to `then`.
 */
function othersIngressAtRepairLook(
  pod: TestNamespace,
  filter: string,
  then: Parameters<typeof setNetlinkRepliesTestHook>[0] = () => undefined,
): void {
  let staged = false;
  setNetlinkRepliesTestHook((requests) => {
    if (staged || !requests.some((request) => request.type === MessageType.GETTFILTER)) return then?.(requests);
    staged = true;
    pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
    pod.exec('tc', filter.split(' '));
    return undefined;
  });
  cleanup.defer(() => setNetlinkRepliesTestHook(undefined));
}

/** Frames the htb sent around its classes (its default class missing): unlimited. */
function directPackets(pod: TestNamespace, dev: string): number {
  const [htb] = pod.tcJson<Array<{ options?: { direct_packets_stat?: number } }>>(
    '-s',
    'qdisc',
    'show',
    'dev',
    dev,
    'root',
  );
  return htb?.options?.direct_packets_stat ?? Number.NaN;
}

/** Sends `count` UDP datagrams of 1000 bytes from the pod to `address` (out of eth0's egress, through its htb). */
function sendFromPod(pod: TestNamespace, address: string, count: number): void {
  const script = `const s = require('node:dgram').createSocket('udp4'); const b = Buffer.alloc(1000); let n = 0;
const next = () => (n++ < ${count} ? s.send(b, 9, '${address}', next) : s.close()); next();`;
  pod.exec(process.execPath, ['-e', script]);
}

/**
 * A pod attached by the CLI (tcfilter, rate limits when `config` is given) and a watch over it.
 * `prepare` changes the pod before it is attached.
 */
async function watchedPod(sandbox: string, config?: string, prepare?: (pod: TestNamespace) => void) {
  const stateDir = cleanup.directory('vcnet-watch-tc-');
  const { pod, node } = makePod();
  prepare?.(pod);
  const before = fingerprint(pod);
  const args = ['attach', '--sandbox', sandbox, '--netns', pod.path, '--state-dir', stateDir];
  if (config) {
    const file = join(stateDir, 'configuration.toml');
    writeFileSync(file, config);
    args.push('--config', file);
  }
  const attach = vcnet(args);
  expect(attach.status, attach.stderr).toBe(0);
  const notices: NoticeEvent[] = [];
  const onNotice = (message: unknown) => {
    if ((message as NoticeEvent).operation === 'watch') notices.push(message as NoticeEvent);
  };
  channels.notice.subscribe(onNotice);
  cleanup.defer(() => channels.notice.unsubscribe(onNotice));
  const summaries: WatchSummary[] = [];
  const start = () =>
    watchSandbox(sandbox, {
      stateDirectory: stateDir,
      debounceMs: 100,
      onApplied: (summary) => summaries.push(summary),
    });
  let watching = await start();
  cleanup.defer(() => watching.stop());
  const repaired = () => summaries.flatMap((summary) => summary.trafficControl ?? []);
  return {
    sandbox,
    pod,
    node,
    before,
    stateDir,
    notices,
    summaries,
    repaired,
    restart: async () => {
      await watching.stop();
      watching = await start();
    },
    stopWatch: () => watching.stop(),
    watching: () => watching,
    detach: () => {
      const result = vcnet(['detach', '--sandbox', sandbox, '--state-dir', stateDir]);
      expect(result.status, result.stderr).toBe(0);
    },
  };
}

describe('vcnet watch and vcnet tc objects deleted under it', () => {
  it("puts back the pod link's ingress qdisc and redirect, and the tap's redirect; traffic reaches the tap again", async () => {
    const w = await watchedPod('tc1');
    expect(redirects(w.pod, 'eth0', 49152, 'tap0_kata')).not.toEqual([]);
    w.pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'ingress']);
    expect(redirects(w.pod, 'eth0', 49152, 'tap0_kata')).toEqual([]);
    await until(() => redirects(w.pod, 'eth0', 49152, 'tap0_kata').length > 0, 'the redirect on eth0 to be back');
    await until(() => w.repaired().length >= 2, 'the watch to say what it did');
    expect(w.repaired()).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ endpoint: 'eth0', link: 'eth0', object: 'ingress qdisc ffff:', outcome: 'restored' }),
        expect.objectContaining({
          link: 'eth0',
          object: 'filter prio 49152 (redirect to tap0_kata)',
          outcome: 'restored',
        }),
      ]),
    );
    expect(w.notices.some((notice) => /eth0.*ingress qdisc ffff:.*made again/.test(notice.message))).toBe(true);
    // Frames the peer sends now go through the redirect to the tap.
    const packets = redirectedPackets(w.pod, 'eth0', 'tap0_kata');
    // No VM reads the tap: nothing answers, and ping says so (exit 1).
    try {
      w.node.exec('ping', ['-c', '3', '-i', '0.2', '-W', '1', '10.200.0.2']);
    } catch {}
    expect(redirectedPackets(w.pod, 'eth0', 'tap0_kata')).toBeGreaterThan(packets);

    w.pod.exec('tc', ['filter', 'del', 'dev', 'tap0_kata', 'ingress', 'prio', '49152']);
    await until(() => redirects(w.pod, 'tap0_kata', 49152, 'eth0').length > 0, 'the redirect on tap0_kata to be back');
    await w.stopWatch();
    // What was made again is what the record says: detach leaves the pod as it was found.
    w.detach();
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it('makes a deleted htb rate limit again, on the tap and on the pod link, in one pass for a burst', async () => {
    const w = await watchedPod(
      'tc2',
      '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 10000000\ntx_rate_limiter_max_rate = 20000000\n',
    );
    expect(htbRate(w.pod, 'tap0_kata')).toBe('10Mbit');
    expect(htbRate(w.pod, 'eth0')).toBe('20Mbit');
    // One burst: every tc object vcnet made on both links.
    const batch = join(w.stateDir, 'tc-batch');
    writeFileSync(
      batch,
      'qdisc del dev tap0_kata root\nqdisc del dev eth0 root\nqdisc del dev eth0 ingress\nqdisc del dev tap0_kata ingress\n',
    );
    w.pod.exec('tc', ['-batch', batch]);
    await until(
      () => htbRate(w.pod, 'tap0_kata') === '10Mbit' && htbRate(w.pod, 'eth0') === '20Mbit',
      'the rate limits to be back',
    );
    await until(() => w.repaired().length >= 6, 'the watch to say what it did');
    expect(w.summaries.filter((summary) => summary.trafficControl).length).toBe(1);
    expect(redirects(w.pod, 'eth0', 49152, 'tap0_kata')).not.toEqual([]);
    expect(redirects(w.pod, 'tap0_kata', 49152, 'eth0')).not.toEqual([]);
    expect(w.repaired().every((entry) => entry.outcome === 'restored')).toBe(true);
    await w.stopWatch();
    w.detach();
    // The pod link's txqueuelen (0, a veth's) is back too: the fingerprint compares it.
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it('a repair whose answers are lost looks again: what the kernel made is said restored, not failed', async () => {
    const w = await watchedPod(
      'tc8',
      '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 10000000\ntx_rate_limiter_max_rate = 20000000\n',
    );
    // The repair's batch goes to the kernel, which runs all of it; two answers are read, the rest
    // lost (a receive buffer overrun: ENOBUFS), through the transport's test seam.
    let lost = 0;
    setNetlinkRepliesTestHook((requests) => {
      if (lost > 0 || requests.every((request) => isGetRequest(request.type))) return undefined;
      lost++;
      return { errno: 'ENOBUFS', answersRead: 2 };
    });
    cleanup.defer(() => setNetlinkRepliesTestHook(undefined));
    const batch = join(w.stateDir, 'tc-batch');
    writeFileSync(
      batch,
      'qdisc del dev tap0_kata root\nqdisc del dev eth0 root\nqdisc del dev eth0 ingress\nqdisc del dev tap0_kata ingress\n',
    );
    w.pod.exec('tc', ['-batch', batch]);
    await until(() => w.repaired().length >= 6, 'the watch to say what it did');
    expect(lost).toBe(1);
    expect(w.repaired().map((entry) => `${entry.link} ${entry.object} ${entry.outcome}`)).toEqual(
      w.repaired().map((entry) => `${entry.link} ${entry.object} restored`),
    );
    expect(w.notices.filter((notice) => /ENOBUFS|could not/.test(notice.message))).toEqual([]);
    expect(htbRate(w.pod, 'tap0_kata')).toBe('10Mbit');
    expect(htbRate(w.pod, 'eth0')).toBe('20Mbit');
    expect(redirects(w.pod, 'eth0', 49152, 'tap0_kata')).not.toEqual([]);
    expect(redirects(w.pod, 'tap0_kata', 49152, 'eth0')).not.toEqual([]);
    await w.stopWatch();
    w.detach();
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it("an undo whose answer was lost is not said left for another tool's filter at its priority in another chain", async () => {
    const w = await watchedPod('tc-chain');
    // Between the repair's look and its send another tool puts an ingress qdisc on eth0, with a filter
    // of its own at vcnet's priority in chain 1: vcnet's ingress qdisc is refused (EEXIST), its
    // filter lands in chain 0 of theirs and is taken away again; that delete's answer is lost (the
    // kernel ran it), so a second look decides whether it is left.
    // Deleted first: the watch reacts after its debounce, and the hook is set before that.
    w.pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'ingress']);
    let lost = 0;
    othersIngressAtRepairLook(
      w.pod,
      'filter add dev eth0 ingress chain 1 prio 49152 protocol ip u32 match u32 0 0 flowid 1:7',
      (requests) => {
        if (lost > 0 || !requests.some((request) => request.type === MessageType.DELTFILTER)) return undefined;
        lost++;
        return { errno: 'ENOBUFS' };
      },
    );
    await until(() => lost > 0 && w.repaired().some((entry) => entry.outcome === 'failed'), 'the repair to fail');
    const failed = w.repaired().find((entry) => entry.outcome === 'failed');
    expect(failed).toMatchObject({ link: 'eth0', object: 'ingress qdisc ffff:' });
    // vcnet's filter is gone from chain 0; theirs in chain 1 stays and is not taken for it.
    const filters = w.pod.tcJson<Array<{ chain?: number; pref: number }>>('filter', 'show', 'dev', 'eth0', 'ingress');
    expect(filters.filter((filter) => filter.chain !== 1)).toEqual([]);
    expect(filters.filter((filter) => filter.chain === 1 && filter.pref === 49152)).not.toEqual([]);
    expect(failed?.message).not.toContain('could not be taken away again');
  });

  it("taking back its filter from another tool's u32 it joined deletes vcnet's node alone, not the priority", async () => {
    const w = await watchedPod('tc-joined');
    // Between the repair's look and its send another tool puts an ingress qdisc on eth0 with a u32
    // at vcnet's priority and protocol in chain 0: vcnet's ingress qdisc is refused (EEXIST), and its
    // redirect, added all the same, becomes a second node of their u32. The repair takes it back.
    w.pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'ingress']);
    othersIngressAtRepairLook(
      w.pod,
      'filter add dev eth0 ingress prio 49152 protocol all u32 match ip dst 10.9.9.9/32 flowid 1:7',
    );
    await until(() => w.repaired().some((entry) => entry.outcome === 'failed'), 'the repair to fail');
    expect(w.repaired().find((entry) => entry.outcome === 'failed')).toMatchObject({
      link: 'eth0',
      object: 'ingress qdisc ffff:',
    });
    // Before the fix the undo deleted prio 49152 whole: their node went with vcnet's.
    const left = w.pod.exec('tc', 'filter show dev eth0 ingress'.split(' '));
    expect(left).toContain('match 0a090909/ffffffff at 16');
    expect(redirects(w.pod, 'eth0', 49152, 'tap0_kata')).toEqual([]);
    expect(w.repaired().find((entry) => entry.outcome === 'failed')?.message).not.toContain(
      'could not be taken away again',
    );
  });

  // The redirect the watch made again is found as attach's is, by its shape: another tool's u32 node
  // that joins it at its priority stays when detach, or gc with the record lost, takes vcnet's away.
  it.each(['detach', 'gc with the record lost'])(
    "%s after a repair deletes vcnet's node alone beside another tool's u32 node that joined it",
    async (how) => {
      const w = await watchedPod(`tc-then-${how.split(' ')[0]}`);
      w.pod.exec('tc', ['filter', 'del', 'dev', 'eth0', 'ingress', 'prio', '49152']);
      await until(() => w.repaired().length > 0, 'the redirect on eth0 to be back');
      expect(w.repaired()).toEqual([
        expect.objectContaining({
          link: 'eth0',
          object: 'filter prio 49152 (redirect to tap0_kata)',
          outcome: 'restored',
        }),
      ]);
      w.pod.exec(
        'tc',
        'filter add dev eth0 ingress prio 49152 protocol all u32 match ip dst 10.9.9.9/32 flowid 1:7'.split(' '),
      );
      await w.stopWatch();
      if (how === 'detach') w.detach();
      else {
        rmSync(join(w.stateDir, w.sandbox), { recursive: true });
        const registry = { VCNET_STATE_REGISTRY: join(w.stateDir, 'registry') };
        const collected = vcnet(['gc', '--netns', w.pod.path, '--state-dir', w.stateDir], registry);
        expect(collected.status, collected.stderr).toBe(0);
      }
      expect(w.pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
      expect(w.pod.exec('tc', 'filter show dev eth0 ingress'.split(' '))).toContain('match 0a090909/ffffffff at 16');
      expect(redirects(w.pod, 'eth0', 49152, 'tap0_kata')).toEqual([]);
      expect(w.pod.exec('tc', 'filter show dev eth0 ingress'.split(' '))).not.toContain('Redirect');
    },
  );

  it("beside two other tools (a clsact's egress filters, a u32 at vcnet's priority in chain 1), repair and detach leave the link as found", async () => {
    const egress = (pod: TestNamespace) => pod.exec('tc', 'filter show dev eth0 egress'.split(' '));
    const w = await watchedPod('tc-two-tools', undefined, (pod) => {
      pod.exec('ip', ['link', 'add', 'mon0', 'type', 'ifb']);
      pod.exec('tc', 'qdisc add dev eth0 clsact'.split(' '));
      pod.exec(
        'tc',
        'filter add dev eth0 egress prio 10 protocol ip u32 match ip dst 10.9.9.9/32 flowid 1:7'.split(' '),
      );
    });
    const egressBefore = egress(w.pod);
    // The second tool comes after attach, at vcnet's priority in another chain of the ingress hook.
    w.pod.exec('tc', [
      ...['filter', 'add', 'dev', 'eth0', 'ingress', 'chain', '1', 'prio', '49152', 'protocol', 'all'],
      ...['u32', 'match', 'ip', 'dst', '10.9.9.8/32', 'action', 'mirred', 'egress', 'mirror', 'dev', 'mon0'],
    ]);
    w.pod.exec('tc', 'filter del dev eth0 ingress chain 0 prio 49152'.split(' '));
    expect(redirects(w.pod, 'eth0', 49152, 'tap0_kata')).toEqual([]);
    await until(() => w.repaired().length > 0, 'the watch to say what it did');
    expect(w.repaired()).toEqual([
      expect.objectContaining({
        link: 'eth0',
        object: 'filter prio 49152 (redirect to tap0_kata)',
        outcome: 'restored',
      }),
    ]);
    expect(redirects(w.pod, 'eth0', 49152, 'tap0_kata')).not.toEqual([]);
    await w.stopWatch();
    w.detach();
    expect(w.pod.exec('tc', 'filter show dev eth0 ingress chain 1'.split(' '))).toContain(
      'Egress Mirror to device mon0',
    );
    w.pod.exec('tc', 'filter del dev eth0 ingress chain 1 prio 49152'.split(' '));
    expect(egress(w.pod)).toBe(egressBefore);
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it("makes the classes deleted under vcnet's htb again: frames are shaped again, neither unlimited nor dropped", async () => {
    const w = await watchedPod(
      'tc6',
      '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 10000000\ntx_rate_limiter_max_rate = 20000000\n',
      // As CNI's plugins make their veths: no transmit queue.
      (pod) => pod.exec('ip', ['link', 'set', 'eth0', 'txqueuelen', '0']),
    );
    // Without its default class the htb sends everything through its direct queue, at any speed.
    await w.stopWatch();
    w.pod.exec('tc', ['class', 'del', 'dev', 'eth0', 'classid', '1:2']);
    sendFromPod(w.pod, '10.200.0.9', 20);
    expect(directPackets(w.pod, 'eth0')).toBeGreaterThanOrEqual(20);
    await w.restart();
    // And both of the tap's, in one burst (1:1 goes only once 1:2 has).
    const batch = join(w.stateDir, 'tc-batch');
    writeFileSync(batch, 'class del dev tap0_kata classid 1:2\nclass del dev tap0_kata classid 1:1\n');
    w.pod.exec('tc', ['-batch', batch]);
    await until(
      () => htbRate(w.pod, 'eth0') === '20Mbit' && htbRate(w.pod, 'tap0_kata') === '10Mbit',
      'the classes to be back',
    );
    await until(() => w.repaired().length >= 2, 'the watch to say what it did');
    expect(w.repaired()).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ link: 'eth0', object: 'htb class 1:2', outcome: 'restored' }),
        expect.objectContaining({ link: 'tap0_kata', object: 'htb classes 1:1, 1:2', outcome: 'restored' }),
      ]),
    );
    // eth0 has no transmit queue (a veth's 0): the class made again queues as attach's did, and drops nothing.
    const direct = directPackets(w.pod, 'eth0');
    sendFromPod(w.pod, '10.200.0.9', 50);
    expect(directPackets(w.pod, 'eth0')).toBe(direct);
    // Counted as the class sends them: on a busy machine some may still be queued when the sender is done.
    // The class (made again just now) also carries what the kernel sends on its own, such as a
    // neighbour solicitation: at least 50.
    await until(() => {
      const stats = defaultClassStats(w.pod, 'eth0');
      return stats.packets >= 50 || stats.dropped > 0;
    }, 'the class to send the 50 datagrams or drop one');
    const stats = defaultClassStats(w.pod, 'eth0');
    expect(stats.dropped).toBe(0);
    expect(stats.packets).toBeGreaterThanOrEqual(50);
    await w.stopWatch();
    w.detach();
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it("sets back the rate of vcnet's htb class that someone changed, and says what it found", async () => {
    const w = await watchedPod('tc10', '[hypervisor.qemu]\ntx_rate_limiter_max_rate = 20000000\n');
    expect(htbRate(w.pod, 'eth0')).toBe('20Mbit');
    w.pod.exec('tc', ['class', 'change', 'dev', 'eth0', 'parent', '1:1', 'classid', '1:2', 'htb', 'rate', '5mbit']);
    expect(htbRate(w.pod, 'eth0')).toBe('5Mbit');
    await until(() => w.repaired().length > 0, 'the watch to say what it found');
    expect(htbRate(w.pod, 'eth0')).toBe('20Mbit');
    expect(w.repaired()).toEqual([
      expect.objectContaining({ link: 'eth0', object: 'htb class 1:2', outcome: 'restored' }),
    ]);
    expect(w.repaired()[0]?.message).toContain('rate 5000000');
    // Its ceil too (htb's own default ceil is the rate: a class changed with `rate` alone has both).
    w.pod.exec('tc', [
      'class',
      'change',
      'dev',
      'eth0',
      'parent',
      '1:',
      'classid',
      '1:1',
      'htb',
      'rate',
      '20mbit',
      'ceil',
      '40mbit',
    ]);
    await until(() => w.repaired().length > 1, 'the watch to set the ceil back');
    expect(w.pod.exec('tc', ['class', 'show', 'dev', 'eth0', 'classid', '1:1'])).toContain('ceil 20Mbit');
    await w.stopWatch();
    w.detach();
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it("leaves another tool's filter at vcnet's priority alone and says what to do, once", async () => {
    const w = await watchedPod('tc3');
    w.pod.exec('tc', ['filter', 'del', 'dev', 'eth0', 'ingress', 'prio', '49152']);
    w.pod.exec('tc', [
      'filter',
      'add',
      'dev',
      'eth0',
      'ingress',
      'prio',
      '49152',
      'protocol',
      'ip',
      'u32',
      'match',
      'u32',
      '0',
      '0',
      'action',
      'mirred',
      'egress',
      'redirect',
      'dev',
      'lo',
    ]);
    await until(() => w.repaired().some((entry) => entry.outcome === 'taken'), 'the watch to find the filter');
    const taken = w.repaired().find((entry) => entry.outcome === 'taken');
    expect(taken).toMatchObject({ link: 'eth0', object: 'filter prio 49152 (redirect to tap0_kata)' });
    expect(taken?.message).toContain(`tc -n ${w.pod.name} filter del dev eth0 ingress prio 49152`);
    // Theirs is there as they made it, and no redirect of vcnet's beside it.
    const filters = w.pod.tcJson<TcFilter[]>('filter', 'show', 'dev', 'eth0', 'ingress');
    expect(redirects(w.pod, 'eth0', 49152, 'lo')).not.toEqual([]);
    expect(filters.length).toBeGreaterThan(0);
    expect(redirects(w.pod, 'eth0', 49152, 'tap0_kata')).toEqual([]);
    // Another tc change elsewhere: checked again, not said again.
    w.pod.exec('tc', ['filter', 'del', 'dev', 'tap0_kata', 'ingress', 'prio', '49152']);
    await until(() => redirects(w.pod, 'tap0_kata', 49152, 'eth0').length > 0, 'the tap redirect to be back');
    expect(w.repaired().filter((entry) => entry.outcome === 'taken')).toHaveLength(1);
    // Once theirs goes, by the command the watch quotes, vcnet's comes back. Pasted in a shell of a
    // fresh namespace, a stand-in for the host: a bare `tc ... dev eth0` acts on (or fails for) the
    // link of that name there, never on the pod's.
    const command = /`(tc [^`]+)`/.exec(taken!.message)?.[1];
    expect(command, taken!.message).toBeDefined();
    const pasted = spawnSync('unshare', ['--net', 'sh', '-c', command!], { encoding: 'utf8' });
    expect(pasted.status, `${command}: ${pasted.stderr}`).toBe(0);
    await until(() => redirects(w.pod, 'eth0', 49152, 'tap0_kata').length > 0, 'the redirect on eth0 to be back');
    await w.stopWatch();
    w.detach();
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it("does not take another tool's u32 node beside vcnet's redirect at its priority for vcnet's filter gone", async () => {
    const w = await watchedPod('tc-beside');
    // A classifier with no action at vcnet's priority and protocol: a second node of vcnet's u32.
    w.pod.exec(
      'tc',
      'filter add dev eth0 ingress prio 49152 protocol all u32 match ip dst 10.9.9.9/32 flowid 1:7'.split(' '),
    );
    // A change the watch repairs, after that one: once it is back, the watch has looked at both.
    w.pod.exec('tc', ['filter', 'del', 'dev', 'tap0_kata', 'ingress', 'prio', '49152']);
    await until(() => redirects(w.pod, 'tap0_kata', 49152, 'eth0').length > 0, 'the tap redirect to be back');
    expect(redirects(w.pod, 'eth0', 49152, 'tap0_kata')).not.toEqual([]);
    expect(w.repaired().filter((entry) => entry.outcome !== 'restored')).toEqual([]);
    await w.stopWatch();
    w.detach();
    expect(w.pod.exec('tc', 'filter show dev eth0 ingress'.split(' '))).toContain('match 0a090909/ffffffff at 16');
  });

  it('does not try again on a timer what a retry cannot change; says it once, and the next tc change checks again', async () => {
    // Another tool's ingress qdisc on eth0: attach puts vcnet's filter in it, and the record says
    // vcnet did not make it. Once it is gone the watch cannot put the filter back (it does not make a
    // qdisc it does not own), and trying again on a timer cannot change that: only a tc change can.
    const w = await watchedPod('tc7', undefined, (pod) => pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']));
    // Each check the watch asks its timer for, counted as it asks (before the pass that found the
    // failure reports it): once the failure is reported, none asked for means none will come.
    const timerTries: number[] = [];
    setTrafficControlRetryTestHook((attempt) => timerTries.push(attempt));
    cleanup.defer(() => setTrafficControlRetryTestHook(undefined));
    w.pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'ingress']);
    await until(() => w.repaired().some((entry) => entry.outcome === 'failed'), 'the watch to find the filter gone');
    expect(w.repaired()).toEqual([
      expect.objectContaining({ link: 'eth0', object: 'filter prio 49152 (redirect to tap0_kata)', outcome: 'failed' }),
    ]);
    expect(w.repaired()[0]).not.toHaveProperty('transient');
    expect(timerTries).toEqual([]);
    // The next tc change checks again: their qdisc back, vcnet's filter goes in it again.
    w.pod.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
    await until(() => redirects(w.pod, 'eth0', 49152, 'tap0_kata').length > 0, 'the redirect on eth0 to be back');
    await w.stopWatch();
    w.detach();
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it("model none: makes again the tap's htb, its ingress redirect to the ifb and the ifb's htb", async () => {
    const w = await watchedPod(
      'tc9',
      '[runtime]\ninternetworking_model = "none"\n[hypervisor.qemu]\nrx_rate_limiter_max_rate = 10000000\ntx_rate_limiter_max_rate = 20000000\n',
    );
    const ifb = w.pod
      .ipJson<Array<{ ifname: string; linkinfo?: { info_kind?: string } }>>('-d', 'link', 'show')
      .find((link) => link.linkinfo?.info_kind === 'ifb')?.ifname;
    expect(ifb).toBeDefined();
    const tc = () => [
      htbRate(w.pod, 'tap0_kata'),
      htbRate(w.pod, String(ifb)),
      redirects(w.pod, 'tap0_kata', 49151, String(ifb)).length,
    ];
    expect(tc()).toEqual(['10Mbit', '20Mbit', 1]);
    const batch = join(w.stateDir, 'tc-batch');
    writeFileSync(batch, `qdisc del dev tap0_kata root\nqdisc del dev ${ifb} root\nqdisc del dev tap0_kata ingress\n`);
    w.pod.exec('tc', ['-batch', batch]);
    expect(tc()).toEqual([undefined, undefined, 0]);
    await until(() => tc().join() === ['10Mbit', '20Mbit', 1].join(), 'the rate limits to be back');
    await until(() => w.repaired().length >= 4, 'the watch to say what it did');
    expect(w.repaired().every((entry) => entry.outcome === 'restored')).toBe(true);
    await w.stopWatch();
    w.detach();
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it("says so when vcnet's ifb of a rate limit is deleted (model none): its redirect drops what the VM sends", async () => {
    const w = await watchedPod(
      'tc8',
      '[runtime]\ninternetworking_model = "none"\n[hypervisor.qemu]\ntx_rate_limiter_max_rate = 20000000\n',
    );
    const ifb = w.pod
      .ipJson<Array<{ ifname: string; link_type?: string; linkinfo?: { info_kind?: string } }>>('-d', 'link', 'show')
      .find((link) => link.linkinfo?.info_kind === 'ifb')?.ifname;
    expect(ifb).toBeDefined();
    w.pod.exec('ip', ['link', 'del', String(ifb)]);
    // The tap's redirect to it is left with no target: tc shows it as "*".
    expect(w.pod.exec('tc', ['filter', 'show', 'dev', 'tap0_kata', 'ingress'])).toContain('Redirect to device *');
    await until(() => w.repaired().length > 0, 'the watch to say what it found');
    expect(w.repaired()).toEqual([expect.objectContaining({ link: ifb, object: `ifb ${ifb}`, outcome: 'failed' })]);
    expect(w.repaired()[0]?.message).toContain('vcnet del-iface');
    await w.stopWatch();
    // Detach takes away the rest (the ifb already gone), and leaves the pod as found.
    w.detach();
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it('puts back at start what was deleted while no watch ran', async () => {
    const w = await watchedPod('tc4');
    await w.stopWatch();
    w.pod.exec('tc', ['qdisc', 'del', 'dev', 'eth0', 'ingress']);
    await w.restart();
    await until(() => redirects(w.pod, 'eth0', 49152, 'tap0_kata').length > 0, 'the redirect on eth0 to be back');
    await w.stopWatch();
    w.detach();
    expect(fingerprint(w.pod)).toEqual(w.before);
  });

  it('does not put back what a detach removes while it watches', async () => {
    const w = await watchedPod('tc5');
    w.detach();
    const ended = await w.watching().ended;
    expect(ended?.name).toBe('SandboxNotFoundError');
    expect(fingerprint(w.pod)).toEqual(w.before);
    expect(w.repaired()).toEqual([]);
  });
});
