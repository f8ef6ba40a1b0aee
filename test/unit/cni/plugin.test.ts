import { describe, expect, it } from 'vitest';
import { resultWith } from '../../../src/cni/add.js';
import { runPlugin } from '../../../src/cni/plugin.js';
import { versionReply } from '../../../src/cni/version.js';
import { freeDeviceIndex } from '../../../src/network/interface-pair.js';

describe('runPlugin', () => {
  it('answers VERSION in the version asked for, or 1.0.0', async () => {
    expect(await runPlugin('{"cniVersion":"0.4.0"}', { CNI_COMMAND: 'VERSION' })).toEqual({
      stdout: '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}',
      exitCode: 0,
    });
    expect(versionReply('')).toEqual({
      cniVersion: '1.0.0',
      supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    });
    expect(versionReply('{"cniVersion":"9.9.9"}').cniVersion).toBe('1.0.0');
  });

  it('prints a CNI error and exits 1 before touching anything when the input is wrong', async () => {
    const env = {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c1',
      CNI_NETNS: '/var/run/netns/none',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/opt/cni/bin',
    };
    const badJson = await runPlugin('not json', env);
    expect(badJson.exitCode).toBe(1);
    expect(JSON.parse(badJson.stdout)).toMatchObject({ cniVersion: '1.0.0', code: 6 });
    const badModel = await runPlugin(
      JSON.stringify({ cniVersion: '0.4.0', name: 'n', type: 'vcnet-cni', model: 'bridge' }),
      env,
    );
    expect(JSON.parse(badModel.stdout)).toMatchObject({ cniVersion: '0.4.0', code: 7 });
    const badCommand = await runPlugin('{}', { CNI_COMMAND: 'FROB' });
    expect(JSON.parse(badCommand.stdout)).toMatchObject({ code: 4 });
    expect(JSON.parse(badCommand.stdout).msg).toContain('CNI_COMMAND');
  });

  // As the reference plugins (libcni's skel) answer `bridge` or `bridge --help` run by hand: what the
  // plugin is on stderr, exit 0. It answered a CNI error object (code 4) and exit 1.
  it.each([{}, { CNI_COMMAND: '' }])(
    'says what it is on stderr, exit 0, when run without CNI_COMMAND (%o)',
    async (env) => {
      const lines: string[] = [];
      const outcome = await runPlugin('', env, { warn: (line) => lines.push(line) });
      expect(outcome).toEqual({ stdout: '', exitCode: 0 });
      expect(lines[0]).toMatch(/^vcnet-cni 0\.1\.0: vcnet's chained CNI plugin/);
      expect(lines[0]).toContain('docs/cni.md');
      expect(lines[1]).toBe('CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0');
    },
  );

  // Unknown top-level keys are allowed (runtimes add their own), so "modle": "macvtap" used to give a
  // tcfilter attach with no word of why.
  it('warns on stderr, at ADD, of a config key that is a near miss of one vcnet-cni reads', async () => {
    const env = {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c1',
      CNI_NETNS: '/var/run/netns/none',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/opt/cni/bin',
    };
    const lines: string[] = [];
    const config = {
      cniVersion: '1.0.0',
      name: 'n',
      type: 'vcnet-cni',
      modle: 'macvtap',
      StateDir: '/run/x',
      ratelimit: { rx: 8 },
      // The keys of the CNI spec and of other tools are not near misses, whatever they look like.
      ipam: {},
      runtimeConfig: {},
      capabilities: {},
      args: {},
      dns: {},
      ipMasq: true,
      bridge: 'cni0',
    };
    const reply = await runPlugin(JSON.stringify(config), env, { warn: (line) => lines.push(line) });
    // The ADD itself fails later (no prevResult), the warnings are already out.
    expect(JSON.parse(reply.stdout)).toMatchObject({ code: 7 });
    expect(lines).toEqual([
      'vcnet-cni ADD of c1/eth0: network config key "modle" is not one vcnet-cni reads, so it is ignored: did you mean "model"?',
      'vcnet-cni ADD of c1/eth0: network config key "StateDir" is not one vcnet-cni reads, so it is ignored: did you mean "stateDir"?',
      'vcnet-cni ADD of c1/eth0: network config key "ratelimit" is not one vcnet-cni reads, so it is ignored: did you mean "rateLimit"?',
    ]);
  });
});

describe('freeDeviceIndex', () => {
  it('takes the lowest index whose tap and ifb names are free and no other chain recorded', () => {
    expect(freeDeviceIndex(new Set(['lo', 'eth0']))).toBe(0);
    expect(freeDeviceIndex(new Set(['tap0_kata']))).toBe(1);
    expect(freeDeviceIndex(new Set(['ifb0_kata']))).toBe(1);
    expect(freeDeviceIndex(new Set(['tap1_kata']), { taken: new Set([0]) })).toBe(2);
    // From a given index on (the next of a sandbox under disable_new_netns).
    expect(freeDeviceIndex(new Set(['tap0_kata', 'tap2_kata']), { from: 1 })).toBe(1);
    expect(freeDeviceIndex(new Set(['tap2_kata', 'ifb3_kata']), { from: 2 })).toBe(4);
  });
});

describe('resultWith', () => {
  const previous = {
    cniVersion: '1.0.0',
    interfaces: [
      { name: 'cni0', mac: '02:00:00:00:00:01' },
      { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/var/run/netns/pod' },
    ],
    ips: [{ address: '10.1.0.2/24', gateway: '10.1.0.1', interface: 1 }],
    dns: {},
  };
  const tap = { name: 'tap0_kata', mac: '02:00:00:00:00:03', kind: 'tap' as const };

  it('appends the device in the pod namespace and keeps the rest (ips still point at eth0)', () => {
    const result = resultWith(previous, '1.0.0', '/var/run/netns/pod', 'eth0', tap, '02:00:00:00:00:02');
    expect(result).toEqual({
      ...previous,
      interfaces: [
        ...previous.interfaces,
        { name: 'tap0_kata', mac: '02:00:00:00:00:03', sandbox: '/var/run/netns/pod' },
      ],
    });
  });

  it("reports the pod interface's new MAC (macvtap model) and answers in the config's version", () => {
    const result = resultWith(
      { ...previous, cniVersion: '1.0.0' },
      '0.4.0',
      '/var/run/netns/pod',
      'eth0',
      { ...tap, kind: 'macvtap', mac: '02:00:00:00:00:02' },
      '0a:58:00:00:00:99',
    );
    expect(result.cniVersion).toBe('0.4.0');
    expect(result.interfaces[1]).toEqual({ name: 'eth0', mac: '0a:58:00:00:00:99', sandbox: '/var/run/netns/pod' });
    expect(result.interfaces[2]).toMatchObject({ name: 'tap0_kata', mac: '02:00:00:00:00:02' });
  });
});
