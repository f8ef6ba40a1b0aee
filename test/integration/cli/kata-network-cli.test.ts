/**
 * The kata-network commands through the binary, on a sandbox without a VM: add-iface, list-ifaces,
 * update-routes, list-routes, del-iface, and every input error (exit 2, naming the field, nothing changed).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makeNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest();

const withInput = (args: string[], json: unknown) => {
  const file = join(stateDirectory(), `input-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(json));
  return vcnet([...args.slice(0, 2), file, ...args.slice(2)]);
};

describe('kata-network commands without a VM', () => {
  it('adds, lists, routes and removes an interface, and detach leaves the namespace as it was', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    expect(
      vcnet(['attach', '--sandbox', 'k1', '--netns', pod.path, '--state-dir', stateDirectory(), '--json']).status,
    ).toBe(0);
    // A second interface appears after the sandbox was attached (CNI ran again).
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
    const mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth7')[0]!.address;

    const added = withInput(['add-iface', 'k1', '--state-dir', stateDirectory()], {
      device: 'eth7',
      name: 'net7',
      IPAddresses: [{ family: 0, address: '10.77.0.2', mask: '24' }],
      mtu: 1400,
    });
    expect(added.stderr).toContain('no type given: using "virtual", the kind of device eth7');
    expect(added.status).toBe(0);
    // Kata's output: the resulting interface as one JSON line.
    expect(added.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(JSON.parse(added.stdout)).toMatchObject({
      device: 'net7',
      name: 'net7',
      hwAddr: mac,
      mtu: 1400,
      type: 'virtual',
      IPAddresses: [{ family: 0, address: '10.77.0.2', mask: '24' }],
    });
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap1_kata');

    const listed = vcnet(['list-ifaces', 'k1', '--state-dir', stateDirectory(), '--json']);
    // As Kata prints it, and add-iface here: one JSON line.
    expect(listed.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(JSON.parse(listed.stdout).map((entry: { name: string }) => entry.name)).toEqual(['eth0', 'net7']);
    const interfaceTable = vcnet(['list-ifaces', 'k1', '--state-dir', stateDirectory()]).stdout.split('\n');
    expect(interfaceTable[0]?.split(/\s+/)).toEqual(['NAME', 'DEVICE', 'TYPE', 'MAC', 'MTU', 'ADDRESSES', 'PCI']);
    expect(interfaceTable.find((line) => line.startsWith('net7'))?.split(/\s+/)).toEqual([
      'net7',
      'net7',
      'virtual',
      mac,
      '1400',
      '10.77.0.2/24',
      '-',
    ]);

    const routes = [
      {
        dest: '10.99.0.0/16',
        gateway: '10.77.0.1',
        device: 'net7',
        source: '',
        scope: 0,
        family: 0,
        flags: 0,
        mtu: 1300,
      },
    ];
    const updated = withInput(['update-routes', 'k1', '--state-dir', stateDirectory()], routes);
    expect(updated.status).toBe(0);
    const listedRoutes = vcnet(['list-routes', 'k1', '--state-dir', stateDirectory(), '--json']).stdout;
    expect(listedRoutes.trimEnd().split('\n')).toHaveLength(1);
    expect(JSON.parse(listedRoutes)).toEqual([
      expect.objectContaining({ dest: '10.99.0.0/16', gateway: '10.77.0.1', device: 'net7', mtu: 1300 }),
    ]);
    const routeTable = vcnet(['list-routes', 'k1', '--state-dir', stateDirectory()]).stdout.trimEnd().split('\n');
    expect(routeTable.map((line) => line.split(/\s+/))).toEqual([
      ['DEST', 'GATEWAY', 'DEVICE', 'SOURCE', 'SCOPE', 'MTU'],
      ['10.99.0.0/16', '10.77.0.1', 'net7', '-', '0', '1300'],
    ]);

    // del-iface reads its Interface as add-iface does: a key Kata's decoder ignores is named, not fatal.
    // A near miss of a field says which one it most likely meant.
    const removed = withInput(['del-iface', 'k1', '--state-dir', stateDirectory()], {
      name: 'net7',
      colour: 'red',
      hwadr: '',
    });
    expect(removed.status).toBe(0);
    expect(removed.stderr).toContain('ignored keys: interface.colour, interface.hwadr (did you mean hwAddr?)');
    expect(JSON.parse(removed.stdout)).toMatchObject({ name: 'net7' });
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');

    pod.exec('ip', ['link', 'del', 'eth7']);
    expect(vcnet(['detach', '--sandbox', 'k1', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('warns once of every key it ignored, under the path the JSON spelled, an alias a later message overrides too', () => {
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'k9', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    try {
      const file = join(stateDirectory(), 'twice.json');
      // Kata's logged request given twice: Go reads the later Interface into the earlier one, and
      // ignores linkType (vcnet reads it only where type is not given), Colour, colour and hwadr.
      writeFileSync(
        file,
        '{"interface":{"name":"eth5","hwAddr":"02:00:00:00:05:09","mtu":1500,"linkType":"veth",' +
          '"IPAddresses":[{"address":"10.56.0.2","mask":"24","Colour":1}]},' +
          '"interface":{"type":"tap","IPADDRESSES":[{"colour":2,"colour":3}],"hwadr":"","hwadr":""}}',
      );
      const added = vcnet(['add-iface', 'k9', file, '--state-dir', stateDirectory()]);
      expect(added.status, added.stderr).toBe(0);
      expect(added.stderr).toContain(
        'vcnet: warning: ignored keys: interface.IPAddresses[0].Colour, interface.linkType (another name of type, given again), interface.IPADDRESSES[0].colour, interface.hwadr (did you mean hwAddr?)\n',
      );
      expect(JSON.parse(added.stdout)).toMatchObject({
        name: 'eth5',
        type: 'tap',
        IPAddresses: [{ address: '10.56.0.2', mask: '24' }],
      });
      writeFileSync(
        file,
        '{"routes":{"Routes":[{"dest":"10.9.0.0/16","device":"eth5","gatway":""}]},' +
          '"routes":{"Routes":[{"gatway":""}],"colour":1}}',
      );
      const routed = vcnet(['update-routes', 'k9', file, '--state-dir', stateDirectory()]);
      expect(routed.status, routed.stderr).toBe(0);
      expect(routed.stderr).toContain(
        'vcnet: warning: ignored keys: routes[0].gatway (did you mean gateway?), routes.colour\n',
      );
      expect(JSON.parse(routed.stdout)).toMatchObject([{ dest: '10.9.0.0/16', device: 'eth5' }]);
    } finally {
      expect(vcnet(['detach', '--sandbox', 'k9', '--state-dir', stateDirectory()]).status).toBe(0);
    }
  });

  it('--live fails when the record names no agent (the guest cannot be asked), and says how one is recorded', async () => {
    const { pod } = makePod();
    const attached = vcnet(['attach', '--sandbox', 'kl', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(attached.status, attached.stderr).toBe(0);
    for (const command of ['list-ifaces', 'list-routes']) {
      // Without --live: the recorded view, and nothing on stderr (no VM was ever named).
      const recorded = vcnet([command, 'kl', '--state-dir', stateDirectory(), '--json']);
      expect(recorded.status, recorded.stderr).toBe(0);
      expect(JSON.parse(recorded.stdout).length).toBeGreaterThan(0);
      expect(recorded.stderr).toBe('');
      for (const json of [true, false]) {
        const live = vcnet([command, 'kl', '--state-dir', stateDirectory(), '--live', ...(json ? ['--json'] : [])]);
        expect(live.status, live.stdout).toBe(1);
        if (json) {
          const { error } = JSON.parse(live.stdout);
          expect(error).toMatchObject({ code: 'VCNET_AGENT_CONNECT', name: 'AgentNotRecordedError', value: 'kl' });
          expect(error.message).toContain('sandbox kl has no agent recorded');
          expect(error.hint).toContain('--agent');
          // The sandbox is attached: attach alone would refuse it (VCNET_SANDBOX_EXISTS).
          expect(error.hint).toContain(`vcnet detach --sandbox kl --state-dir ${stateDirectory()}`);
          expect(error.hint).toContain('AgentClient.connect(SOCKET)');
        } else {
          expect(live.stdout).toBe('');
          expect(live.stderr).toContain('sandbox kl has no agent recorded');
        }
      }
    }
    // The library's `live` is the same refusal, in the library's words: its options, no flag nor command.
    const { listInterfaces, AgentNotRecordedError } = await import('../../../src/index.js');
    const refused = await listInterfaces('kl', { stateDirectory: stateDirectory(), live: true }).catch(
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(AgentNotRecordedError);
    const { hint } = (refused as InstanceType<typeof AgentNotRecordedError>).toJSON() as { hint: string };
    expect(hint).not.toMatch(/--[a-z]|vcnet [a-z]/);
    expect(hint).toContain('agentSocket');
    expect(hint).toContain('detachSandbox');
    expect(hint).toContain('live: false');
    expect(vcnet(['detach', '--sandbox', 'kl', '--state-dir', stateDirectory()]).status).toBe(0);
  });

  it.each(['tcfilter', 'macvtap', 'none'])(
    "gives the host tap the pod link's MTU and the guest NIC the JSON's, as Kata (%s)",
    (model) => {
      const { pod } = makePod();
      const attached = vcnet([
        'attach',
        '--sandbox',
        'km',
        '--netns',
        pod.path,
        '--model',
        model,
        '--state-dir',
        stateDirectory(),
      ]);
      expect(attached.status, attached.stderr).toBe(0);
      pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
      pod.exec('ip', ['link', 'set', 'eth7', 'mtu', '1450']);
      const added = withInput(['add-iface', 'km', '--state-dir', stateDirectory()], {
        name: 'eth7',
        IPAddresses: [{ family: 0, address: '10.77.0.2', mask: '24' }],
        mtu: 1400,
      });
      expect(added.status, added.stderr).toBe(0);
      // The guest gets the JSON's MTU (Kata sends the caller's Interface to the agent) ...
      expect(JSON.parse(added.stdout)).toMatchObject({ name: 'eth7', mtu: 1400 });
      // ... and the host tap the pod link's own (setupTCFiltering and tapNetworkPair: LinkSetMTU(tap, attrs.MTU)).
      expect(pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'tap1_kata')[0]?.mtu).toBe(1450);
      expect(pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'eth7')[0]?.mtu).toBe(1450);
      expect(withInput(['del-iface', 'km', '--state-dir', stateDirectory()], { name: 'eth7' }).status).toBe(0);
      expect(vcnet(['detach', '--sandbox', 'km', '--state-dir', stateDirectory()]).status).toBe(0);
    },
  );

  it("refuses an mtu above the pod link's, which its tap cannot carry, and lets a tap vcnet makes take any", () => {
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'kx', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
    pod.exec('ip', ['link', 'set', 'eth7', 'mtu', '1450']);
    const state = readFileSync(join(stateDirectory(), 'kx', 'state.json'), 'utf8');
    const before = fingerprint(pod);
    const refused = withInput(['add-iface', 'kx', '--state-dir', stateDirectory()], { name: 'eth7', mtu: 1451 });
    expect(refused.status, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(
      /invalid interface\.mtu: 1451 \(accepted: at most 1450, the MTU of the pod link eth7/,
    );
    // In the pod's namespace when pasted on the host (a bare `ip` would set the host's eth7).
    expect(refused.stderr).toContain(`\`ip -n ${basename(pod.path)} link set eth7 mtu 1451\``);
    expect(fingerprint(pod)).toEqual(before);
    expect(readFileSync(join(stateDirectory(), 'kx', 'state.json'), 'utf8')).toBe(state);
    // The pod link's own MTU is fine, and so is any mtu for a tap vcnet makes (it takes the mtu).
    const same = withInput(['add-iface', 'kx', '--state-dir', stateDirectory()], { name: 'eth7', mtu: 1450 });
    expect(same.status, same.stderr).toBe(0);
    const tap = withInput(['add-iface', 'kx', '--state-dir', stateDirectory()], {
      name: 'eth5',
      type: 'tap',
      hwAddr: '02:00:00:00:05:05',
      mtu: 9000,
    });
    expect(tap.status, tap.stderr).toBe(0);
    expect(pod.ipJson<Array<{ mtu: number }>>('link', 'show', 'tap2_kata')[0]?.mtu).toBe(9000);
    expect(vcnet(['detach', '--sandbox', 'kx', '--state-dir', stateDirectory()]).status).toBe(0);
  });

  it("takes Kata's own example (type tap: host tap tap<N>_kata) and the 1.x capitalised form", () => {
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'k2', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    const added = withInput(['add-iface', 'k2', '--state-dir', stateDirectory()], {
      name: 'eth5',
      hwAddr: '02:00:00:00:05:05',
      mtu: 1500,
      type: 'tap',
      IPAddresses: [{ family: 0, address: '10.55.0.2', mask: '24' }],
      vhostUserSocket: '',
    });
    expect(added.status, added.stderr).toBe(0);
    expect(added.stderr).toContain('ignored keys: interface.vhostUserSocket');
    expect(JSON.parse(added.stdout)).toMatchObject({ name: 'eth5', type: 'tap', hwAddr: '02:00:00:00:05:05' });
    expect(
      pod.ipJson<Array<{ linkinfo?: { info_kind: string } }>>('-d', 'link', 'show', 'tap1_kata')[0]?.linkinfo
        ?.info_kind,
    ).toBe('tun');
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('eth5');

    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
    const mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth7')[0]!.address;
    const capitalised = withInput(['add-iface', 'k2', '--state-dir', stateDirectory()], {
      Device: 'eth7',
      Name: 'eth7',
      IPAddresses: [{ Family: 0, Address: '10.77.0.2', Mask: '24' }],
      Mtu: 1400,
      HwAddr: mac.toUpperCase(),
      LinkType: 'veth',
    });
    expect(capitalised.status, capitalised.stderr).toBe(0);
    expect(JSON.parse(capitalised.stdout)).toMatchObject({ name: 'eth7', type: 'virtual', mtu: 1400, hwAddr: mac });

    expect(withInput(['del-iface', 'k2', '--state-dir', stateDirectory()], { name: 'eth5' }).status).toBe(0);
    expect(withInput(['del-iface', 'k2', '--state-dir', stateDirectory()], { Name: 'eth7' }).status).toBe(0);
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap1_kata');
    expect(pod.exec('ip', ['link', 'show'])).not.toContain('tap2_kata');
  });

  it('refuses bad interface JSON with exit 2 naming the field, and changes nothing', () => {
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'k3', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
    const state = readFileSync(join(stateDirectory(), 'k3', 'state.json'), 'utf8');
    const before = fingerprint(pod);
    const cases: Array<[unknown, RegExp]> = [
      [{ name: 'x' }, /interface\.name.*"x"/],
      [{ name: 'tap%d', type: 'tap', hwAddr: '02:00:00:00:05:05' }, /interface\.name.*%/],
      [{ name: 'a-name-of-16byte' }, /interface\.name/],
      [{ name: 'eth/7' }, /interface\.name/],
      [{ device: 'eth7', name: '\u0000eth' }, /interface\.name/],
      [{ name: 'tap0_kata' }, /interface\.name.*not one of the devices vcnet made/],
      [{ name: 'eth7', type: 'physical' }, /Incorrect link type veth, expecting physical/],
      [{ device: 'eth7', hwAddr: 'zz:00' }, /interface\.hwAddr/],
      [
        { device: 'eth7', IPAddresses: [{ family: 0, address: '10.0.0.1', mask: '33' }] },
        /interface\.IPAddresses\[0\]\.mask/,
      ],
      [{ device: 'eth7', mtu: 20 }, /interface\.mtu.*68/],
      [{ device: 'eth7', name: 'a-name-that-is-far-too-long' }, /interface\.name/],
      [{ device: 'eth7', name: 'eth0' }, /interface\.name.*no other interface/],
      [{ device: 'nosuch0' }, /interface\.device.*"nosuch0"/],
      [{ device: 'eth7', type: 'bridge' }, /interface\.type.*"bridge".*virtual/],
    ];
    for (const [json, pattern] of cases) {
      const result = withInput(['add-iface', 'k3', '--state-dir', stateDirectory()], json);
      expect(result.status, JSON.stringify(json)).toBe(2);
      expect(result.stderr, JSON.stringify(json)).toMatch(pattern);
    }
    expect(
      withInput(['update-routes', 'k3', '--state-dir', stateDirectory()], [{ dest: '10.0.0.0/8', device: 'nope' }])
        .stderr,
    ).toMatch(/routes\[0\]\.device/);
    expect(
      vcnet(['add-iface', 'k3', join(stateDirectory(), 'missing.json'), '--state-dir', stateDirectory()]).status,
    ).toBe(2);
    const deep = join(stateDirectory(), 'deep.json');
    writeFileSync(deep, `${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    const nested = vcnet(['add-iface', 'k3', deep, '--state-dir', stateDirectory()]);
    expect([nested.status, nested.stderr]).toEqual([2, expect.stringMatching(/interface.*nested at most/)]);
    // An endless input is refused once it passes the size cap (it used to read without bound).
    const endless = vcnet(['add-iface', 'k3', '/dev/zero', '--state-dir', stateDirectory()]);
    expect([endless.status, endless.stderr]).toEqual([2, expect.stringMatching(/FILE.*at most/)]);
    expect(vcnet(['list-ifaces', 'unknown-sandbox', '--state-dir', stateDirectory()]).stderr).toContain(
      'sandbox unknown-sandbox is not attached',
    );
    expect(fingerprint(pod)).toEqual(before);
    expect(readFileSync(join(stateDirectory(), 'k3', 'state.json'), 'utf8')).toBe(state);
  });
});

describe('kata-network commands: what Kata users feed them', () => {
  it("adds and removes an interface written with the host side's name in device, which Kata does not read", () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    expect(vcnet(['attach', '--sandbox', 'kd', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    pod.exec('ip', ['link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'peer1']);
    const mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth1')[0]!.address;
    // As kata-runtime users wrote it: device the host's tap or veth, name the link in the pod.
    const usersInterface = {
      device: 'veth-test',
      name: 'eth1',
      IPAddresses: [{ address: '172.17.0.3', mask: '16' }],
      hwAddr: mac,
      mtu: 1500,
    };
    const added = withInput(['add-iface', 'kd', '--state-dir', stateDirectory()], usersInterface);
    expect(added.status, added.stderr).toBe(0);
    expect(added.stderr).toContain(
      'vcnet: device "veth-test" is no link of the pod namespace: made the interface from eth1, its name (Kata reads only name)',
    );
    expect(JSON.parse(added.stdout)).toMatchObject({ name: 'eth1', hwAddr: mac });
    // del-iface takes the same file: the device naming nothing of the sandbox's is passed over.
    const removed = withInput(['del-iface', 'kd', '--state-dir', stateDirectory()], usersInterface);
    expect(removed.status, removed.stderr).toBe(0);
    expect(JSON.parse(removed.stdout)).toMatchObject({ name: 'eth1' });
    // A device naming another interface of the sandbox is still refused.
    const readded = withInput(['add-iface', 'kd', '--state-dir', stateDirectory()], { name: 'eth1' });
    expect(readded.status, readded.stderr).toBe(0);
    const mixed = withInput(['del-iface', 'kd', '--state-dir', stateDirectory()], { name: 'eth1', device: 'eth0' });
    expect(mixed.status).toBe(2);
    expect(mixed.stderr).toContain('invalid interface.device: "eth0"');
    pod.exec('ip', ['link', 'del', 'eth1']);
    expect(vcnet(['detach', '--sandbox', 'kd', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('update-routes with null changes nothing, as Kata sends no request for a nil route list', () => {
    const { pod } = makePod();
    const run = (json: unknown) => withInput(['update-routes', 'kn', '--state-dir', stateDirectory()], json);
    expect(vcnet(['attach', '--sandbox', 'kn', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    const route = { dest: '10.99.0.0/16', gateway: '10.200.0.1', device: 'eth0' };
    expect(run([route]).status).toBe(0);
    const statePath = join(stateDirectory(), 'kn', 'state.json');
    const recorded = readFileSync(statePath, 'utf8');
    const listed = () => JSON.parse(vcnet(['list-routes', 'kn', '--state-dir', stateDirectory(), '--json']).stdout);
    expect(listed()).toEqual([expect.objectContaining({ dest: '10.99.0.0/16' })]);
    // Top-level null and the Routes wrapper holding null: Kata's `if routes != nil` sends nothing.
    for (const json of [null, { Routes: null }]) {
      const kept = run(json);
      expect(kept.status, kept.stderr).toBe(0);
      // What kata-runtime prints for the nil result.
      expect(kept.stdout).toBe('null\n');
      expect(kept.stderr).toContain('nothing changed');
      expect(readFileSync(statePath, 'utf8')).toBe(recorded);
      expect(listed()).toEqual([expect.objectContaining({ dest: '10.99.0.0/16' })]);
    }
    // A null route in the list is no route: refused, nothing changed.
    const refused = run([null]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/invalid routes\[0\]: null/);
    expect(readFileSync(statePath, 'utf8')).toBe(recorded);
    // [] is the empty set: every route goes, as Kata sends it.
    for (const json of [[], { Routes: [] }]) {
      expect(run([route]).status).toBe(0);
      const cleared = run(json);
      expect(cleared.status, cleared.stderr).toBe(0);
      expect(cleared.stdout).toBe('[]\n');
      expect(listed()).toEqual([]);
    }
    expect(vcnet(['detach', '--sandbox', 'kn', '--state-dir', stateDirectory()]).status).toBe(0);
  });

  it('takes an IPv6 address without a family and raw_flags NOARP, and keeps the route set true to the NICs', () => {
    const { pod } = makePod();
    const run = (args: string[], json?: unknown) =>
      json === undefined
        ? vcnet([...args, '--state-dir', stateDirectory()])
        : withInput([...args, '--state-dir', stateDirectory()], json);
    expect(run(['attach', '--sandbox', 'k5', '--netns', pod.path]).status).toBe(0);

    // Kata 1.x and protobuf-JSON leave the family out (v4 is its zero value): the address decides.
    const added = run(['add-iface', 'k5'], {
      name: 'eth1',
      hwAddr: '02:42:ac:11:00:09',
      type: 'tap',
      raw_flags: 128,
      IPAddresses: [
        { address: 'fd00:300::51', mask: '64' },
        { Family: 0, Address: '172.17.0.9', Mask: '16' },
      ],
    });
    expect(added.status, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({
      name: 'eth1',
      raw_flags: 128,
      IPAddresses: [
        { family: 1, address: 'fd00:300::51', mask: '64' },
        { family: 0, address: '172.17.0.9', mask: '16' },
      ],
    });
    expect(JSON.parse(run(['list-ifaces', 'k5', '--json']).stdout)[1]).toMatchObject({ name: 'eth1', raw_flags: 128 });

    // update-routes gives the full set, as Kata's agent takes it: list-routes shows exactly that.
    const given = [{ dest: '192.168.50.0/24', gateway: '172.17.0.1', device: 'eth1' }];
    expect(run(['update-routes', 'k5'], given).status).toBe(0);
    const routesOf = () =>
      JSON.parse(run(['list-routes', 'k5', '--json']).stdout) as Array<{ dest: string; device: string }>;
    expect(routesOf()).toEqual([expect.objectContaining(given[0])]);

    // A NIC added later brings the routes its pod link has (vcnet's add-iface sends them, Kata's does not).
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
    pod.exec('ip', ['link', 'set', 'peer7', 'up']);
    pod.exec('ip', ['link', 'set', 'eth7', 'up']);
    pod.exec('ip', ['addr', 'add', '10.77.0.2/24', 'dev', 'eth7']);
    pod.exec('ip', ['route', 'add', '10.99.0.0/16', 'via', '10.77.0.1', 'dev', 'eth7']);
    // raw_flags reaches the guest NIC for an existing link too (Kata sends the caller's Interface).
    const eth7 = run(['add-iface', 'k5'], { name: 'eth7', raw_flags: 128 });
    expect(eth7.status, eth7.stderr).toBe(0);
    expect(JSON.parse(eth7.stdout)).toMatchObject({ name: 'eth7', raw_flags: 128 });
    expect(routesOf()).toEqual([
      expect.objectContaining(given[0]),
      expect.objectContaining({ dest: '10.99.0.0/16', gateway: '10.77.0.1', device: 'eth7' }),
    ]);

    // A name and a MAC naming two NICs is refused: Kata would remove the MAC's, vcnet the name's.
    const eth0Mac = (JSON.parse(run(['list-ifaces', 'k5', '--json']).stdout)[0] as { hwAddr: string }).hwAddr;
    const mismatch = run(['del-iface', 'k5'], { name: 'eth1', hwAddr: eth0Mac });
    expect(mismatch.status).toBe(2);
    expect(mismatch.stderr).toMatch(/interface\.hwAddr.*the MAC of eth1 \(02:42:ac:11:00:09\)/);
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap1_kata');

    // The removed NIC's routes go with it, and list-routes' output is again valid update-routes input.
    expect(run(['del-iface', 'k5'], { hwAddr: '02:42:AC:11:00:09' }).status).toBe(0);
    expect(routesOf()).toEqual([expect.objectContaining({ dest: '10.99.0.0/16', device: 'eth7' })]);
    const state = JSON.parse(readFileSync(join(stateDirectory(), 'k5', 'state.json'), 'utf8'));
    expect(state.guestRoutes).toEqual([expect.objectContaining({ dest: '10.99.0.0/16', device: 'eth7' })]);
    const after = run(['list-routes', 'k5', '--json']);
    const fed = spawnSync(process.execPath, [CLI, 'update-routes', 'k5', '-', '--state-dir', stateDirectory()], {
      input: after.stdout,
      encoding: 'utf8',
    });
    expect(fed.status, fed.stderr).toBe(0);
    expect(run(['detach', '--sandbox', 'k5']).status).toBe(0);
  });

  it("takes the requests Kata's runtime logs as it sends them (protobuf JSON: the request around it, mtu as a string)", () => {
    const { pod } = makePod();
    const run = (args: string[], text: string) => {
      const file = join(stateDirectory(), `request-${Math.random().toString(36).slice(2)}.json`);
      writeFileSync(file, text);
      return vcnet([...args.slice(0, 2), file, '--state-dir', stateDirectory()]);
    };
    expect(vcnet(['attach', '--sandbox', 'kp', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
    const mac = pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth7')[0]!.address;
    // kata_agent.go's trace line "sending request" (protojson.Marshal), with its spacing: v4 is the
    // family's zero value, left out; a uint64 is a string.
    const added = run(
      ['add-iface', 'kp'],
      `{"interface":{"device":"eth7", "name":"eth7", "IPAddresses":[{"address":"10.77.0.2", "mask":"24"}], "mtu":"1400", "hwAddr":"${mac}", "type":"veth"}}`,
    );
    expect(added.status, added.stderr).toBe(0);
    expect(added.stderr).not.toContain('ignored');
    expect(JSON.parse(added.stdout)).toMatchObject({
      name: 'eth7',
      mtu: 1400,
      hwAddr: mac,
      IPAddresses: [{ family: 0, address: '10.77.0.2', mask: '24' }],
    });
    const routesOf = () =>
      JSON.parse(vcnet(['list-routes', 'kp', '--state-dir', stateDirectory(), '--json']).stdout) as unknown[];
    const routed = run(
      ['update-routes', 'kp'],
      '{"routes":{"Routes":[{"dest":"10.99.0.0/16", "gateway":"10.77.0.1", "device":"eth7"}, {"dest":"10.77.0.0/24", "device":"eth7", "source":"10.77.0.2", "scope":253}]}}',
    );
    expect(routed.status, routed.stderr).toBe(0);
    expect(routesOf()).toEqual([
      expect.objectContaining({ dest: '10.99.0.0/16', gateway: '10.77.0.1', device: 'eth7' }),
      expect.objectContaining({ dest: '10.77.0.0/24', source: '10.77.0.2', scope: 253 }),
    ]);
    // The request's key in another case, as Go's encoding/json reads the request: it was refused
    // ("routes: {}"), and del-iface's {"Interface":...} read as an empty Interface.
    const recased = run(
      ['update-routes', 'kp'],
      '{"ROUTES":{"Routes":[{"dest":"10.98.0.0/16", "gateway":"10.77.0.1", "device":"eth7"}]}}',
    );
    expect(recased.status, recased.stderr).toBe(0);
    expect(routesOf()).toEqual([expect.objectContaining({ dest: '10.98.0.0/16', gateway: '10.77.0.1' })]);
    // No routes: protojson leaves the empty list out, and Kata sent the request, so every route goes.
    const cleared = run(['update-routes', 'kp'], '{"routes":{}}');
    expect(cleared.status, cleared.stderr).toBe(0);
    expect(routesOf()).toEqual([]);
    const removed = run(['del-iface', 'kp'], `{"Interface":{"name":"eth7", "hwAddr":"${mac}"}}`);
    expect(removed.status, removed.stderr).toBe(0);
    expect(removed.stderr).not.toContain('ignored');
    expect(vcnet(['detach', '--sandbox', 'kp', '--state-dir', stateDirectory()]).status).toBe(0);
  });

  it('refuses MACs no NIC can have and route destinations with host bits, naming the network meant', () => {
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'k6', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    const before = fingerprint(pod);
    for (const hwAddr of ['00:00:00:00:00:00', '01:00:5e:00:00:01']) {
      const refused = withInput(['add-iface', 'k6', '--state-dir', stateDirectory()], {
        name: 'eth1',
        type: 'tap',
        hwAddr,
      });
      expect(refused.status).toBe(2);
      expect(refused.stderr).toMatch(/interface\.hwAddr.*unicast/);
    }
    const hostBits = withInput(
      ['update-routes', 'k6', '--state-dir', stateDirectory()],
      [{ dest: '10.98.0.1/16', device: 'eth0' }],
    );
    expect(hostBits.status).toBe(2);
    expect(hostBits.stderr).toContain('"10.98.0.0/16"');
    expect(fingerprint(pod)).toEqual(before);
    expect(vcnet(['detach', '--sandbox', 'k6', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});

describe('disable_new_netns: sandboxes share the host namespace', () => {
  it("gives each sandbox's hot-added tap a name no other sandbox has, and detach removes only its own", () => {
    // vcnet runs inside a test namespace (ip netns exec), which is then the "host" namespace the
    // taps go to: no test link ever reaches the real host.
    const host = makeNamespace('host');
    const before = fingerprint(host);
    const inHost = (args: string[]) => {
      const result = spawnSync('ip', ['netns', 'exec', host.name, process.execPath, CLI, ...args], {
        encoding: 'utf8',
      });
      return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
    };
    const tap = (mac: string) => ({
      name: 'net0',
      type: 'tap',
      hwAddr: mac,
      mtu: 1500,
      IPAddresses: [{ family: 0, address: '10.5.0.2', mask: '24' }],
    });
    const names = () => host.ipJson<Array<{ ifname: string; group: string }>>('-d', 'link', 'show');
    for (const [sandbox, mac] of [
      ['a', '02:00:00:00:00:0a'],
      ['b', '02:00:00:00:00:0b'],
    ] as const) {
      const attached = inHost([
        'attach',
        '--sandbox',
        sandbox,
        '--disable-new-netns',
        '--model',
        'none',
        '--state-dir',
        stateDirectory(),
      ]);
      expect(attached.status, attached.stderr).toBe(0);
      const file = join(stateDirectory(), `${sandbox}.json`);
      writeFileSync(file, JSON.stringify(tap(mac)));
      const added = inHost(['add-iface', sandbox, file, '--state-dir', stateDirectory()]);
      expect(added.status, added.stderr).toBe(0);
      expect(JSON.parse(added.stdout)).toMatchObject({ name: 'net0', hwAddr: mac, type: 'tap' });
    }
    // Each sandbox's first tap: tap0_kata for a, tap1_kata for b (tap0_kata is a's), both vcnet's. By
    // name: their ifindexes are chosen at random, so `ip link` lists them in no fixed order.
    const byName = (a: { ifname: string }, b: { ifname: string }) => a.ifname.localeCompare(b.ifname);
    expect(
      names()
        .filter((link) => link.ifname.endsWith('_kata'))
        .sort(byName),
    ).toEqual([
      expect.objectContaining({ ifname: 'tap0_kata', group: '30307' }),
      expect.objectContaining({ ifname: 'tap1_kata', group: '30307' }),
    ]);
    expect(inHost(['detach', '--sandbox', 'b', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(names().map((link) => link.ifname)).toContain('tap0_kata');
    expect(names().map((link) => link.ifname)).not.toContain('tap1_kata');
    expect(inHost(['detach', '--sandbox', 'a', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(fingerprint(host)).toEqual(before);
  });
});
