/**
 * The notice detach gives when a pod's IPv4 address comes back secondary behind one added while it
 * was attached, without root: its command turns the link's promote_secondaries on for the delete
 * only where the kernel would not promote otherwise (the link's and the namespace's `all` both off),
 * and the namespace's `all` is asked for only where the link's is off and such a notice is due.
 */
import { describe, expect, it } from 'vitest';
import { RouteScope } from '../../../src/netlink/codec/route.js';
import { comebackNeedsAllPromoteSecondaries, planDetach } from '../../../src/network/plan/plan-detach.js';
import type { PlumbingStep } from '../../../src/network/plan/types.js';
import { address, link } from './fixtures.js';

const records: PlumbingStep[] = [
  { step: 'remove-addresses', link: 'eth0', index: 2, addresses: [{ address: '10.88.0.2', prefixLength: 16 }] },
];
/** The address added while attached: the primary of 10.88.0.0/16 now. */
const added = [address('10.88.0.50', 16)];

function comebackNotice(linkPromotes: boolean, allPromoteSecondaries: boolean | undefined): string {
  const { notices } = planDetach(records, {
    links: [link({ promoteSecondaries: linkPromotes })],
    addresses: added,
    namespacePath: '/run/netns/pod',
    allPromoteSecondaries,
  });
  const notice = notices.find((entry) => entry.message.includes('comes back secondary'));
  if (!notice) throw new Error(`no comeback notice in ${JSON.stringify(notices)}`);
  return notice.message;
}

describe('the command that makes the pod address primary again', () => {
  // No namespace pod is pinned here: the commands enter /run/netns/pod by its path (shell-word.ts commandIn).
  const readd =
    'nsenter --net=/run/netns/pod ip address del 10.88.0.50/16 dev eth0 && nsenter --net=/run/netns/pod ip address add 10.88.0.50/16 dev eth0` makes 10.88.0.2 primary again';

  it.each([
    [true, false],
    [true, true],
    [false, true],
  ])('sets no sysctl where the kernel promotes (link %s, all %s)', (linkPromotes, all) => {
    const message = comebackNotice(linkPromotes, all);
    expect(message).toContain(`\`${readd}`);
    expect(message).not.toContain('sysctl');
  });

  it('says why the delete keeps the address where only all is on', () => {
    expect(comebackNotice(false, true)).toContain(
      "promote_secondaries is off on eth0 but on in its namespace's net.ipv4.conf.all, which turns it on for every link there: the delete promotes 10.88.0.2",
    );
  });

  it('turns the link on for the delete, and off after, where both are off', () => {
    const message = comebackNotice(false, false);
    expect(message).toContain(
      '`nsenter --net=/run/netns/pod sysctl -q -w net.ipv4.conf.eth0.promote_secondaries=1 && nsenter --net=/run/netns/pod ip address del 10.88.0.50/16 dev eth0 && nsenter --net=/run/netns/pod ip address add 10.88.0.50/16 dev eth0; nsenter --net=/run/netns/pod sysctl -q -w net.ipv4.conf.eth0.promote_secondaries=0`',
    );
    expect(message).toContain("promote_secondaries is off on eth0 and in its namespace's net.ipv4.conf.all");
  });

  it('writes promote_secondaries of a link whose name holds `=` with tee, which sysctl would cut at it', () => {
    const { notices } = planDetach([{ ...records[0]!, link: 'a=b' } as PlumbingStep], {
      links: [link({ name: 'a=b', promoteSecondaries: false })],
      addresses: added,
      namespacePath: '/run/netns/pod',
      allPromoteSecondaries: false,
    });
    const message = notices.find((entry) => entry.message.includes('comes back secondary'))?.message;
    expect(message).toContain(
      // No namespace is pinned at /run/netns/pod here, so iproute2 does not reach it by name: nsenter.
      '`echo 1 | nsenter --net=/run/netns/pod tee /proc/sys/net/ipv4/conf/a=b/promote_secondaries >/dev/null && nsenter --net=/run/netns/pod ip address del 10.88.0.50/16 dev a=b && nsenter --net=/run/netns/pod ip address add 10.88.0.50/16 dev a=b; echo 0 | nsenter --net=/run/netns/pod tee /proc/sys/net/ipv4/conf/a=b/promote_secondaries >/dev/null`',
    );
  });

  it('turns the link on for the delete, and says all was not read, where all is unknown', () => {
    const message = comebackNotice(false, undefined);
    expect(message).toContain('net.ipv4.conf.eth0.promote_secondaries=1');
    expect(message).toContain("its namespace's net.ipv4.conf.all could not be read");
  });
});

describe('comebackNeedsAllPromoteSecondaries', () => {
  it('asks for all only where the link does not promote and an address comes back secondary', () => {
    expect(comebackNeedsAllPromoteSecondaries(records, [link({ promoteSecondaries: false })], added)).toBe(true);
    expect(comebackNeedsAllPromoteSecondaries(records, [link()], added)).toBe(true);
    expect(comebackNeedsAllPromoteSecondaries(records, [link({ promoteSecondaries: true })], added)).toBe(false);
    // Nothing else in the subnet, another subnet, or the link gone: no notice.
    expect(comebackNeedsAllPromoteSecondaries(records, [link({ promoteSecondaries: false })], [])).toBe(false);
    expect(
      comebackNeedsAllPromoteSecondaries(records, [link({ promoteSecondaries: false })], [address('10.89.0.50', 16)]),
    ).toBe(false);
    expect(comebackNeedsAllPromoteSecondaries(records, [link({ index: 3, promoteSecondaries: false })], added)).toBe(
      false,
    );
    // One of another scope keeps the address out: that notice does not depend on promotion.
    expect(
      comebackNeedsAllPromoteSecondaries(
        records,
        [link({ promoteSecondaries: false })],
        [address('10.88.0.50', 16, { scope: RouteScope.LINK })],
      ),
    ).toBe(false);
  });
});
