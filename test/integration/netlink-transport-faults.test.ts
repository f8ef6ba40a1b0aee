/**
 * The real CLI and CNI plugin whose netlink receives fail, injected with strace (`-e
 * inject=recvfrom:error=...`; vcnet's netlink socket is the only one they read with recvfrom): the
 * error carries the errno the receive failed with, not EIO, and a dump during which the receive
 * failed with ENOBUFS (the socket's queue overflowed) is read to its end and sent again; when that
 * happens on every attempt, it is VCNET_NETLINK_DUMP_OVERRUN, CNI code 11 (try again later).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest, vcnet } from '../helpers/cli.js';
import { VCNET_CNI_PROGRAM, vcnetCniOverPod } from '../helpers/cni.js';
import { fingerprint, makePod } from '../helpers/pod.js';
import { runUnderStrace, straceFaultsSkipReason } from '../helpers/strace.js';

const stateDirectory = stateDirectoryPerTest('vcnet-netlink-faults-');
const skipReason = straceFaultsSkipReason('netlink receive fault tests');

const registry = () => ({ VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry') });

/** `-e inject` for netlink receives: `errno` on the `when`th (strace's syntax: 1, 3, 1+). */
const failReceive = (errno: string, when: string) => [
  '-e',
  'trace=recvfrom',
  '-e',
  `inject=recvfrom:error=${errno}:when=${when}`,
];

/** `vcnet <args> --json --state-dir ...` under strace: its exit status, output and parsed error. */
function vcnetFailing(strace: string[], args: string[]) {
  const result = runUnderStrace(strace, [process.execPath, CLI, ...args, '--json', '--state-dir', stateDirectory()], {
    env: { ...process.env, ...registry() },
  });
  let error: { code?: string; errno?: string; message?: string; hint?: string } | undefined;
  try {
    error = (JSON.parse(result.stdout) as { error?: typeof error }).error;
  } catch {
    error = undefined;
  }
  return { ...result, error };
}

const plain = (args: string[]) => vcnet([...args, '--state-dir', stateDirectory()], registry());

describe.skipIf(skipReason)('netlink receives that fail', () => {
  it('an attach whose first receive fails with ENOMEM names ENOMEM and the call, not EIO; nothing is left', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const attach = vcnetFailing(failReceive('ENOMEM', '1'), ['attach', '--sandbox', 'nm', '--netns', pod.path]);
    expect(attach.stderr).not.toContain('    at ');
    expect(attach.status).toBe(1);
    expect(attach.error).toMatchObject({ code: 'VCNET_NETLINK', errno: 'ENOMEM' });
    expect(attach.error?.message).toMatch(
      /^list links failed: ENOMEM \(no answer from the kernel: receive netlink replies failed: /,
    );
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(join(stateDirectory(), 'nm'))).toBe(false);
  });

  for (const when of ['1', '2']) {
    it(`an attach whose dump meets ENOBUFS (receive ${when}) reads it to the end, sends it again and attaches`, () => {
      const { pod } = makePod();
      const before = fingerprint(pod);
      const attach = vcnetFailing(failReceive('ENOBUFS', when), ['attach', '--sandbox', 'nb', '--netns', pod.path]);
      expect(attach.stderr).toBe('');
      expect(attach.status).toBe(0);
      expect(pod.exec('tc', ['filter', 'show', 'dev', 'eth0', 'ingress'])).toContain('tap0_kata');
      // The detach's own dumps meet the same fault and are sent again too.
      const detach = vcnetFailing(failReceive('ENOBUFS', when), ['detach', '--sandbox', 'nb']);
      expect(detach.stderr).toBe('');
      expect(detach.status).toBe(0);
      expect(fingerprint(pod)).toEqual(before);
    });
  }

  it('an attach whose dump meets ENOBUFS on every receive: VCNET_NETLINK_DUMP_OVERRUN after 5 attempts, nothing made', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const attach = vcnetFailing(failReceive('ENOBUFS', '1+'), ['attach', '--sandbox', 'of', '--netns', pod.path]);
    expect(attach.stderr).not.toContain('    at ');
    expect(attach.status).toBe(1);
    expect(attach.error).toMatchObject({ code: 'VCNET_NETLINK_DUMP_OVERRUN', errno: 'ENOBUFS' });
    expect(attach.error?.message).toBe(
      "list links failed: ENOBUFS (the socket's receive queue overflowed during each of 5 attempts)",
    );
    expect(attach.error?.hint).toContain('run the command again');
    expect(fingerprint(pod)).toEqual(before);
    expect(plain(['attach', '--sandbox', 'of', '--netns', pod.path]).status).toBe(0);
    expect(plain(['detach', '--sandbox', 'of']).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('vcnet-cni ADD whose dumps overrun on every receive answers code 11 (try again later); the retried ADD attaches', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const { config, environment } = vcnetCniOverPod({
      name: 'vcnet-netlink-faults',
      pod,
      containerId: 'ctr-overrun',
      stateDir: join(stateDirectory(), 'cni'),
      registry: registry().VCNET_STATE_REGISTRY,
    });
    const plugin = (command: string, strace?: string[]) =>
      runUnderStrace(strace, [process.execPath, VCNET_CNI_PROGRAM], { input: config, env: environment(command) });
    const add = plugin('ADD', failReceive('ENOBUFS', '1+'));
    expect(add.stderr).not.toContain('    at ');
    expect(add.status).toBe(1);
    const reply = JSON.parse(add.stdout) as { code: number; msg: string; details: string };
    expect(reply.code).toBe(11);
    expect(reply.details).toMatch(/^VCNET_NETLINK_DUMP_OVERRUN \(errno ENOBUFS/);
    expect(fingerprint(pod)).toEqual(before);
    expect(plugin('ADD').status).toBe(0);
    expect(plugin('DEL').status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});
