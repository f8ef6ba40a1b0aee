/**
 * The commands vcnet prints for the reader to paste quote what the shell would split or run: a
 * namespace or state directory path with a space and a quote comes back as one word.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
import { interfaceFromJson } from '../../src/agent/kata-network-json.js';
import { InvalidInputError, unreadableFileHint } from '../../src/errors.js';
import { TC_H_ROOT } from '../../src/netlink/codec/tc/message.js';
import { isOwnProcessPath } from '../../src/netns/namespace-holders.js';
import { RecordedIdentityDamagedError } from '../../src/netns/namespace-identity.js';
import { commandOf } from '../../src/network/plan/commands.js';
import { LinkNameTakenError, VCNET_LINK_GROUP } from '../../src/network/plan/plan-attach.js';
import { stateDirectoryFlag } from '../../src/network/state/default-directories.js';
import { resolveAddInterfaceRequest } from '../../src/sandbox/add-interface-request.js';
import { macChangeNotice } from '../../src/sandbox/sandbox-watch.js';
import { commandIn } from '../../src/shell-word.js';
import { info, link } from './network/fixtures.js';

const AWKWARD = "/tmp/s16qa/it's a pod";

/** The words `sh` splits `command` into. */
function wordsOf(command: string): string[] {
  const out = execFileSync('sh', ['-c', `printf '%s\\n' ${command}`], { encoding: 'utf8' });
  return out.split('\n').slice(0, -1);
}

