/**
 * A network namespace lives while any socket made in it is open, and a tap's fd keeps the tap's
 * namespace: a process in the root namespace that entered it for a socket and came back (a CNI
 * plugin, a runtime, a monitoring agent), or a VMM handed the tap's fd, holds it with no
 * /proc/PID/ns/net, mount or nsfs fd of it anywhere. gc, list and detach must find such a holder
 * (SIOCGSKNS, TUNGETDEVNETNS on the fd duplicated with pidfd_getfd) and not take the namespace
 * for gone while what attach made still lives there.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import { readSandbox } from '../../../src/network/recorded-network.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { listSandboxes } from '../../../src/sandbox/list.js';
import { CLI, vcnet } from '../../helpers/cli.js';
import { VCNET_CNI_PROGRAM, vcnetCniOverPod } from '../../helpers/cni.js';
import { cleanupNamespaces, type TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod, tcfilterConfig } from '../../helpers/pod.js';
import { runUnderStrace, straceFaultsSkipReason } from '../../helpers/strace.js';

const SHIM = resolve('build/Release/vcnet_native.node');

let stateDir: string;
const holders: ChildProcess[] = [];
/** Files a test bind-mounted a held namespace on (pinThroughHolder): unmounted before the holders go. */
const pins: string[] = [];

beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'vcnet-socket-held-'));
});

afterEach(async () => {
  for (const pin of pins.splice(0)) spawnSync('umount', [pin]);
  // The holder goes first: the namespace it keeps (and the pod's veth peer in it) goes with it.
  await Promise.all(holders.splice(0).map(stopHolder));
  cleanupNamespaces();
  rmSync(stateDir, { recursive: true, force: true });
});

function stopHolder(holder: ChildProcess): Promise<void> {
  if (holder.exitCode !== null || holder.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    holder.once('exit', () => done());
    holder.kill('SIGKILL');
  });
}

/**
 * A process in this (root) namespace that keeps one fd made inside `pod`: a netlink socket (the
 * shim's openNetlink: setns there, socket, setns back) or a tap (createTun made in it, not
 * persistent, so the fd alone keeps it). Resolves with its pid and that fd once it holds it.
 */
