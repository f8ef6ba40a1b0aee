/**
 * The `vcnet` binary end to end in fresh namespaces: scan, attach, detach, bench; bad input changes
 * nothing; two processes at once; kill -9 half way, then detach leaves nothing behind.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, pauseAfterTap, stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest();

describe('vcnet scan', () => {
  it('lists each interface with the endpoint it would become, or why not', () => {
    const { pod } = makePod();
    pod.exec('ip', ['link', 'add', 'br9', 'type', 'bridge']);
    const result = vcnet(['scan', '--netns', pod.path, '--json']);
    expect(result.status).toBe(0);
    const rows = JSON.parse(result.stdout) as Array<{
      name: string;
      endpointType: string | null;
      unsupported: { message: string } | null;
      skipped: string | null;
      addresses: string[];
    }>;
    expect(rows.find((row) => row.name === 'eth0')).toMatchObject({ endpointType: 'virtual' });
    expect(rows.find((row) => row.name === 'eth0')?.addresses).toContain('10.200.0.2/24');
    expect(rows.find((row) => row.name === 'br9')?.unsupported?.message).toBe(
      'unsupported network interface br9: kind bridge',
    );
    // Without an address attach leaves it alone, and scan says so.
    expect(rows.find((row) => row.name === 'br9')?.skipped).toBe('no address');
    expect(rows.find((row) => row.name === 'eth0')?.skipped).toBeNull();
    const human = vcnet(['scan', '--netns', pod.path]);
    expect(human.stdout).toMatch(/^NAME\s+KIND\s+MTU/m);
    expect(human.stdout).toMatch(/eth0\s+veth\s+1500/);
    expect(human.stdout).toMatch(/br9\s+bridge.*skipped: no address/);
  });
});

describe('vcnet attach / detach', () => {
  it('attaches, prints Kata-shaped guest structures, and detach restores the namespace', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const attached = vcnet([
      'attach',
      '--sandbox',
      'sb1',
      '--netns',
      pod.path,
      '--state-dir',
      stateDirectory(),
      '--json',
    ]);
    // Nothing on stderr: why the printed QEMU NIC has no vhost-net is part of the answer (hypervisor.vhostNet).
    expect(attached.stderr).toBe('');
    expect(attached.status).toBe(0);
    const output = JSON.parse(attached.stdout);
    expect(output.hypervisor.vhostNet).toBe(
      existsSync('/dev/vhost-net') ? 'on' : 'off: /dev/vhost-net is missing (load the vhost_net kernel module)',
    );
    expect(output.endpoints).toEqual([
      expect.objectContaining({ name: 'eth0', type: 'virtual', model: 'tcfilter', tap: 'tap0_kata' }),
    ]);
    expect(output.interfaces[0]).toMatchObject({
      name: 'eth0',
      IPAddresses: expect.arrayContaining([{ family: 0, address: '10.200.0.2', mask: '24' }]),
    });
    expect(output.routes).toEqual(
      expect.arrayContaining([expect.objectContaining({ dest: '10.100.0.0/16', mtu: 1400 })]),
    );
    expect(existsSync(join(stateDirectory(), 'sb1', 'state.json'))).toBe(true);
    // No --config, so no Kata file was read: Kata's cold_plug_vfio default ("no-port", which refuses a
    // physical NIC here and in a later add-iface, which reads the record) must not be recorded.
    const record = JSON.parse(readFileSync(join(stateDirectory(), 'sb1', 'state.json'), 'utf8'));
    expect(record.network.config).toMatchObject({ model: 'tcfilter', queues: 1 });
    expect(record.network.config).not.toHaveProperty('coldPlugVfio');
    expect(pod.exec('ip', ['link', 'show', 'tap0_kata'])).toContain('tap0_kata');

    const again = vcnet(['attach', '--sandbox', 'sb1', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('sandbox sb1 is already attached');

    const detached = vcnet(['detach', '--sandbox', 'sb1', '--state-dir', stateDirectory()]);
    expect(detached.status).toBe(0);
    expect(detached.stdout).toMatch(/detached sandbox sb1/);
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(join(stateDirectory(), 'sb1'))).toBe(false);

    const twice = vcnet(['detach', '--sandbox', 'sb1', '--state-dir', stateDirectory()]);
    expect(twice.status).toBe(0);
    expect(twice.stdout).toContain('sandbox sb1 is not attached: nothing to do');
  });

  it('refuses bad input with exit code 2, naming the flag, and changes nothing', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    for (const [flags, field] of [
      [['--model', 'bridged'], '--model'],
      [['--queues', '0'], '--queues'],
      [['--vhost-net', 'maybe'], '--vhost-net'],
      [['--model', ''], 'invalid --model: "" (accepted: '],
      [['--disable-new-netns', '--model', 'none'], 'no --netns with --disable-new-netns'],
    ] as const) {
      const result = vcnet([
        'attach',
        '--sandbox',
        'bad',
        '--netns',
        pod.path,
        '--state-dir',
        stateDirectory(),
        ...flags,
      ]);
      expect(result.status).toBe(2);
      expect(result.stderr).toContain(field);
      expect(result.stderr).toMatch(/hint:/);
    }
    const missing = vcnet([
      'attach',
      '--sandbox',
      'bad',
      '--netns',
      '/var/run/netns/vcnet-no-such',
      '--state-dir',
      stateDirectory(),
    ]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('/var/run/netns/vcnet-no-such');
    const badId = vcnet(['attach', '--sandbox', '../escape', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(badId.status).toBe(2);
    expect(fingerprint(pod)).toEqual(before);
    expect(readdirSync(stateDirectory())).toEqual([]);
  });

  it('refuses a pod whose tap name another link has, naming that link, and changes nothing', () => {
    // A persistent tap left under the name the second endpoint's tap would get (by Kata, an operator,
    // a crash): the first endpoint is planned and attached, the second is not, and all of it goes.
    const { pod } = makePod({ interfaces: 2 });
    pod.exec('ip', ['tuntap', 'add', 'dev', 'tap1_kata', 'mode', 'tap']);
    const before = fingerprint(pod);
    for (const model of ['tcfilter', 'macvtap', 'none']) {
      const args = ['attach', '--sandbox', 'taken', '--netns', pod.path, '--model', model];
      const dry = vcnet([...args, '--dry-run']);
      expect(dry.status, dry.stderr).toBe(1);
      expect(dry.stderr).toContain('a link named tap1_kata is already in the namespace (index');
      const attached = vcnet([...args, '--state-dir', stateDirectory()]);
      expect(attached.status, attached.stderr).toBe(1);
      expect(attached.stderr).toMatch(
        /attaching eth1 failed: a link named tap1_kata is already in the namespace \(index \d+, tun\)/,
      );
      // Commands to paste on the host: they name the pod's namespace (a bare `ip` acts on the host's links).
      expect(attached.stderr).toContain(
        `hint: find who made it (\`ip -n ${pod.name} -d link show tap1_kata\`); once nothing uses it, \`ip -n ${pod.name} link del tap1_kata\``,
      );
      expect(fingerprint(pod), model).toEqual(before);
      expect(existsSync(join(stateDirectory(), 'taken', 'state.json')), model).toBe(false);
    }
  });

  it('names the sandbox whose tap is in the way when a second sandbox attaches the same namespace', () => {
    const { pod } = makePod();
    expect(vcnet(['attach', '--sandbox', 'sb-a', '--netns', pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    const attached = fingerprint(pod);
    const second = vcnet(['attach', '--sandbox', 'sb-b', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(
      /a link named tap0_kata is already in the namespace \(index \d+, tun, made by sandbox sb-a\)/,
    );
    expect(second.stderr).toContain(
      `hint: one namespace holds one sandbox's NICs: detach sandbox sb-a first (its record: ${join(stateDirectory(), 'sb-a', 'state.json')})`,
    );
    // --json: the name and code a program matches on. Refused before any endpoint is attached, so
    // no AttachError wraps it.
    const json = vcnet(['attach', '--sandbox', 'sb-b', '--netns', pod.path, '--state-dir', stateDirectory(), '--json']);
    expect(json.status).toBe(1);
    expect(JSON.parse(json.stdout).error).toMatchObject({
      name: 'LinkNameTakenError',
      code: 'VCNET_LINK_NAME_TAKEN',
      hint: expect.stringContaining('detach sandbox sb-a first'),
    });
    // --dry-run finds it before anything would change, and names the owner the same way.
    const dry = vcnet([
      'attach',
      '--sandbox',
      'sb-b',
      '--netns',
      pod.path,
      '--state-dir',
      stateDirectory(),
      '--dry-run',
    ]);
    expect(dry.status).toBe(1);
    expect(dry.stderr).toMatch(/\(index \d+, tun, made by sandbox sb-a\)/);
    expect(dry.stderr).toContain('detach sandbox sb-a first');
    expect(fingerprint(pod)).toEqual(attached);
    expect(existsSync(join(stateDirectory(), 'sb-b'))).toBe(false);
    expect(vcnet(['detach', '--sandbox', 'sb-a', '--state-dir', stateDirectory()]).status).toBe(0);
  });

  it("refuses one of a running VM's two sockets without the other, before anything is made", () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const sockets = join(stateDirectory(), 'vm.sock');
    const cases: Array<[string[], string]> = [
      [['--qmp', sockets], '--agent'],
      [['--agent', sockets], '--qmp'],
      [['--hypervisor', 'clh', '--api-socket', sockets], '--agent'],
    ];
    for (const [flags, missing] of cases) {
      const attached = vcnet([
        'attach',
        '--sandbox',
        'half',
        '--netns',
        pod.path,
        ...flags,
        '--state-dir',
        stateDirectory(),
      ]);
      expect(attached.status, flags.join(' ')).toBe(2);
      expect(attached.stderr, flags.join(' ')).toContain(`invalid ${missing}: not given (accepted: the running VM's`);
    }
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(join(stateDirectory(), 'half'))).toBe(false);
  });

  it("names each hypervisor's control socket flag when QEMU is given --api-socket or clh --qmp", () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const sockets = join(stateDirectory(), 'vm.sock');
    const cases: Array<[string[], string, string]> = [
      [['--api-socket', sockets, '--agent', sockets], '--api-socket', 'give it as --qmp'],
      [['--hypervisor', 'clh', '--qmp', sockets, '--agent', sockets], '--qmp', 'give it as --api-socket'],
    ];
    for (const [flags, refused, remedy] of cases) {
      const attached = vcnet([
        'attach',
        '--sandbox',
        'wrong',
        '--netns',
        pod.path,
        ...flags,
        '--state-dir',
        stateDirectory(),
      ]);
      expect(attached.status, flags.join(' ')).toBe(2);
      expect(attached.stderr, flags.join(' ')).toContain(
        `invalid ${refused}: ${JSON.stringify(sockets)} (accepted: only with --hypervisor`,
      );
      expect(attached.stderr, flags.join(' ')).toContain(remedy);
    }
    expect(fingerprint(pod)).toEqual(before);
    expect(existsSync(join(stateDirectory(), 'wrong'))).toBe(false);
  });

  it('lets two processes attach two sandboxes at once, and one sandbox only once', async () => {
    const first = makePod();
    const second = makePod();
    const [a, b] = await Promise.all([
      vcnetAsync(['attach', '--sandbox', 'c1', '--netns', first.pod.path, '--state-dir', stateDirectory()]).done,
      vcnetAsync(['attach', '--sandbox', 'c2', '--netns', second.pod.path, '--state-dir', stateDirectory()]).done,
    ]);
    expect([a.status, b.status]).toEqual([0, 0]);
    const third = makePod();
    const [c, d] = await Promise.all([
      vcnetAsync(['attach', '--sandbox', 'c3', '--netns', third.pod.path, '--state-dir', stateDirectory()]).done,
      vcnetAsync(['attach', '--sandbox', 'c3', '--netns', third.pod.path, '--state-dir', stateDirectory()]).done,
    ]);
    expect([c.status, d.status].sort()).toEqual([0, 1]);
    expect(c.stderr + d.stderr).toContain('sandbox c3 is already attached');
    for (const id of ['c1', 'c2', 'c3'])
      expect(vcnet(['detach', '--sandbox', id, '--state-dir', stateDirectory()]).status).toBe(0);
    expect(third.pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
  });

  it('after kill -9 in the middle of attach, detach removes everything that was made', async () => {
    const { pod } = makePod({ interfaces: 2 });
    const before = fingerprint(pod);
    const run = vcnetAsync(['attach', '--sandbox', 'crash', '--netns', pod.path, '--state-dir', stateDirectory()], {
      ...pauseAfterTap('tap1_kata'),
    });
    // Wait until the second tap exists: the first endpoint is complete, the second half way.
    const deadline = Date.now() + 20_000;
    while (!run.output().stderr.includes('paused after creating tap1_kata')) {
      if (Date.now() > deadline) throw new Error(`attach never paused: ${run.output().stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    run.child.kill('SIGKILL');
    await run.done;
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap1_kata');
    const detached = vcnet(['detach', '--sandbox', 'crash', '--state-dir', stateDirectory()]);
    expect(detached.status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe('dan_conf', () => {
  it('refuses a sandbox Kata would configure from its DAN file, naming the key, and attaches one without a file', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const dans = join(stateDirectory(), 'dans');
    mkdirSync(dans);
    writeFileSync(join(dans, 'dan1.json'), '{"netns":"","devices":[]}');
    const config = join(stateDirectory(), 'configuration.toml');
    // Every configuration Kata ships sets dan_conf.
    writeFileSync(config, `[hypervisor.qemu]\n[runtime]\ndan_conf = "${dans}"\n`);
    const attach = (sandbox: string) =>
      vcnet(['attach', '--sandbox', sandbox, '--netns', pod.path, '--config', config, '--state-dir', stateDirectory()]);
    const refused = attach('dan1');
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain('runtime.dan_conf');
    expect(refused.stderr).toContain(join(dans, 'dan1.json'));
    expect(existsSync(join(stateDirectory(), 'dan1'))).toBe(false);
    expect(fingerprint(pod)).toEqual(before);
    // Kata scans the namespace of a sandbox without a DAN file, and so does vcnet.
    const attached = attach('dan2');
    expect(attached.status, attached.stderr).toBe(0);
    expect(vcnet(['detach', '--sandbox', 'dan2', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe('logs', () => {
  it('writes JSON log lines with sandbox, netns, endpoint and operation to stderr, keeping stdout clean', () => {
    const { pod } = makePod();
    const attached = vcnet([
      '--log-level',
      'info',
      '--log-format',
      'json',
      'attach',
      '--sandbox',
      'lg',
      '--netns',
      pod.path,
      '--state-dir',
      stateDirectory(),
      '--json',
    ]);
    expect(attached.status).toBe(0);
    expect(() => JSON.parse(attached.stdout)).not.toThrow();
    const lines = attached.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          sandbox: 'lg',
          netns: pod.path,
          endpoint: 'eth0',
          operation: 'attach',
          msg: 'endpoint attached',
        }),
      ]),
    );
    const detached = vcnet([
      '--log-level',
      'info',
      '--log-format',
      'json',
      'detach',
      '--sandbox',
      'lg',
      '--state-dir',
      stateDirectory(),
    ]);
    expect(detached.stderr).toContain('"operation":"detach"');
  });
});

describe('vcnet gc', () => {
  it('removes the taps and filters of a sandbox whose state is gone, and nothing of a live one', () => {
    const lost = makePod();
    const live = makePod();
    expect(
      vcnet(['attach', '--sandbox', 'lost', '--netns', lost.pod.path, '--state-dir', stateDirectory()]).status,
    ).toBe(0);
    expect(
      vcnet(['attach', '--sandbox', 'live', '--netns', live.pod.path, '--state-dir', stateDirectory()]).status,
    ).toBe(0);
    rmSync(join(stateDirectory(), 'lost'), { recursive: true });
    const liveBefore = fingerprint(live.pod);
    const namespaces = ['--netns', lost.pod.path, live.pod.path];

    const dry = vcnet(['gc', '--dry-run', '--state-dir', stateDirectory(), ...namespaces, '--json']);
    expect(dry.status).toBe(0);
    const planned = JSON.parse(dry.stdout) as {
      removed: Array<{ kind: string; name: string; namespacePath: string }>;
      kept: number;
    };
    // The record removed by hand left its lock file: it goes too (it belongs to no namespace). The
    // ingress qdisc goes with the last redirect gc removes from eth0.
    expect(planned.removed.map((item) => `${item.kind}:${item.name}`).sort()).toEqual([
      'filter:eth0',
      'link:tap0_kata',
      'qdisc:eth0',
      'state:lost',
    ]);
    expect(
      planned.removed.filter((item) => item.kind !== 'state').every((item) => item.namespacePath === lost.pod.path),
    ).toBe(true);
    expect(planned.kept).toBe(1);
    expect(lost.pod.exec('ip', ['link', 'show'])).toContain('tap0_kata');

    const collected = vcnet(['gc', '--state-dir', stateDirectory(), ...namespaces]);
    expect(collected.status).toBe(0);
    expect(collected.stdout).toContain('removed 4 item(s)');
    expect(existsSync(join(stateDirectory(), '.locks', 'lost'))).toBe(false);
    expect(lost.pod.exec('ip', ['link', 'show'])).not.toContain('tap0_kata');
    expect(lost.pod.tcJson('filter', 'show', 'dev', 'eth0', 'ingress')).toEqual([]);
    expect(
      lost.pod
        .tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', 'eth0')
        .filter((qdisc) => qdisc.kind === 'ingress'),
    ).toEqual([]);
    expect(fingerprint(live.pod)).toEqual(liveBefore);

    // A record whose namespace was deleted is dropped (--netns names the path the record names).
    live.pod.delete();
    const records = vcnet(['gc', '--state-dir', stateDirectory(), '--netns', live.pod.path, '--json']);
    expect(JSON.parse(records.stdout).removed).toEqual([expect.objectContaining({ kind: 'state', name: 'live' })]);
    expect(existsSync(join(stateDirectory(), 'live'))).toBe(false);
  });
});

describe('vcnet gc --netns', () => {
  it('refuses a path that is not a network namespace, as every command does', () => {
    const { pod } = makePod();
    for (const path of ['/etc/hostname', '/var/run/netns', '']) {
      for (const dry of [[], ['--dry-run']]) {
        const gc = vcnet(['gc', ...dry, '--netns', path, pod.path, '--state-dir', stateDirectory(), '--json']);
        expect(gc.status, `${path}: ${gc.stdout}`).toBe(2);
        const { error } = JSON.parse(gc.stdout) as { error: { code: string; message: string } };
        expect(error.code, path).toBe('VCNET_NETNS_INVALID');
        if (path !== '') expect(error.message, path).toContain(JSON.stringify(path));
      }
    }
    // A real namespace with nothing to collect is fine.
    const fine = vcnet(['gc', '--netns', pod.path, '--state-dir', stateDirectory()]);
    expect(fine.status, fine.stderr).toBe(0);
    expect(fine.stdout).toContain('nothing to collect');
  });
});

describe('vcnet gc --netns of a namespace gone with nothing recorded', () => {
  it('collects nothing, exit 0, and says no namespace is there and no record names it', () => {
    const { pod } = makePod();
    for (const path of [`/var/run/netns/vcnet-missing-${process.pid}`, '/nonexist']) {
      for (const dry of [[], ['--dry-run']]) {
        const gc = vcnet(['gc', ...dry, '--netns', path, pod.path, '--state-dir', stateDirectory(), '--json']);
        expect(gc.status, `${path}: ${gc.stdout}${gc.stderr}`).toBe(0);
        const report = JSON.parse(gc.stdout) as { removed: unknown[]; absent: unknown[]; failures: unknown[] };
        expect(report.removed).toEqual([]);
        expect(report.failures).toEqual([]);
        expect(report.absent).toEqual([
          {
            namespacePath: path,
            detail: 'no namespace is at this path and no record names it: nothing to collect there',
          },
        ]);
      }
    }
    const human = vcnet(['gc', '--netns', '/nonexist', '--state-dir', stateDirectory()]);
    expect(human.status, human.stderr).toBe(0);
    expect(human.stdout).toContain('nothing to collect');
    expect(human.stderr).toContain('vcnet: gc: /nonexist: no namespace is at this path and no record names it');
  });

  it('refuses a bare `ip netns` name and a path whose directory does not exist (exit 2): a typo, not a pod gone', () => {
    const { pod } = makePod();
    for (const path of [`vcnet-missing-${process.pid}`, `/var/rnu/netns/vcnet-missing-${process.pid}`]) {
      const gc = vcnet(['gc', '--netns', path, pod.path, '--state-dir', stateDirectory(), '--json']);
      expect(gc.status, `${path}: ${gc.stdout}${gc.stderr}`).toBe(2);
      const { error } = JSON.parse(gc.stdout) as { error: { code: string; message: string; hint: string } };
      expect(error.code).toBe('VCNET_NETNS_INVALID');
      // Named as the flag the user typed (it said `netns "..."`).
      expect(error.message).toMatch(
        new RegExp(
          `^--netns ${JSON.stringify(path).replace(/[./]/g, '\\$&')}: no such file, and no vcnet record names it`,
        ),
      );
      expect(error.hint).toContain('/var/run/netns/NAME');
    }
  });
});

describe('vcnet bench attach', () => {
  it('finds ip and tc without PATH (env -i), in /usr/sbin or /sbin', () => {
    const result = spawnSync(process.execPath, [CLI, 'bench', 'attach', '--iterations', '1', '--json'], {
      encoding: 'utf8',
      env: {},
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout.trim().split('\n').pop()!).iproute2_attach_us).toBeGreaterThan(0);
  });

  it('prints one JSON object with the figures as its last line', () => {
    const result = vcnet(['bench', 'attach', '--endpoints', '2', '--iterations', '2', '--json']);
    expect(result.status).toBe(0);
    const last = JSON.parse(result.stdout.trim().split('\n').pop()!);
    for (const key of [
      'attach_us',
      'detach_us',
      'iproute2_attach_us',
      'iproute2_detach_us',
      'floor_us',
      'floor_cpu_us',
    ]) {
      expect(typeof last[key]).toBe('number');
      expect(last[key]).toBeGreaterThan(0);
    }
    // The floor is part of the attach, measured in the same iterations.
    expect(last.floor_us).toBeLessThanOrEqual(last.attach_us);
    expect(last.floor_ratio).toBeCloseTo(last.attach_us / last.floor_us, 0);
    expect(last.syscalls_us.tunIoctl.wall).toBeGreaterThan(0);
    // What is not floor is split into the other accounted syscalls and the rest, adding up to the attach.
    const { syscalls, other } = last.outside_floor_us;
    expect(syscalls).toBeGreaterThan(0);
    expect(Math.abs(last.floor_us + syscalls + other - last.attach_us)).toBeLessThanOrEqual(other === 0 ? Infinity : 2);
    expect(last).toMatchObject({ endpoints: 2, iterations: 2 });
  });
});

describe('vcnet attach --vhost-user-store', () => {
  it('builds the vhost-user endpoint scan --vhost-user-store predicts, and detach forgets it', async () => {
    const { pod } = makePod();
    const store = mkdtempSync(join(tmpdir(), 'vcnet-vhost-user-'));
    mkdirSync(join(store, 'vhostuser_10.200.0.2'));
    const socketPath = join(store, 'vhostuser_10.200.0.2', 'vhu.sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      const scan = JSON.parse(
        vcnet(['scan', '--netns', pod.path, '--vhost-user-store', store, '--json']).stdout,
      ) as Array<{
        name: string;
        endpointType: string | null;
      }>;
      expect(scan.find((row) => row.name === 'eth0')?.endpointType).toBe('vhost-user');
      const before = fingerprint(pod);
      const attached = vcnet([
        'attach',
        '--sandbox',
        'vu',
        '--netns',
        pod.path,
        '--vhost-user-store',
        store,
        '--state-dir',
        stateDirectory(),
        '--json',
      ]);
      expect(attached.status, attached.stderr).toBe(0);
      const result = JSON.parse(attached.stdout) as {
        endpoints: Array<{ name: string; type: string }>;
        hypervisor: { devices: Array<{ config: string[] }> };
      };
      expect(result.endpoints).toEqual([expect.objectContaining({ name: 'eth0', type: 'vhost-user' })]);
      expect(result.hypervisor.devices[0]?.config.join(' ')).toContain(`path=${socketPath}`);
      // A vhost-user NIC is the socket's: nothing is made in the namespace.
      expect(fingerprint(pod)).toEqual(before);
      expect(vcnet(['detach', '--sandbox', 'vu', '--state-dir', stateDirectory()]).status).toBe(0);
      const empty = vcnet([
        'attach',
        '--sandbox',
        'vu',
        '--netns',
        pod.path,
        '--vhost-user-store',
        '',
        '--state-dir',
        stateDirectory(),
      ]);
      expect(empty.status).toBe(2);
      expect(empty.stderr).toContain('invalid --vhost-user-store: "" (accepted: a directory path)');
    } finally {
      server.close();
      rmSync(store, { recursive: true, force: true });
    }
  });
});

describe('vcnet in the environment a hook or sudo gives it', () => {
  // `env -i` leaves nothing; sudo's env_reset leaves its secure_path, HOME, TERM and SUDO_*. vcnet
  // starts no program (netlink, not ip or tc) and reads no HOME. The test run's registry is kept, so
  // the state directory is never registered in the host's /run/vcnet.
  const registry = process.env.VCNET_STATE_REGISTRY ? { VCNET_STATE_REGISTRY: process.env.VCNET_STATE_REGISTRY } : {};
  it.each([
    ['env -i', 'tcfilter', {}],
    ['env -i', 'macvtap', {}],
    [
      "sudo's env_reset",
      'macvtap',
      {
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: '/root',
        TERM: 'dumb',
        SUDO_USER: 'nobody',
        SUDO_UID: '65534',
        SUDO_GID: '65534',
        SUDO_COMMAND: '/usr/bin/vcnet attach',
      },
    ],
  ] as const)(
    'under %s, model %s: attach, list and detach succeed and the pod is as before',
    (_how, model, environment) => {
      const { pod } = makePod();
      const before = fingerprint(pod);
      const run = (args: string[]) =>
        spawnSync(process.execPath, [CLI, ...args, '--state-dir', stateDirectory()], {
          encoding: 'utf8',
          env: { ...registry, ...environment },
        });
      const attached = run(['attach', '--sandbox', 'bare', '--netns', pod.path, '--model', model, '--json']);
      expect(attached.status, attached.stderr).toBe(0);
      expect(JSON.parse(attached.stdout).endpoints).toEqual([expect.objectContaining({ name: 'eth0', model })]);
      const listed = run(['list', '--json']);
      expect(listed.status, listed.stderr).toBe(0);
      expect(listed.stdout).toContain('"bare"');
      const detached = run(['detach', '--sandbox', 'bare']);
      expect(detached.status, detached.stderr).toBe(0);
      expect(fingerprint(pod)).toEqual(before);
    },
  );
});
