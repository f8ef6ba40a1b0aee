/**
 * An address added to the pod link after attach (a DHCP or SLAAC client in the pod, a person),
 * through the public CLI for every model: detach succeeds, keeps that address, and puts back every
 * address and route attach found (the macvtap model took them for the guest), neither failing on
 * the new one (same subnet: the kernel makes it the primary while the pod link has no other) nor
 * removing it. Where the added one became primary (macvtap), the pod's comes back secondary: the
 * kernel reorders a subnet's addresses only by deleting one, which would drop the added address's
 * routes, so detach keeps it primary and says so, with a command that works whatever the link's
 * and the namespace's `all` promote_secondaries, and sets neither where the kernel promotes already.
 * One of another scope in the pod's subnet keeps the pod's out (the kernel refuses two scopes in a
 * subnet): detach says so, and how to put it back without losing routes.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makeNamespace, type TestNamespace } from '../../helpers/namespace.js';
import { attachThenDetach, logRecords, MODELS } from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-late-address-');

/** `link`'s global addresses as `address/prefix`, with ` secondary` for an IPv4 secondary, sorted. */
function globalAddresses(pod: TestNamespace, link = 'eth0'): string[] {
  return pod
    .ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number; scope: string; secondary?: boolean }> }>>(
      'addr',
      'show',
      'dev',
      link,
    )[0]!
    .addr_info.filter((info) => info.scope === 'global')
    .map((info) => `${info.local}/${info.prefixlen}${info.secondary ? ' secondary' : ''}`)
    .sort();
}

/** The main table's routes through `link`, without the kernel's prefix routes (their `src` follows the primary address). */
function gatewayRoutes(pod: TestNamespace, link = 'eth0'): string[] {
  return ['-4', '-6']
    .flatMap((family) => pod.exec('ip', [family, 'route', 'show', 'dev', link]).split('\n'))
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
    expect(addressesBefore).toEqual(['10.200.0.2/24', 'fd00:200::2/64']);
    // The kernel makes a subnet's first address primary. Only the macvtap model took the pod's away,
    // so there the added one came first: the pod's comes back secondary, and detach says so.
    const notice =
      "eth0's 10.200.0.2/24 comes back secondary: 10.200.0.50/24, added while it was attached, is the primary of 10.200.0.0/24 now";
    const warned = logRecords(run.detached.stderr).some((record) => String(record.msg).includes(notice));
    if (model === 'macvtap') {
      expect(globalAddresses(pod)).toEqual(
        ['10.200.0.2/24 secondary', '10.200.0.50/24', ...added.slice(1), 'fd00:200::2/64'].sort(),
      );
      expect(warned, run.detached.stderr).toBe(true);
    } else {
      expect(globalAddresses(pod)).toEqual(
        ['10.200.0.2/24', '10.200.0.50/24 secondary', ...added.slice(1), 'fd00:200::2/64'].sort(),
      );
      expect(warned).toBe(false);
    }
    expect(gatewayRoutes(pod)).toEqual(routesBefore);
  });
});