async function holdFromOutside(pod: TestNamespace, kind: 'socket' | 'tap'): Promise<{ pid: number; fd: number }> {
  const make =
    kind === 'socket'
      ? 'shim.openNetlink(process.argv[1], 0, 0)'
      : "shim.createTun(process.argv[1], 's32tap0', { tap: true, vnetHdr: true }).fds[0]";
  const holder = spawn(
    process.execPath,
    [
      '-e',
      `const shim = require(${JSON.stringify(SHIM)}); const fd = ${make}; process.stdout.write(fd + '\\n'); setInterval(() => {}, 1 << 30);`,
      pod.path,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  holders.push(holder);
  const fd = await new Promise<number>((done, fail) => {
    holder.stdout?.once('data', (data: Buffer) => done(Number(String(data).trim())));
    holder.once('exit', (code) => fail(new Error(`the holder exited (${code}) before it held a ${kind}`)));
  });
  return { pid: holder.pid!, fd };
}

/** The links of the namespace `pid`'s socket or tap `fd` keeps alive (no path of it is left to enter). */
function linksThroughHolder(pid: number, fd: number): string[] {
  const out = runThroughHolder(pid, fd, ['ip', '-j', 'link', 'show']);
  return (JSON.parse(out) as Array<{ ifname: string }>).map((link) => link.ifname).sort();
}

/** The qdisc kinds on `device` in the namespace `pid`'s socket or tap `fd` keeps alive. */
function qdiscsThroughHolder(pid: number, fd: number, device: string): string[] {
  const out = runThroughHolder(pid, fd, ['tc', '-j', 'qdisc', 'show', 'dev', device]);
  return (JSON.parse(out) as Array<{ kind: string }>).map((qdisc) => qdisc.kind).sort();
}

/** `command`'s output, run inside the namespace `pid`'s socket or tap `fd` keeps alive. */
function runThroughHolder(pid: number, fd: number, command: string[]): string {
  // nsenter cannot enter through a socket: the look runs in the holder's own process instead.
  return execFileSync(
    process.execPath,
    [
      '-e',
      `const shim = require(${JSON.stringify(SHIM)});
       const { pidfdOpen, pidfdGetfd, socketNamespace, tunNamespace } = shim;
       const pidfd = pidfdOpen(${pid}); const copy = pidfdGetfd(pidfd, ${fd});
       let ns; try { ns = socketNamespace(copy); } catch { ns = tunNamespace(copy); }
       // The copy is close-on-exec: nsenter opens it through this process, which waits for it.
       require('node:child_process').execFileSync('nsenter', ['--net=/proc/' + process.pid + '/fd/' + ns, ...${JSON.stringify(command)}], { stdio: ['ignore', 1, 2] });`,
    ],
    { encoding: 'utf8' },
  );
}

/**
 * Pins the namespace `pid`'s socket or tap `fd` keeps alive with a bind mount on `file`, as the one
 * who holds it can (its namespace's nsfs fd, SIOCGSKNS or TUNGETDEVNETNS, bind-mounted on a file).
 */
function pinThroughHolder(pid: number, fd: number, file: string): void {
  writeFileSync(file, '');
  runThroughHolderNamespaceFd(pid, fd, `execFileSync('mount', ['--bind', nsPath, ${JSON.stringify(file)}])`);
  pins.push(file);
}

/** Runs `statement` in a process that holds the namespace of `pid`'s socket or tap `fd` as `nsPath`. */
function runThroughHolderNamespaceFd(pid: number, fd: number, statement: string): void {
  execFileSync(process.execPath, [
    '-e',
    `const { execFileSync } = require('node:child_process');
     const shim = require(${JSON.stringify(SHIM)});
     const copy = shim.pidfdGetfd(shim.pidfdOpen(${pid}), ${fd});
     let ns; try { ns = shim.socketNamespace(copy); } catch { ns = shim.tunNamespace(copy); }
     const nsPath = '/proc/' + process.pid + '/fd/' + ns;
     ${statement};`,
  ]);
}

it('a namespace only a socket of a process outside it keeps: gc keeps the record, list and detach find it there', async () => {
  const { pod } = makePod();
  await attachSandbox('sock', tcfilterConfig(pod), { stateDirectory: stateDir });
  const { pid, fd } = await holdFromOutside(pod, 'socket');
  expect(readlinkSync(`/proc/${pid}/fd/${fd}`)).toMatch(/^socket:\[/);
  pod.delete();
  const heldAt = `/proc/${pid}/fd/${fd}`;

  const report = await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
  expect(report.failures).toEqual([]);
  // The namespace lives (its tap, its filters): the record that tells how to undo them stays.
  expect(report.removed).toEqual([]);
  expect(readSandbox('sock', stateDir)).toBeDefined();
  expect(report.heldOutside).toEqual([expect.objectContaining({ namespacePath: pod.path, heldAt, pid })]);

  const [listed] = await listSandboxes({ stateDirectory: stateDir });
  expect(listed).toMatchObject({ id: 'sock', state: 'attached', namespaceHeldAt: heldAt });
  expect(listed?.detail).toContain(`(a socket made in it that process ${pid}, outside it, holds`);

  const result = await detachSandbox('sock', { stateDirectory: stateDir });
  expect(result.namespaceGone).toBeUndefined();
  expect(result).toMatchObject({ found: true, namespaceHeldAt: heldAt, heldBy: pid });
  expect(result.report?.undone).toBeGreaterThan(0);
  expect(readSandbox('sock', stateDir)).toBeUndefined();
  expect(linksThroughHolder(pid, fd)).toEqual(['eth0', 'lo']);
});

it('a namespace only a tap fd of a process outside it keeps (a VMM handed the fd): found by TUNGETDEVNETNS', async () => {
  const { pod } = makePod();
  await attachSandbox('tapheld', tcfilterConfig(pod), { stateDirectory: stateDir });
  const { pid, fd } = await holdFromOutside(pod, 'tap');
  expect(readlinkSync(`/proc/${pid}/fd/${fd}`)).toBe('/dev/net/tun');
  pod.delete();
  const heldAt = `/proc/${pid}/fd/${fd}`;

  const report = await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
  expect(report.removed).toEqual([]);
  expect(readSandbox('tapheld', stateDir)).toBeDefined();

  const result = await detachSandbox('tapheld', { stateDirectory: stateDir });
  expect(result).toMatchObject({ found: true, namespaceHeldAt: heldAt, heldBy: pid });
  expect(linksThroughHolder(pid, fd)).toEqual(['eth0', 'lo', 's32tap0']);
});

it('vcnet gc, list and detach say where such a namespace is held', async () => {
  const { pod } = makePod();
  const env = { VCNET_STATE_REGISTRY: join(stateDir, 'registry') };
  const attach = vcnet(['attach', '--sandbox', 'cli-sock', '--netns', pod.path, '--state-dir', stateDir], env);
  expect(attach.status, attach.stderr).toBe(0);
  const { pid, fd } = await holdFromOutside(pod, 'socket');
  pod.delete();
  const heldAt = `/proc/${pid}/fd/${fd}`;

  const gc = vcnet(['gc', '--state-dir', stateDir, '--netns', pod.path], env);
  expect(gc.status, gc.stderr).toBe(0);
  expect(gc.stderr).toContain(`process ${pid} keeps its namespace alive through a socket made in it (${heldAt})`);
  expect(`${gc.stdout}${gc.stderr}`).not.toContain('exists nowhere');

  const list = vcnet(['list', '--state-dir', stateDir, '--json'], env);
  expect(list.status, list.stderr).toBe(0);
  expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ id: 'cli-sock', namespaceHeldAt: heldAt })]);

  const planned = vcnet(['detach', '--dry-run', '--sandbox', 'cli-sock', '--state-dir', stateDir], env);
  expect(planned.status, planned.stderr).toBe(0);
  expect(planned.stdout).toContain(
    `only by the socket ${heldAt} (a process outside it holds it open), which nsenter cannot enter`,
  );

  const detach = vcnet(['detach', '--sandbox', 'cli-sock', '--state-dir', stateDir], env);
  expect(detach.status, detach.stderr).toBe(0);
  expect(detach.stdout).toContain(`through ${heldAt} (process ${pid} still holds a socket made in it`);
  expect(linksThroughHolder(pid, fd)).toEqual(['eth0', 'lo']);
});

