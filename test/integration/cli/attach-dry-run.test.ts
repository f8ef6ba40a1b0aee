/**
 * `vcnet attach --dry-run` prints the plan as ip/tc commands. Pasted into a shell inside a fresh pod
 * namespace, they must build the same plumbing `vcnet attach` builds in an identical one (compared by
 * fingerprint, with MACs and indexes, which differ between namespaces, left out). And a dry run
 * changes nothing.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RATE_LIMITED_KATA_CONFIG, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { dryRunCases } from '../../helpers/dry-run-cases.js';
import type { TestNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-dry-');

/** A fingerprint with what differs between two otherwise identical namespaces masked. */
function comparable(namespace: TestNamespace): unknown {
  const text = JSON.stringify(fingerprint(namespace))
    .replace(/([0-9a-f]{2}:){5}[0-9a-f]{2}/g, 'MAC')
    .replace(/fe80::[0-9a-f:]+/g, 'LINKLOCAL')
    .replace(/"ifindex":\d+/g, '"ifindex":0');
  const masked = JSON.parse(text) as Record<string, unknown> & { routes: string[] };
  // Masking changed how the routes sort; and macvtaps get random high indexes (so /dev/tap<index> is
  // unique on the host), so anything listed in index order is compared in name order.
  masked.routes.sort();
  for (const value of Object.values(masked)) {
    if (Array.isArray(value)) value.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  }
  return masked;
}

/**
 * The rate limits of each link as tc prints them: the qdiscs with their options, the htb classes with
 * rate, ceil and bursts, and the filters of every parent (the fingerprint has only kinds and handles).
 */
function shaping(namespace: TestNamespace): unknown {
  const links = namespace.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname);
  return links
    .sort()
    .map((name) => ({
      name,
      // direct_packets_stat counts frames sent while an htb had no class yet: traffic, not plumbing.
      qdiscs: JSON.parse(
        JSON.stringify(namespace.tcJson<unknown[]>('qdisc', 'show', 'dev', name)).replace(
          /"direct_packets_stat":\d+/g,
          '"direct_packets_stat":0',
        ),
      ) as unknown[],
      // This iproute2 prints classes as text only (no JSON for `tc -j class show`).
      classes: namespace
        .exec('tc', ['class', 'show', 'dev', name])
        .split('\n')
        .filter((line) => line.trim() !== '')
        .sort(),
      rootFilters: namespace.tcJson<unknown[]>('filter', 'show', 'dev', name, 'root'),
    }))
    .filter((link) => link.classes.length > 0 || link.rootFilters.length > 0 || link.qdiscs.length > 0);
}

const cases = dryRunCases();