/** The shell command a detach notice quotes between backticks. */
function quotedCommand(message: string): string {
  const command = /`([^`]+)`/.exec(message)?.[1];
  if (command === undefined) throw new Error(`no command quoted in: ${message}`);
  return command;
}

/** Runs `command` in a shell of the host's namespace, as a user pastes what detach quotes. */
function pastedOnHost(command: string): void {
  const run = spawnSync('sh', ['-c', command], { encoding: 'utf8' });
  expect(run.status, `${command}: ${run.stderr}`).toBe(0);
}

// The kernel promotes a deleted primary's secondaries when the link's promote_secondaries or its
// namespace's net.ipv4.conf.all one is on (IN_DEV_ORCONF). Both are off by the kernel's default,
// and a new namespace copies the host's `all` (net.core.devconf_inherit_init_net 0), which systemd
// turns on on many distributions. With both off, deleting a subnet's primary deletes its
// secondaries, the pod's address among them, and with the link's last IPv4 address every IPv4
// route through it: only then does the command need to turn the link's on for the delete.
describe.each([
  [0, 0],
  [1, 0],
  [0, 1],
  [1, 1],
])(
  'macvtap: the command detach names to make the pod address primary again, promote_secondaries %i on eth0 and %i in all',
  (onLink, inAll) => {
    it('makes it primary, keeps every address and gateway route, and leaves both settings as they were', () => {
      const { pod } = makePod();
      pod.exec('sysctl', [
        '-q',
        '-w',
        `net.ipv4.conf.eth0.promote_secondaries=${onLink}`,
        `net.ipv4.conf.all.promote_secondaries=${inAll}`,
      ]);
      const routesBefore = gatewayRoutes(pod);
      const run = attachThenDetach(pod, 'macvtap', stateDirectory(), {
        between: () => pod.exec('ip', ['addr', 'add', '10.200.0.50/24', 'dev', 'eth0']),
      });
      expect(run.detached.status, run.detached.stderr).toBe(0);
      const notice = logRecords(run.detached.stderr)
        .map((record) => String(record.msg))
        .find((message) => message.includes('comes back secondary'));
      expect(notice, run.detached.stderr).toBeDefined();
      const command = quotedCommand(notice!);
      expect(command.includes('sysctl'), command).toBe(onLink === 0 && inAll === 0);
      if (onLink === 0) {
        expect(notice).toContain(
          inAll === 1
            ? "promote_secondaries is off on eth0 but on in its namespace's net.ipv4.conf.all, which turns it on for every link there: the delete promotes 10.200.0.2"
            : "promote_secondaries is off on eth0 and in its namespace's net.ipv4.conf.all, so the command turns it on for eth0 for the delete",
        );
      } else {
        expect(notice).not.toContain('promote_secondaries is off');
      }
      pastedOnHost(command);
      expect(globalAddresses(pod)).toEqual(['10.200.0.2/24', '10.200.0.50/24 secondary', 'fd00:200::2/64']);
      expect(gatewayRoutes(pod)).toEqual(routesBefore);
      // The command leaves both settings as it found them.
      expect(pod.exec('sysctl', ['-n', 'net.ipv4.conf.eth0.promote_secondaries']).trim()).toBe(String(onLink));
      expect(pod.exec('sysctl', ['-n', 'net.ipv4.conf.all.promote_secondaries']).trim()).toBe(String(inAll));
    });
  },
);

describe("macvtap: an address of another scope added in the pod address's subnet while attached", () => {
  it('detach says it keeps the pod address out and what to do, and the pod address comes back after that', () => {
    const { pod } = makePod();
    const routesBefore = gatewayRoutes(pod);
    const state = stateDirectory();
    const run = attachThenDetach(pod, 'macvtap', state, {
      between: () => pod.exec('ip', ['addr', 'add', '10.200.0.50/24', 'dev', 'eth0', 'scope', 'link']),
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    // The kernel refuses the pod's address beside one of another scope in its subnet: detach leaves
    // it in its record, and says why and what to do rather than that it came back secondary.
    expect(run.detached.status).not.toBe(0);
    expect(run.detached.stderr).toContain('ipv4: Invalid scope value');
    const messages = logRecords(run.detached.stderr).map((record) => String(record.msg));
    expect(messages.filter((message) => message.includes('comes back secondary'))).toEqual([]);
    const notice = messages.find((message) => message.includes('cannot be put back'));
    expect(notice, run.detached.stderr).toContain(
      "eth0's 10.200.0.2/24 (scope global) cannot be put back: 10.200.0.50/24 (scope link), added while it was attached, is in 10.200.0.0/24",
    );
    pod.exec('sh', ['-c', quotedCommand(notice!)]);
    const again = vcnet(['detach', '--sandbox', 'node-macvtap', '--state-dir', state]);
    expect(again.status, again.stderr).toBe(0);
    pod.exec('ip', ['addr', 'del', '10.200.0.2/32', 'dev', 'eth0']);
    expect(globalAddresses(pod)).toEqual(['10.200.0.2/24', 'fd00:200::2/64']);
    expect(gatewayRoutes(pod)).toEqual(routesBefore);
  });
});

// A link name may hold a dot (a VLAN's eth0.5; sysctl reads a dot as a separator) and a quote (the
// shell would); and a command pasted on the host runs there, where a bare one acts on a host link of
// that name (and sets its promote_secondaries). The name here is one the host has not: a bare
// command pasted on the host fails and changes nothing.
const AWKWARD_LINK = "eth0.5'p";

/** A pod whose one link is AWKWARD_LINK (a veth to a node namespace), with makePod()'s addresses and routes. */
function podWithAwkwardLink(): TestNamespace {
  const node = makeNamespace('node');
  const pod = makeNamespace('pod');
  pod.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
  node.exec('ip', ['link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', AWKWARD_LINK, 'netns', pod.name]);
  node.exec('ip', ['link', 'set', 'veth0', 'up']);
  node.exec('ip', ['addr', 'add', '10.200.0.1/24', 'dev', 'veth0']);
  pod.exec('ip', ['link', 'set', AWKWARD_LINK, 'up']);
  pod.exec('ip', ['addr', 'add', '10.200.0.2/24', 'dev', AWKWARD_LINK]);
  pod.exec('ip', ['addr', 'add', 'fd00:200::2/64', 'dev', AWKWARD_LINK, 'nodad']);
  pod.exec('ip', ['route', 'add', '10.100.0.0/16', 'via', '10.200.0.1', 'mtu', '1400']);
  pod.exec('ip', ['route', 'add', 'default', 'via', '10.200.0.1']);
  return pod;
}

describe(`macvtap, a pod link named ${AWKWARD_LINK}: the commands detach quotes, pasted on the host`, () => {
  const promoteKey = `net/ipv4/conf/${AWKWARD_LINK}/promote_secondaries`;

  it('make the pod address primary again, and leave promote_secondaries off', () => {
    const pod = podWithAwkwardLink();
    // `all` off too (a new namespace copies the host's, which may be on): the command sets the link's.
    pod.exec('sysctl', ['-q', '-w', 'net.ipv4.conf.all.promote_secondaries=0']);
    expect(pod.exec('sysctl', ['-n', promoteKey]).trim()).toBe('0');
    const routesBefore = gatewayRoutes(pod, AWKWARD_LINK);
    const run = attachThenDetach(pod, 'macvtap', stateDirectory(), {
      between: () => pod.exec('ip', ['addr', 'add', '10.200.0.50/24', 'dev', AWKWARD_LINK]),
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status, run.detached.stderr).toBe(0);
    const notice = logRecords(run.detached.stderr)
      .map((record) => String(record.msg))
      .find((message) => message.includes('comes back secondary'));
    expect(notice, run.detached.stderr).toBeDefined();
    expect(quotedCommand(notice!)).toContain('sysctl');
    pastedOnHost(quotedCommand(notice!));
    expect(globalAddresses(pod, AWKWARD_LINK)).toEqual(['10.200.0.2/24', '10.200.0.50/24 secondary', 'fd00:200::2/64']);
    expect(gatewayRoutes(pod, AWKWARD_LINK)).toEqual(routesBefore);
    expect(pod.exec('sysctl', ['-n', promoteKey]).trim()).toBe('0');
  });

  it('put the pod address back past an address of another scope in its subnet', () => {
    const pod = podWithAwkwardLink();
    const routesBefore = gatewayRoutes(pod, AWKWARD_LINK);
    const state = stateDirectory();
    const run = attachThenDetach(pod, 'macvtap', state, {
      between: () => pod.exec('ip', ['addr', 'add', '10.200.0.50/24', 'dev', AWKWARD_LINK, 'scope', 'link']),
    });
    expect(run.attached.status, run.attached.stderr).toBe(0);
    expect(run.detached.status).not.toBe(0);
    const notice = logRecords(run.detached.stderr)
      .map((record) => String(record.msg))
      .find((message) => message.includes('cannot be put back'));
    expect(notice, run.detached.stderr).toBeDefined();
    pastedOnHost(quotedCommand(notice!));
    const again = vcnet(['detach', '--sandbox', 'node-macvtap', '--state-dir', state]);
    expect(again.status, again.stderr).toBe(0);
    // The notice's second command, once detach put the pod's address back.
    const commands = [...notice!.matchAll(/`([^`]+)`/g)].map((match) => match[1]!);
    expect(commands).toHaveLength(2);
    pastedOnHost(commands[1]!);
    expect(globalAddresses(pod, AWKWARD_LINK)).toEqual(['10.200.0.2/24', 'fd00:200::2/64']);
    expect(gatewayRoutes(pod, AWKWARD_LINK)).toEqual(routesBefore);
  });
});