// macvtap's detach quotes commands that make the pod's address primary again (plan-detach.ts
// secondaryComebacks). nsenter cannot enter a namespace through a socket (opening the socket's
// /proc/PID/fd/N fails, ENXIO), and no other shell tool reaches it: the notice says so and how to
// pin it, and its commands, run in the pinned namespace, do what it says.
it('the commands detach quotes for a namespace only a socket keeps are not nsenter through that socket, and work once it is pinned', async () => {
  const { pod } = makePod();
  const attach = vcnet([
    'attach',
    '--sandbox',
    'sock-quoted',
    '--netns',
    pod.path,
    '--model',
    'macvtap',
    '--state-dir',
    stateDir,
  ]);
  expect(attach.status, attach.stderr).toBe(0);
  // Added while attached: the pod's own address comes back secondary to it.
  pod.exec('ip', ['addr', 'add', '10.200.0.50/24', 'dev', 'eth0']);
  const { pid, fd } = await holdFromOutside(pod, 'socket');
  pod.delete();
  const heldAt = `/proc/${pid}/fd/${fd}`;

  const detach = vcnet(['detach', '--sandbox', 'sock-quoted', '--state-dir', stateDir]);
  expect(detach.status, detach.stderr).toBe(0);
  const notice = detach.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => String((JSON.parse(line) as { msg: unknown }).msg))
    .find((message) => message.includes('comes back secondary'));
  expect(notice, detach.stderr).toBeDefined();
  expect(notice).not.toContain(`--net=${heldAt}`);
  expect(notice).toContain(
    `no shell command can enter the namespace now: only the socket ${heldAt} of process ${pid} holds it`,
  );
  const command = /`([^`]+)`/.exec(notice!)?.[1];
  expect(command, notice).toMatch(/^nsenter --net=PATH /);

  // Pinned as the notice says (its nsfs fd bind-mounted on a file), the command runs there as quoted.
  const pin = join(stateDir, 'pinned-netns');
  pinThroughHolder(pid, fd, pin);
  const pasted = spawnSync('sh', ['-c', command!.replaceAll('--net=PATH', `--net=${pin}`)], { encoding: 'utf8' });
  expect(pasted.status, `${command}: ${pasted.stderr}`).toBe(0);
  const shown = execFileSync('nsenter', [`--net=${pin}`, 'ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0'], {
    encoding: 'utf8',
  });
  const addresses = (
    JSON.parse(shown) as Array<{ addr_info: Array<{ local: string; secondary?: boolean }> }>
  )[0]!.addr_info.map((info) => `${info.local}${info.secondary ? ' secondary' : ''}`);
  expect(addresses).toEqual(['10.200.0.2', '10.200.0.50 secondary']);
});

// add-iface reaches such a namespace through the socket too (the pod's path is gone, its VM may
// still run): a refusal's hint quotes an ip command, which must not be nsenter through the socket.
it('the command an add-iface refusal quotes for a namespace only a socket keeps is not nsenter through that socket, and works once it is pinned', async () => {
  const { pod } = makePod();
  const attach = vcnet(['attach', '--sandbox', 'sock-add', '--netns', pod.path, '--state-dir', stateDir]);
  expect(attach.status, attach.stderr).toBe(0);
  pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7-peer']);
  pod.exec('ip', ['link', 'set', 'eth7', 'up']);
  pod.exec('ip', ['addr', 'add', '10.207.0.2/24', 'dev', 'eth7']);
  const { pid, fd } = await holdFromOutside(pod, 'socket');
  pod.delete();
  const heldAt = `/proc/${pid}/fd/${fd}`;

  const request = join(stateDir, 'eth7.json');
  writeFileSync(request, JSON.stringify({ name: 'eth7', mtu: 1600 }));
  const refused = vcnet(['add-iface', 'sock-add', request, '--state-dir', stateDir]);
  expect(refused.status, refused.stderr).not.toBe(0);
  expect(refused.stderr).not.toContain(`--net=${heldAt}`);
  expect(refused.stderr).toContain(
    `no shell command can enter the namespace now: only the socket ${heldAt} of process ${pid} holds it`,
  );
  const command = /`(nsenter --net=PATH ip link set eth7 mtu 1600)`/.exec(refused.stderr)?.[1];
  expect(command, refused.stderr).toBeDefined();

  const pin = join(stateDir, 'pinned-netns');
  pinThroughHolder(pid, fd, pin);
  const pasted = spawnSync('sh', ['-c', command!.replaceAll('--net=PATH', `--net=${pin}`)], { encoding: 'utf8' });
  expect(pasted.status, `${command}: ${pasted.stderr}`).toBe(0);
  const shown = execFileSync('nsenter', [`--net=${pin}`, 'ip', '-j', 'link', 'show', 'dev', 'eth7'], {
    encoding: 'utf8',
  });
  expect((JSON.parse(shown) as Array<{ mtu: number }>)[0]!.mtu).toBe(1600);
});

// gc takes such a socket's /proc/PID/fd/N as --netns (it reaches the namespace, as list says where
// it is held): the commands it quotes for what it leaves there must not be nsenter through the socket.
it('the commands gc quotes for a namespace named by a socket that keeps it (--netns /proc/PID/fd/N) are not nsenter through that socket, and work once it is pinned', async () => {
  const { pod } = makePod();
  // A tenant's link in vcnet's group and an htb of a rate limit's shape: gc leaves both, saying how to remove them.
  pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7-peer']);
  pod.exec('ip', ['link', 'set', 'eth7-peer', 'group', String(0x7663)]);
  pod.exec('tc', 'qdisc add dev eth7 root handle 1: htb default 2'.split(' '));
  pod.exec('tc', 'class add dev eth7 parent 1: classid 1:1 htb rate 10mbit ceil 10mbit'.split(' '));
  pod.exec('tc', 'class add dev eth7 parent 1:1 classid 1:2 htb rate 10mbit ceil 10mbit'.split(' '));
  const { pid, fd } = await holdFromOutside(pod, 'socket');
  pod.delete();
  const heldAt = `/proc/${pid}/fd/${fd}`;

  const gc = vcnet(['gc', '--netns', heldAt, '--state-dir', stateDir, '--json', '--dry-run'], {
    VCNET_STATE_REGISTRY: join(stateDir, 'registry'),
  });
  expect(gc.status, gc.stderr).toBe(0);
  const leftAlone = (JSON.parse(gc.stdout) as { leftAlone: Array<{ kind: string; name: string; detail: string }> })
    .leftAlone;
  const htb = leftAlone.find((item) => item.kind === 'qdisc' && item.name === 'eth7')?.detail;
  const grouped = leftAlone.find((item) => item.kind === 'link' && item.name === 'eth7-peer')?.detail;
  for (const detail of [htb, grouped]) {
    expect(detail, gc.stdout).toBeDefined();
    expect(detail).not.toContain(`--net=${heldAt}`);
    expect(detail).toContain(
      `no shell command can enter the namespace now: only the socket ${heldAt} of process ${pid} holds it`,
    );
  }
  const removeHtb = /`(nsenter --net=PATH tc qdisc del dev eth7 root handle 1:)` removes it/.exec(htb!)?.[1];
  const ungroup = /`(nsenter --net=PATH ip link set dev eth7-peer group default)`/.exec(grouped!)?.[1];
  expect(removeHtb, htb).toBeDefined();
  expect(ungroup, grouped).toBeDefined();

  const pin = join(stateDir, 'pinned-netns');
  pinThroughHolder(pid, fd, pin);
  for (const command of [removeHtb!, ungroup!]) {
    const pasted = spawnSync('sh', ['-c', command.replaceAll('--net=PATH', `--net=${pin}`)], { encoding: 'utf8' });
    expect(pasted.status, `${command}: ${pasted.stderr}`).toBe(0);
  }
  expect(qdiscsThroughHolder(pid, fd, 'eth7')).not.toContain('htb');
  const peer = execFileSync('nsenter', [`--net=${pin}`, 'ip', '-j', '-d', 'link', 'show', 'dev', 'eth7-peer'], {
    encoding: 'utf8',
  });
  expect((JSON.parse(peer) as Array<{ group: string }>)[0]!.group).toBe('default');
});

it('a kernel without pidfd_getfd (Linux 5.6; ENOSYS injected by strace): gc cannot tell, keeps the record and says why', async (context) => {
  if (straceFaultsSkipReason('the missing-pidfd_getfd test')) return context.skip();
  const { pod } = makePod();
  await attachSandbox('old-kernel', tcfilterConfig(pod), { stateDirectory: stateDir });
  await holdFromOutside(pod, 'socket');
  pod.delete();
  const gc = runUnderStrace(
    ['-e', 'trace=pidfd_getfd', '-e', 'inject=pidfd_getfd:error=ENOSYS'],
    [process.execPath, CLI, 'gc', '--state-dir', stateDir, '--netns', pod.path, '--json'],
  );
  expect(gc.status, gc.stderr).toBe(0);
  const report = JSON.parse(gc.stdout) as { removed: unknown[]; skipped: Array<Record<string, unknown>> };
  expect(report.removed).toEqual([]);
  expect(report.skipped).toEqual([
    expect.objectContaining({
      namespaceUnseen: true,
      reason: expect.stringContaining('this kernel lacks pidfd_getfd (Linux 5.6), so the sockets and taps'),
    }),
  ]);
  expect(readSandbox('old-kernel', stateDir)).toBeDefined();
});

it('vcnet-cni DEL of a pod whose namespace only a socket of a process outside it keeps: undone through that socket', async () => {
  const { pod } = makePod();
  const plugin = vcnetCniOverPod({
    name: 'held-by-socket',
    pod,
    containerId: 'ctr-sock',
    stateDir: join(stateDir, 'cni'),
    registry: join(stateDir, 'registry'),
  });
  const add = plugin.run('ADD');
  expect(add.status, add.stderr + add.stdout).toBe(0);
  const { pid, fd } = await holdFromOutside(pod, 'socket');
  // The runtime removed the namespace's mount (CNI_NETNS names nothing now); the socket keeps it.
  pod.delete();
  expect(linksThroughHolder(pid, fd)).toEqual(['eth0', 'lo', 'tap0_kata']);
  expect(qdiscsThroughHolder(pid, fd, 'eth0')).toContain('ingress');

  const del = plugin.run('DEL');
  expect(del.status, del.stderr + del.stdout).toBe(0);
  expect(del.stderr).toContain(`still holds a socket made in that namespace open (/proc/${pid}/fd/${fd})`);
  expect(linksThroughHolder(pid, fd)).toEqual(['eth0', 'lo']);
  // The redirect's ingress qdisc went too: eth0 is as the interface plugin left it.
  expect(qdiscsThroughHolder(pid, fd, 'eth0')).not.toContain('ingress');
  // The record went with the plumbing: a second DEL (runtimes retry) finds nothing and succeeds.
  const again = plugin.run('DEL');
  expect(again.status, again.stderr + again.stdout).toBe(0);
  expect(readdirOrEmpty(join(stateDir, 'cni', 'ctr-sock'))).toEqual([]);
});

/** A directory's entries, none when it is gone. */
function readdirOrEmpty(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

for (const kind of ['socket', 'tap'] as const) {
  it(`a ${kind} fd of another process given as --netns or CNI_NETNS is refused, naming the field and what is accepted`, async () => {
    const { pod } = makePod();
    const { pid, fd } = await holdFromOutside(pod, kind);
    const given = `/proc/${pid}/fd/${fd}`;
    const what = kind === 'socket' ? 'a socket' : 'a tun/tap fd';
    const before = fingerprint(pod);

    const attach = vcnet(['attach', '--sandbox', `given-${kind}`, '--netns', given, '--state-dir', stateDir], {
      VCNET_STATE_REGISTRY: join(stateDir, 'registry'),
    });
    expect(attach.status).not.toBe(0);
    expect(attach.stderr).toContain(
      `--netns "${given}": ${what} of process ${pid}, not a network namespace (accepted: the path of a network namespace, such as /var/run/netns/NAME or /proc/PID/ns/net)`,
    );

    const plugin = vcnetCniOverPod({
      name: 'given-held',
      pod,
      containerId: `ctr-given-${kind}`,
      stateDir: join(stateDir, 'cni'),
      registry: join(stateDir, 'registry'),
    });
    const add = spawnSync(process.execPath, [VCNET_CNI_PROGRAM], {
      input: plugin.config,
      encoding: 'utf8',
      env: { ...plugin.environment('ADD'), CNI_NETNS: given },
    });
    expect(add.status).not.toBe(0);
    const reply = JSON.parse(add.stdout) as { code: number; msg: string; details?: string };
    // 4, invalid environment variables, as for any CNI_NETNS that is not a namespace.
    expect(reply.code).toBe(4);
    expect(`${reply.msg} ${reply.details ?? ''}`).toContain('CNI_NETNS');
    expect(`${reply.msg} ${reply.details ?? ''}`).toContain(given);
    expect(`${reply.msg} ${reply.details ?? ''}`).toContain(`${what} of process ${pid}`);

    await expect(
      attachSandbox(`lib-${kind}`, { ...tcfilterConfig(pod), namespacePath: given }, { stateDirectory: stateDir }),
    ).rejects.toThrow(`namespacePath "${given}": ${what} of process ${pid}, not a network namespace`);

    // A look changes and records nothing: scan reaches the namespace that fd belongs to.
    const scan = vcnet(['scan', '--netns', given, '--json']);
    expect(scan.status, scan.stderr).toBe(0);
    expect((JSON.parse(scan.stdout) as Array<{ name: string }>).map((entry) => entry.name)).toContain('eth0');

    // Nothing was made in the namespace, nothing recorded.
    expect(fingerprint(pod)).toEqual(before);
    expect(readdirOrEmpty(stateDir).filter((entry) => entry !== 'registry' && entry !== 'cni')).toEqual([]);
    expect(readdirOrEmpty(join(stateDir, 'cni', `ctr-given-${kind}`))).toEqual([]);
  });
}