it('quotes the namespace path in the gc hint of a damaged record', () => {
  const error = new RecordedIdentityDamagedError(
    '/tmp/s16qa/state/a.json',
    'namespace.ino',
    { path: AWKWARD, dev: 4, ino: 100, cookie: '9' },
    { dev: 4, ino: 101, cookie: '9' },
  );
  const command = /`vcnet gc --netns ([^`]*)`/.exec(error.hint ?? '')?.[1];
  expect(command).toBeDefined();
  expect(wordsOf(command!)).toEqual([AWKWARD]);
});

it('quotes the state directory in --state-dir', () => {
  const flag = stateDirectoryFlag(AWKWARD);
  expect(wordsOf(flag)).toEqual(['--state-dir', AWKWARD]);
});

it("runs a taken link name's ip commands in its namespace, never the host's", () => {
  const holder = { index: 7, kind: 'tun', group: 0 };
  const hintOf = (path?: string) => new LinkNameTakenError('tap0_kata', holder, undefined, undefined, path).hint ?? '';
  const commands = (hint: string) => [...hint.matchAll(/`([^`]*)`/g)].map((match) => match[1]);
  // A path in iproute2's directory is `ip -n NAME` only when NAME there is that same file (a real
  // namespace: test/integration/cli/gc-quoted-commands); no namespace pod1 is pinned here, so nsenter.
  expect(existsSync('/run/netns/pod1') || existsSync('/var/run/netns/pod1')).toBe(false);
  expect(commands(hintOf('/var/run/netns/pod1'))).toEqual([
    'nsenter --net=/var/run/netns/pod1 ip -d link show tap0_kata',
    'nsenter --net=/var/run/netns/pod1 ip link del tap0_kata',
  ]);
  expect(commands(hintOf('/run/netns/pod1'))[1]).toBe('nsenter --net=/run/netns/pod1 ip link del tap0_kata');
  // Anything else (a process's namespace, Docker's mounts, an awkward path): nsenter, the path one word.
  expect(commands(hintOf('/proc/42/ns/net'))[1]).toBe('nsenter --net=/proc/42/ns/net ip link del tap0_kata');
  const awkward = commands(hintOf(AWKWARD))[1] ?? '';
  expect(wordsOf(awkward.replace(/^nsenter /, ''))).toEqual([`--net=${AWKWARD}`, 'ip', 'link', 'del', 'tap0_kata']);
  // A bare `ip` never: pasted on the host it would act on the host's links.
  for (const hint of [hintOf('/var/run/netns/pod1'), hintOf('/proc/42/ns/net'), hintOf()])
    expect(hint).not.toMatch(/`ip (?:-d )?link/);
  // A link of vcnet's group: gc is pointed at that namespace.
  const grouped = new LinkNameTakenError(
    'tap0_kata',
    { ...holder, group: VCNET_LINK_GROUP },
    undefined,
    undefined,
    AWKWARD,
  );
  const gc = /`vcnet gc --netns ([^`]*)`/.exec(grouped.hint ?? '')?.[1];
  expect(wordsOf(gc!)).toEqual([AWKWARD]);
});

it('runs a program in a namespace by nsenter and its path where iproute2 cannot be shown to reach it by name', () => {
  // No namespace pod1 is pinned here: `ip netns exec pod1` and `ip -n pod1` would find none, or another.
  expect(commandIn('/run/netns/pod1', 'sysctl -q -w')).toBe('nsenter --net=/run/netns/pod1 sysctl -q -w');
  expect(commandIn('/var/run/netns/pod1', 'ip')).toBe('nsenter --net=/var/run/netns/pod1 ip');
  expect(commandIn('/run/netns/pod1', 'tc')).toBe('nsenter --net=/run/netns/pod1 tc');
  expect(commandIn('/proc/42/ns/net', 'tc')).toBe('nsenter --net=/proc/42/ns/net tc');
  expect(commandIn('/proc/42/ns/net', 'sysctl')).toBe('nsenter --net=/proc/42/ns/net sysctl');
  expect(wordsOf(commandIn(AWKWARD, 'sysctl'))).toEqual(['nsenter', `--net=${AWKWARD}`, 'sysctl']);
  // No namespace named: this one's, as the reader's own shell is.
  expect(commandIn(undefined, 'sysctl')).toBe('sysctl');
});

it("sets a changed pod link's MAC back in the pod's namespace, the link name one word", () => {
  const commands = (namespacePath: string, link: string, stateDirectory = '/run/vcnet') =>
    [
      ...macChangeNotice({
        id: 'm1',
        link,
        nic: 'eth0',
        guestMac: '02:aa:00:00:00:01',
        podMac: '02:aa:00:00:00:02',
        namespacePath,
        stateDirectory,
      }).matchAll(/`([^`]*)`/g),
    ].map((match) => match[1] ?? '');
  expect(commands('/var/run/netns/pod1', 'eth0')[0]).toBe(
    'nsenter --net=/var/run/netns/pod1 ip link set eth0 address 02:aa:00:00:00:01',
  );
  // A link name the pod's owner picked, with a `;`: one word, not a second command run on the host.
  const awkwardLink = 'e;touch x';
  expect(wordsOf(commands('/proc/42/ns/net', awkwardLink)[0] ?? '')).toEqual([
    'nsenter',
    '--net=/proc/42/ns/net',
    'ip',
    'link',
    'set',
    awkwardLink,
    'address',
    '02:aa:00:00:00:01',
  ]);
  expect(wordsOf(commands(AWKWARD, 'eth0')[0] ?? '').slice(0, 2)).toEqual(['nsenter', `--net=${AWKWARD}`]);
  // del-iface and add-iface reach the sandbox's state directory.
  expect(wordsOf(commands('/var/run/netns/pod1', 'eth0', AWKWARD)[1] ?? '')).toEqual([
    'vcnet',
    'del-iface',
    'm1',
    '--state-dir',
    AWKWARD,
    'FILE',
  ]);
});

it("gives add-iface's refused device its ip command in the pod's namespace, the name one word", () => {
  const awkwardLink = 'e;id>x';
  const pod = [
    info({ link: link({ index: 2, name: 'eth0', address: '02:42:ac:11:00:02' }) }),
    info({ link: link({ index: 7, name: awkwardLink, address: '02:42:ac:11:00:07', mtu: 1450 }) }),
    // The MAC of eth0, an attached NIC's.
    info({ link: link({ index: 8, name: 'f;id>x', address: '02:42:ac:11:00:02' }) }),
  ];
  const existing = [{ name: 'eth0', hardwareAddress: '02:42:ac:11:00:02', properties: { link: { name: 'eth0' } } }];
  const hintOf = (json: object, namespacePath: string) => {
    try {
      resolveAddInterfaceRequest(interfaceFromJson(json), pod, existing, {
        sandbox: { id: 'sb', stateDirectory: '/run/vcnet', namespacePath },
      });
    } catch (error) {
      if (error instanceof InvalidInputError) return error.hint ?? '';
      throw error;
    }
    throw new Error('expected a refusal');
  };
  const commandOf = (hint: string) => /`([^`]*)`/.exec(hint)?.[1] ?? '';
  const sameMac = commandOf(hintOf({ name: 'f;id>x' }, '/var/run/netns/pod1'));
  expect(sameMac).toBe(`nsenter --net=/var/run/netns/pod1 ip link set 'f;id>x' address MAC`);
  // An mtu above the link's.
  const mtu = commandOf(hintOf({ name: awkwardLink, mtu: 1500 }, AWKWARD));
  expect(wordsOf(mtu)).toEqual(['nsenter', `--net=${AWKWARD}`, 'ip', 'link', 'set', awkwardLink, 'mtu', '1500']);
  // A tap vcnet would make has no pod link to change: the request's hwAddr is what to change.
  const tap = hintOf({ name: 'eth5', type: 'tap', hwAddr: '02:42:ac:11:00:02' }, '/var/run/netns/pod1');
  expect(tap).toBe('give eth5 another hwAddr and add it again; nothing was changed');
});

it('quotes the path in the ls command of an unreadable file', () => {
  // As root with every capability (pathPermissionHint has nothing to add): the generic hint.
  const error = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES', errno: -13, syscall: 'open' });
  const hint = unreadableFileHint(error, AWKWARD);
  const command = /`([^`]*)`/.exec(hint)?.[1];
  expect(command, hint).toBeDefined();
  expect(wordsOf(command!.replace(/^ls /, ''))).toEqual(['-l', AWKWARD]);
});

it('renders a change as a command in a namespace (commandOf namespacePath): the namespace before the program, the link name one word', () => {
  const tap = { role: 'tap' as const, name: "t$0'x" };
  const remove = { op: 'delete-qdisc' as const, link: tap, kind: 'htb', parent: TC_H_ROOT, handle: 0x10000 };
  expect(commandOf(remove, { namespacePath: '/var/run/netns/pod1' })).toBe(
    `nsenter --net=/var/run/netns/pod1 tc qdisc del dev 't$0'\\''x' root handle 1:`,
  );
  expect(wordsOf(commandOf(remove, { namespacePath: AWKWARD })).slice(0, 5)).toEqual([
    'nsenter',
    `--net=${AWKWARD}`,
    'tc',
    'qdisc',
    'del',
  ]);
  const address = { address: '2001:db8::1', prefixLength: 64 };
  expect(commandOf({ op: 'change-address', link: tap, address }, { namespacePath: '/run/netns/pod1' })).toBe(
    `nsenter --net=/run/netns/pod1 ip address change 2001:db8::1/64 dev 't$0'\\''x'`,
  );
  // A bare echo's redirect would be opened by the pasting shell, in the host's /proc/sys/net.
  const generation = {
    op: 'set-address-generation' as const,
    link: { role: 'pod' as const, name: 'eth0.100' },
    mode: 'none' as const,
  };
  expect(commandOf(generation)).toBe('echo 1 > /proc/sys/net/ipv6/conf/eth0.100/addr_gen_mode');
  expect(commandOf(generation, { namespacePath: '/proc/42/ns/net' })).toBe(
    'nsenter --net=/proc/42/ns/net sysctl -q -w net/ipv6/conf/eth0.100/addr_gen_mode=1',
  );
  // sysctl ends the key at its first `=`, which a link name may hold: such a name is written with tee
  // (pasted into sh on a namespace with a link `a=b`, sysctl said "cannot stat .../conf/a"; tee set it).
  const withEquals = { ...generation, link: { role: 'pod' as const, name: 'a=b' } };
  expect(commandOf(withEquals, { namespacePath: '/proc/42/ns/net' })).toBe(
    'echo 1 | nsenter --net=/proc/42/ns/net tee /proc/sys/net/ipv6/conf/a=b/addr_gen_mode >/dev/null',
  );
});

it('tells a path through this process from one that outlives it (isOwnProcessPath)', () => {
  for (const path of [
    '/proc/self/ns/net',
    '/proc/thread-self/ns/net',
    '/dev/fd/3',
    `/proc/${process.pid}/fd/3`,
    '/dev/stdin',
  ])
    expect(isOwnProcessPath(path), path).toBe(true);
  for (const path of ['/var/run/netns/pod1', '/proc/1/ns/net', `/proc/${process.pid + 1}/fd/3`, '/proc/selfish'])
    expect(isOwnProcessPath(path), path).toBe(false);
});