describe('vcnet attach --dry-run', () => {
  for (const { model, extra, shape, label } of cases) {
    it(`${model} ${label}: the printed commands, run in a fresh namespace, build what attach builds`, () => {
      const { pod: pasted } = makePod({ interfaces: 2 });
      const { pod: attached } = makePod({ interfaces: 2 });
      shape?.(pasted);
      shape?.(attached);
      const untouched = fingerprint(pasted);

      const dry = vcnet([
        'attach',
        '--dry-run',
        '--sandbox',
        'dry',
        '--netns',
        pasted.path,
        '--model',
        model,
        ...extra,
      ]);
      expect(dry.status, dry.stderr).toBe(0);
      // A dry run changes nothing and records nothing.
      expect(fingerprint(pasted)).toEqual(untouched);
      expect(readdirSync(stateDirectory())).toEqual([]);
      expect(dry.stdout).toContain(
        model === 'macvtap' ? 'type macvtap mode bridge' : 'ip tuntap add dev tap0_kata mode tap vnet_hdr',
      );
      // A new macvtap at a high index as attach makes it, so its /dev/tap<index> is not another's.
      for (const [, index] of dry.stdout.matchAll(/ index (\d+) type macvtap/g))
        expect(Number(index)).toBeGreaterThanOrEqual(8192);
      if (model === 'macvtap') expect(dry.stdout).toMatch(/ index \d+ type macvtap mode bridge/);
      // The pod's own macvtap gets its rate limits planned as attach applies them.
      if (label.includes('pod macvtap')) {
        expect(dry.stdout).toContain('tc qdisc add dev mvt root handle 1: htb default 2');
        expect(dry.stdout).not.toContain('used by the VM as it is');
      }

      // Run where a command smuggled in a link name would leave a file (see HOSTILE_LINK_NAMES).
      const shellDirectory = mkdtempSync(join(tmpdir(), 'vcnet-dry-sh-'));
      try {
        execFileSync('ip', ['netns', 'exec', pasted.name, 'sh', '-e'], {
          input: dry.stdout,
          encoding: 'utf8',
          cwd: shellDirectory,
        });
        expect(readdirSync(shellDirectory)).toEqual([]);
      } finally {
        rmSync(shellDirectory, { recursive: true, force: true });
      }

      const real = vcnet([
        'attach',
        '--sandbox',
        'real',
        '--netns',
        attached.path,
        '--model',
        model,
        '--state-dir',
        stateDirectory(),
        ...extra,
      ]);
      expect(real.status, real.stderr).toBe(0);
      expect(comparable(pasted)).toEqual(comparable(attached));
      expect(JSON.stringify(shaping(pasted)).replace(/ifb_[0-9a-f]+/g, 'IFB')).toEqual(
        JSON.stringify(shaping(attached)).replace(/ifb_[0-9a-f]+/g, 'IFB'),
      );
      expect(vcnet(['detach', '--sandbox', 'real', '--state-dir', stateDirectory()]).status).toBe(0);
    });
  }

  it('refuses what attach refuses, with the same error (sandbox ids, socket flags, agent address)', () => {
    const { pod } = makePod();
    const cases: string[][] = [
      ['--sandbox', ''],
      ['--sandbox', '../evil'],
      ['--sandbox', 'a/b'],
      ['--sandbox', 'x'.repeat(300)],
      ['--sandbox', 'sandbox-é'],
      ['--sandbox', '.locks'],
      ['--sandbox', 'a\ntouch Q'],
      ['--sandbox', 'ok', '--qmp', '/tmp/qmp.sock'],
      ['--sandbox', 'ok', '--qmp', '/tmp/qmp.sock', '--agent', '/tmp/agent.sock', '--api-socket', '/tmp/api.sock'],
      ['--sandbox', 'ok', '--hypervisor', 'clh', '--api-socket', '/tmp/api.sock', '--agent', 'hvsock://'],
    ];
    for (const flags of cases) {
      const common = ['attach', '--netns', pod.path, '--state-dir', stateDirectory(), ...flags];
      const real = vcnet(common);
      const dry = vcnet([...common, '--dry-run']);
      expect(real.status, `${JSON.stringify(flags)}: ${real.stderr}`).toBe(2);
      expect({ flags, status: dry.status, stderr: dry.stderr, stdout: dry.stdout }).toEqual({
        flags,
        status: 2,
        stderr: real.stderr,
        stdout: '',
      });
    }
    expect(readdirSync(stateDirectory()).filter((name) => name !== '.locks')).toEqual([]);
  });

  it("refuses what attach refuses for a vhost-user endpoint: rate limits, and the VMM's device checks", async () => {
    const { pod } = makePod();
    const store = mkdtempSync(join(tmpdir(), 'vcnet-vhost-user-'));
    mkdirSync(join(store, 'vhostuser_10.200.0.2'));
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(store, 'vhostuser_10.200.0.2', 'vhu.sock'), resolve));
    try {
      const qemuLimits = join(store, 'qemu.toml');
      writeFileSync(qemuLimits, RATE_LIMITED_KATA_CONFIG);
      const clhLimiter = join(store, 'clh.toml');
      writeFileSync(clhLimiter, '[hypervisor.clh]\nnet_rate_limiter_bw_max_rate = 50000000\n');
      const before = fingerprint(pod);
      const cases: Array<{ flags: string[]; error: string }> = [
        // Kata refuses it too: a vhost-user NIC has no host link tc could shape.
        {
          flags: ['--config', qemuLimits],
          error: 'invalid rx_rate_limiter_max_rate: 100000000 (accepted: 0 (no limit)',
        },
        { flags: ['--hypervisor', 'firecracker'], error: 'Firecracker cannot use vhostUserSocket=' },
        { flags: ['--config', clhLimiter], error: 'Cloud Hypervisor cannot use rateLimiter=' },
      ];
      for (const { flags, error } of cases) {
        const common = ['attach', '--sandbox', 'vu', '--netns', pod.path, '--vhost-user-store', store];
        const real = vcnet([...common, ...flags, '--state-dir', stateDirectory()]);
        const dry = vcnet([...common, ...flags, '--state-dir', stateDirectory(), '--dry-run']);
        expect(real.stderr, JSON.stringify(flags)).toContain(error);
        expect({ flags, status: dry.status, stdout: dry.stdout, error: dry.stderr.includes(error) }).toEqual({
          flags,
          status: real.status,
          stdout: '',
          error: true,
        });
      }
      expect(fingerprint(pod)).toEqual(before);
      expect(readdirSync(stateDirectory()).filter((name) => name !== '.locks')).toEqual([]);
    } finally {
      server.close();
      rmSync(store, { recursive: true, force: true });
    }
  });

  it('refuses a taken sandbox id as attach does, before planning (VCNET_SANDBOX_EXISTS)', () => {
    const { pod } = makePod();
    const flags = ['--sandbox', 'taken', '--netns', pod.path, '--state-dir', stateDirectory()];
    expect(vcnet(['attach', ...flags]).status).toBe(0);
    const again = vcnet(['attach', ...flags, '--json']);
    const dry = vcnet(['attach', '--dry-run', ...flags, '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ error: { code: 'VCNET_SANDBOX_EXISTS' } });
    expect({ status: dry.status, stdout: dry.stdout, stderr: dry.stderr }).toEqual({
      status: again.status,
      stdout: again.stdout,
      stderr: again.stderr,
    });
    expect(vcnet(['detach', '--sandbox', 'taken', '--state-dir', stateDirectory()]).status).toBe(0);
  });

  it('keeps the header one comment when the namespace path holds a newline', () => {
    const { pod } = makePod();
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-dry-path-'));
    try {
      const path = join(directory, 'pod\ntouch Q');
      symlinkSync(pod.path, path);
      const dry = vcnet(['attach', '--dry-run', '--sandbox', 'dry', '--netns', path]);
      expect(dry.status, dry.stderr).toBe(0);
      expect(dry.stdout.split('\n')[0]).toBe(
        `# vcnet attach --dry-run: sandbox dry, namespace ${directory}/pod\\ntouch Q, model tcfilter`,
      );
      expect(dry.stdout).not.toMatch(/^touch/m);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('--json gives the plan as data: steps with their change, undo and record', () => {
    const { pod } = makePod();
    const dry = vcnet(['attach', '--dry-run', '--json', '--sandbox', 'dry', '--netns', pod.path]);
    expect(dry.status, dry.stderr).toBe(0);
    const output = JSON.parse(dry.stdout) as {
      dryRun: boolean;
      endpoints: Array<{
        source: string;
        plan: { model: string; steps: Array<{ change: { op: string }; record?: unknown }> };
        commands: string[];
      }>;
    };
    expect(output.dryRun).toBe(true);
    expect(output.endpoints[0]?.source).toBe('eth0');
    expect(output.endpoints[0]?.plan.steps.map((step) => step.change.op)).toEqual([
      'create-tap',
      'set-link',
      'set-link',
      'add-qdisc',
      'add-qdisc',
      'add-filter',
      'add-filter',
    ]);
    expect(output.endpoints[0]?.commands).toHaveLength(7);
  });

  it('says what attach would leave out: skipped links (text, warning, JSON) and the routes the guest would not get', () => {
    const { pod } = makePod();
    // A link with no address (attach skips it) and a policy-routing route (the guest does not get it).
    pod.exec('ip', ['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1']);
    pod.exec('ip', ['route', 'add', '10.99.0.0/16', 'dev', 'eth0', 'table', '100']);
    const real = vcnet(['attach', '--dry-run', '--sandbox', 'dry', '--netns', pod.path]);
    expect(real.status, real.stderr).toBe(0);
    expect(real.stdout).toMatch(/^# not attached: skipped up0 \(kind veth\): no address/m);
    expect(real.stderr).toMatch(/skipped up0 \(kind veth\)/);
    expect(real.stderr).toMatch(/the guest does not get 1 route/);
    // The kernel's fallback tunnels are not said (none here in every kernel: only that none is printed).
    expect(real.stdout).not.toMatch(/not attached: skipped (tunl0|sit0|gre0)/);
    const dry = vcnet(['attach', '--dry-run', '--json', '--sandbox', 'dry', '--netns', pod.path]);
    expect(dry.status, dry.stderr).toBe(0);
    const output = JSON.parse(dry.stdout) as { skipped: Array<{ source: string; reason: string }> };
    expect(output.skipped.map((link) => link.source).sort()).toEqual(expect.arrayContaining(['up0', 'up1']));
    expect(output.skipped.find((link) => link.source === 'up0')?.reason).toMatch(/no address/);
  });

  it("reads the config.d drop-ins beside --config's file, as Kata merges them, and names one holding a bad value", () => {
    const { pod } = makePod();
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-dropin-'));
    try {
      const main = join(directory, 'configuration.toml');
      writeFileSync(main, '[hypervisor.qemu]\ndefault_vcpus = 1\n[runtime]\ninternetworking_model = "tcfilter"\n');
      mkdirSync(join(directory, 'config.d'));
      writeFileSync(
        join(directory, 'config.d', '50-user-overrides.toml'),
        '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 1000000\n[runtime]\ninternetworking_model = "macvtap"\n',
      );
      const flags = ['attach', '--sandbox', 'dropin', '--netns', pod.path, '--config', main, '--dry-run'];
      const dry = vcnet([...flags, '--state-dir', stateDirectory()]);
      expect(dry.stderr).toBe('');
      expect(dry.stdout).toMatch(/type macvtap/);
      expect(dry.stdout).toMatch(/htb rate 1000000bit/);
      const bad = join(directory, 'config.d', '60-bad.toml');
      writeFileSync(bad, '[runtime]\ninternetworking_model = "TCFILTER"\n');
      const refused = vcnet([...flags, '--state-dir', stateDirectory()]);
      expect(refused.status).toBe(2);
      expect(refused.stderr).toContain(`invalid runtime.internetworking_model (set in ${bad}): "TCFILTER"`);
      // The file itself, without drop-ins, is named in the hint: a node may have one per runtime class.
      rmSync(join(directory, 'config.d'), { recursive: true });
      writeFileSync(main, '[runtime]\ninternetworking_model = "tcfiltr"\n');
      const refusedInMain = vcnet([...flags, '--state-dir', stateDirectory()]);
      expect(refusedInMain.status).toBe(2);
      expect(refusedInMain.stderr).toContain('invalid runtime.internetworking_model: "tcfiltr"');
      expect(refusedInMain.stderr).toContain(`hint: in ${main}, set runtime.internetworking_model to`);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("reads --config's keys as Kata's Go runtime matches them (strings.EqualFold: a long s is an s), and no others", () => {
    const { pod } = makePod();
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-key-fold-'));
    try {
      const config = join(directory, 'configuration.toml');
      const flags = ['attach', '--sandbox', 'fold', '--netns', pod.path, '--config', config, '--dry-run'];
      // BurntSushi/toml reads "default_vcpu\u017f" as default_vcpus: four vCPUs, so multi-queue taps.
      writeFileSync(config, '[hypervisor.qemu]\n"default_vcpu\u017f" = 4\n');
      const folded = vcnet([...flags, '--state-dir', stateDirectory()]);
      expect(folded.stderr).toBe('');
      expect(folded.stdout).toMatch(/mode tap vnet_hdr multi_queue/);
      // The dotless \u0131 folds onto nothing in Go: the key is ignored, and the warning names it and the key meant.
      writeFileSync(config, '[hypervisor.qemu]\n"default_vcpu\u0131" = 4\n');
      const ignored = vcnet([...flags, '--state-dir', stateDirectory()]);
      expect(ignored.stdout).not.toMatch(/multi_queue/);
      expect(ignored.stderr).toContain(
        '[hypervisor.qemu] default_vcpu\u0131 is not a key vcnet reads, so it is ignored: did you mean default_vcpus?',
      );
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
