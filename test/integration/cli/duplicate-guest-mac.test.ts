/**
 * Two guest NICs with one MAC: Kata's agent finds a NIC by its MAC, so both interfaces' settings
 * would land on one NIC (configure-guest then failed 13 s later with "add route default ...
 * ENETUNREACH"). attach and add-iface refuse it up front, naming both links and the MAC, and change
 * nothing.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-dup-mac-');

describe('guest NICs with the same MAC', () => {
  it('attach refuses two pod links with one MAC and leaves the namespace as it was', () => {
    const { pod } = makePod({ interfaces: 2 });
    const mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address;
    pod.exec('ip', ['link', 'set', 'eth1', 'address', mac]);
    const before = fingerprint(pod);
    const refused = vcnet(['attach', '--sandbox', 'm1', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(refused.status, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`eth1 and eth0 have the same MAC ${mac}`);
    // In the pod's namespace when pasted on the host (a bare `ip` would set the host's eth1).
    expect(refused.stderr).toContain(`\`ip -n ${basename(pod.path)} link set eth1 address MAC\``);
    expect(refused.stderr).toContain('nothing was changed');
    expect(fingerprint(pod)).toEqual(before);
    expect(readdirSync(stateDirectory()).filter((name) => !name.startsWith('.'))).toEqual([]);
  });

  it('add-iface refuses a link with the MAC of an attached NIC', () => {
    const { pod } = makePod();
    const attached = vcnet(['attach', '--sandbox', 'm2', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(attached.status, attached.stderr).toBe(0);
    const mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address;
    pod.exec('ip', ['link', 'add', 'eth7', 'address', mac, 'type', 'veth', 'peer', 'name', 'peer7']);
    const before = fingerprint(pod);
    const file = join(stateDirectory(), 'eth7.json');
    writeFileSync(file, JSON.stringify({ device: 'eth7', name: 'net7', IPAddresses: [], mtu: 1500 }));
    const refused = vcnet(['add-iface', 'm2', file, '--state-dir', stateDirectory()]);
    expect(refused.status, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`eth7 and the attached eth0 have the same MAC ${mac}`);
    // The command acts in the pod's namespace when pasted on the host (a bare `ip` would set the host's eth7).
    const command = `ip -n ${basename(pod.path)} link set eth7 address MAC`;
    expect(refused.stderr).toContain(`\`${command}\``);
    expect(fingerprint(pod)).toEqual(before);
    const listed = vcnet(['list-ifaces', 'm2', '--state-dir', stateDirectory(), '--json']);
    expect(JSON.parse(listed.stdout).map((entry: { name: string }) => entry.name)).toEqual(['eth0']);
    // Pasted with a MAC of eth7's own, as the hint says: add-iface then takes eth7.
    execFileSync('sh', ['-c', command.replace(/MAC$/, '02:00:00:00:07:07')]);
    const added = vcnet(['add-iface', 'm2', file, '--state-dir', stateDirectory()]);
    expect(added.status, added.stderr).toBe(0);
    expect(vcnet(['detach', '--sandbox', 'm2', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});
