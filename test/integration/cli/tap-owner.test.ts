/**
 * Who may open a sandbox's tap by name (TUNSETIFF). The kernel refuses a process without
 * CAP_NET_ADMIN only when the tap has an owner or a group; vcnet's taps used to have neither, so any
 * uid in the pod namespace could attach a queue and read the guest's frames, or take a tap before
 * QEMU did. Now they belong to vcnet's euid/egid (0 here, as Kata's), and --tap-owner/--tap-group
 * give them to the user a VMM runs as. Each queue of a multi-queue tap is checked the same way.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const NOBODY = 65534;
const skipReason =
  spawnSync('setpriv', ['--version']).status !== 0
    ? 'setpriv (util-linux) is not installed'
    : spawnSync('/usr/bin/python3', ['-c', '']).status !== 0
      ? 'no /usr/bin/python3 (opens the tap as nobody)'
      : undefined;
if (skipReason) console.log(`skipping the tap owner tests: ${skipReason}`);

const stateDirectory = stateDirectoryPerTest('vcnet-tap-owner-');

/** Opens /dev/net/tun as nobody (no capabilities) in the namespace and attaches to `tap`: ok or the errno name. */
function openAsNobody(namespacePath: string, tap: string, multiQueue: boolean): string {
  const flags = 0x0002 | 0x1000 | 0x4000 | (multiQueue ? 0x0100 : 0); // IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (| IFF_MULTI_QUEUE)
  const script = [
    'import errno, fcntl, os, struct',
    'fd = os.open("/dev/net/tun", os.O_RDWR)',
    'try:',
    `    fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"${tap}", ${flags}))`,
    '    print("ok")',
    'except OSError as e:',
    '    print(errno.errorcode[e.errno])',
  ].join('\n');
  const run = spawnSync('nsenter', [
    `--net=${namespacePath}`,
    ...['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all'],
    ...['/usr/bin/python3', '-c', script],
  ]);
  expect(run.status, String(run.stderr)).toBe(0);
  return String(run.stdout).trim();
}

describe.skipIf(skipReason !== undefined)('tap owner and group', () => {
  for (const queues of [1, 2]) {
    it(`a process of another uid cannot open the tap by default, and can once it is the owner (${queues} queue(s))`, () => {
      const { pod } = makePod();
      const attach = (sandbox: string, ...more: string[]) =>
        vcnet([
          ...['attach', '--sandbox', sandbox, '--netns', pod.path, '--state-dir', stateDirectory()],
          ...['--queues', String(queues), '--vhost-net', 'off', '--json', ...more],
        ]);
      const attached = attach('o1');
      expect(attached.status, attached.stderr).toBe(0);
      const tap = (JSON.parse(attached.stdout).endpoints[0] as { tap: string }).tap;
      const details = pod.exec('ip', ['-d', 'link', 'show', tap]);
      expect(details).toMatch(/tun type tap .*user (0|root) group (0|root) /s);
      expect(openAsNobody(pod.path, tap, queues > 1)).toBe('EPERM');
      expect(vcnet(['detach', '--sandbox', 'o1', '--state-dir', stateDirectory()]).status).toBe(0);

      const owned = attach('o2', '--tap-owner', 'nobody');
      expect(owned.status, owned.stderr).toBe(0);
      expect(pod.exec('ip', ['-d', 'link', 'show', tap])).toMatch(/persist on user (65534|nobody) addrgenmode/); // no group: the kernel would ask for both
      expect(openAsNobody(pod.path, tap, queues > 1)).toBe('ok');
      expect(vcnet(['detach', '--sandbox', 'o2', '--state-dir', stateDirectory()]).status).toBe(0);

      const grouped = attach('o3', '--tap-group', String(NOBODY));
      expect(grouped.status, grouped.stderr).toBe(0);
      expect(pod.exec('ip', ['-d', 'link', 'show', tap])).toMatch(/persist on group (65534|nogroup) addrgenmode/);
      expect(openAsNobody(pod.path, tap, queues > 1)).toBe('ok'); // its egid is the tap's group
      expect(vcnet(['detach', '--sandbox', 'o3', '--state-dir', stateDirectory()]).status).toBe(0);
    }, 60_000);
  }

  it('refuses an unknown user name, naming the flag', () => {
    const { pod } = makePod();
    const refused = vcnet([
      ...['attach', '--sandbox', 'o4', '--netns', pod.path, '--state-dir', stateDirectory()],
      ...['--tap-owner', 'no-such-user-s13'],
    ]);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain('--tap-owner');
    expect(refused.stderr).toContain('no-such-user-s13');
    expect(refused.stderr).toContain('/etc/passwd');
  });
});
