/**
 * One netlink socket per namespace per operation (issue 10): each command checks the pod namespace
 * by identity (device, inode and cookie) and then works through it, and the cookie is read on the
 * very socket the work goes through, not on a throwaway one. Counted with strace: the socket(2)
 * calls for AF_NETLINK and the getsockopt(2) calls for SO_NETNS_COOKIE each program made, which no
 * timing changes.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest } from '../helpers/cli.js';
import { VCNET_CNI_PROGRAM, vcnetCniOverPod } from '../helpers/cni.js';
import { makePod } from '../helpers/pod.js';
import { straceFaultsSkipReason } from '../helpers/strace.js';

const skip = straceFaultsSkipReason('netlink socket counts');
const stateDirectory = stateDirectoryPerTest('vcnet-sockets-');

interface Counted {
  status: number;
  stdout: string;
  stderr: string;
  /** socket(AF_NETLINK, ...) calls, any protocol. */
  netlinkSockets: number;
  /** getsockopt(..., SO_NETNS_COOKIE, ...) calls. */
  cookieReads: number;
}

/** Runs `node program args` under strace and counts what it opened. */
function counted(program: string, args: string[], options: { input?: string; env?: Record<string, string> } = {}) {
  const directory = mkdtempSync(join(tmpdir(), 'vcnet-strace-'));
  const log = join(directory, 'trace');
  try {
    const result = spawnSync(
      'strace',
      ['-f', '-qq', '-e', 'trace=socket,getsockopt', '-o', log, process.execPath, program, ...args],
      {
        encoding: 'utf8',
        timeout: 60_000,
        ...(options.input === undefined ? {} : { input: options.input }),
        env: { ...process.env, ...options.env },
      },
    );
    const trace = readFileSync(log, 'utf8');
    return {
      status: result.status ?? -1,
      stdout: result.stdout,
      stderr: result.stderr,
      netlinkSockets: trace.match(/socket\(AF_NETLINK\b/g)?.length ?? 0,
      cookieReads: trace.match(/getsockopt\(\d+, SOL_SOCKET, SO_NETNS_COOKIE\b/g)?.length ?? 0,
    } satisfies Counted;
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

/** What each command must have done: one socket in the pod namespace, its cookie read once, on it. */
function expectOneSocket(label: string, run: Counted): void {
  expect(run.status, `${label}: ${run.stderr}${run.stdout}`).toBe(0);
  expect({ label, netlinkSockets: run.netlinkSockets, cookieReads: run.cookieReads }).toEqual({
    label,
    netlinkSockets: 1,
    cookieReads: 1,
  });
}

describe.skipIf(skip !== undefined)('netlink sockets per operation', () => {
  it('vcnet attach, add-iface, del-iface and detach each open one netlink socket and read the cookie once', () => {
    const { pod, node } = makePod();
    const state = ['--state-dir', stateDirectory()];
    expectOneSocket('attach', counted(CLI, ['attach', '--sandbox', 'sb1', '--netns', pod.path, ...state]));
    // A second link for add-iface, made after the attach (so it is not attached yet).
    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth9', 'netns', pod.name]);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth9']);
    pod.exec('ip', ['link', 'set', 'eth9', 'up']);
    const file = join(stateDirectory(), 'eth9.json');
    writeFileSync(file, JSON.stringify({ name: 'eth9', type: 'virtual' }));
    expectOneSocket('add-iface', counted(CLI, ['add-iface', 'sb1', file, ...state]));
    expectOneSocket('del-iface', counted(CLI, ['del-iface', 'sb1', file, ...state]));
    expectOneSocket('detach', counted(CLI, ['detach', '--sandbox', 'sb1', ...state]));
    expectOneSocket('scan', counted(CLI, ['scan', '--netns', pod.path]));
  });

  it('vcnet-cni ADD, CHECK and DEL each open one netlink socket and read the cookie once', () => {
    const { pod } = makePod();
    const plugin = vcnetCniOverPod({
      name: 'vcnet-sockets',
      pod,
      containerId: 'ctr-sockets',
      stateDir: join(stateDirectory(), 'cni'),
      registry: join(stateDirectory(), 'registry'),
    });
    const add = counted(VCNET_CNI_PROGRAM, [], { input: plugin.config, env: plugin.environment('ADD') });
    expectOneSocket('CNI ADD', add);
    // CHECK and DEL get ADD's result as prevResult, as libcni gives them the cached one.
    const config = JSON.stringify({ ...JSON.parse(plugin.config), prevResult: JSON.parse(add.stdout) });
    for (const command of ['CHECK', 'DEL'])
      expectOneSocket(
        `CNI ${command}`,
        counted(VCNET_CNI_PROGRAM, [], { input: config, env: plugin.environment(command) }),
      );
  });

  it.each([
    ['not JSON', () => 'not json {'],
    // Its namespace (cookie too) still readable: DEL compares the cookie, on the socket gc then works through.
    [
      'damaged after its namespace',
      (text: string) => JSON.stringify({ ...JSON.parse(text), network: { endpoints: [] } }),
    ],
  ])('vcnet-cni DEL of a record it cannot read (%s) opens one netlink socket in the pod namespace', (_case, damage) => {
    const { pod } = makePod();
    const stateDir = join(stateDirectory(), 'cni');
    const plugin = vcnetCniOverPod({
      name: 'vcnet-sockets',
      pod,
      containerId: 'ctr-unreadable',
      stateDir,
      registry: join(stateDirectory(), 'registry'),
    });
    const add = plugin.run('ADD');
    expect(add.status, add.stderr + add.stdout).toBe(0);
    // Damaged: DEL sets it aside and removes what no record owns in CNI_NETNS, as `vcnet gc` would.
    const record = join(stateDir, 'ctr-unreadable', 'interfaces', 'eth0', 'state.json');
    writeFileSync(record, damage(readFileSync(record, 'utf8')));
    const config = JSON.stringify({ ...JSON.parse(plugin.config), prevResult: JSON.parse(add.stdout) });
    const del = counted(VCNET_CNI_PROGRAM, [], { input: config, env: plugin.environment('DEL') });
    expect(del.stderr).toContain('set aside the unreadable record');
    expect(del.stderr).toContain('tap0_kata');
    expectOneSocket('CNI DEL of an unreadable record', del);
  });

  // A look only: list reads each namespace's cookie on a probe socket. It made one per record, so a
  // pod with a vcnet-cni record per interface got as many sockets as it has interfaces.
  it('vcnet list reads the cookie of a namespace once, however many records name it', () => {
    const { pod } = makePod();
    const stateDir = join(stateDirectory(), 'cni');
    const plugin = vcnetCniOverPod({
      name: 'vcnet-sockets',
      pod,
      containerId: 'ctr-a',
      stateDir,
      registry: join(stateDirectory(), 'registry'),
    });
    const add = plugin.run('ADD');
    expect(add.status, add.stderr + add.stdout).toBe(0);
    // Two more records naming the same namespace (list only reads them), as a pod with three interfaces has.
    const recordOf = (containerId: string) => join(stateDir, containerId, 'interfaces', 'eth0', 'state.json');
    const record = JSON.parse(readFileSync(recordOf('ctr-a'), 'utf8'));
    for (const containerId of ['ctr-b', 'ctr-c']) {
      mkdirSync(dirname(recordOf(containerId)), { recursive: true });
      writeFileSync(recordOf(containerId), JSON.stringify({ ...record, id: containerId }));
    }
    const list = counted(CLI, ['list', '--json', '--state-dir', stateDir]);
    expect(list.status, list.stderr).toBe(0);
    const listed = JSON.parse(list.stdout) as Array<{ containerId: string; state: string }>;
    expect(listed.map(({ containerId, state }) => ({ containerId, state }))).toEqual(
      ['ctr-a', 'ctr-b', 'ctr-c'].map((containerId) => ({ containerId, state: 'attached' })),
    );

    expectOneSocket('list of three records naming one namespace', list);
  });
});
