/**
 * Firecracker and Cloud Hypervisor as Kata drives them: one queue pair, no vhost-net, rate limits in
 * the VMM's own token buckets (and no tc htb in the pod), and no NIC changes to a running Firecracker.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';
import { errorsOf, firecrackerSchemas, validatorFor } from '../../unit/hypervisor/api-schemas.js';

const stateDirectory = stateDirectoryPerTest();

function configFile(text: string): string {
  const path = join(stateDirectory(), 'configuration.toml');
  writeFileSync(path, text);
  return path;
}

const qdiscKinds = (pod: ReturnType<typeof makePod>['pod']) =>
  pod.tcJson<Array<{ kind: string; dev: string }>>('qdisc', 'show').map((qdisc) => `${qdisc.dev}:${qdisc.kind}`);

describe("the VMM's own rate limiters", () => {
  it.each([
    ['--hypervisor firecracker', ['--hypervisor', 'firecracker']],
    ['the [hypervisor.firecracker] section alone, as Kata picks its hypervisor', []],
  ])(
    'Firecracker (%s): the limits go into the network-interfaces body, one queue, and no htb qdisc is made',
    (_how, flag) => {
      const { pod } = makePod();
      const config = configFile(
        '[hypervisor.firecracker]\nrx_rate_limiter_max_rate = 10000000\ntx_rate_limiter_max_rate = 20000000\ndefault_vcpus = 4\n',
      );
      const attached = vcnet([
        'attach',
        '--sandbox',
        'fc1',
        '--netns',
        pod.path,
        '--config',
        config,
        ...flag,
        '--state-dir',
        stateDirectory(),
        '--json',
      ]);
      expect(attached.status, attached.stderr).toBe(0);
      expect(attached.stderr).toBe('');
      const output = JSON.parse(attached.stdout);
      expect(output.endpoints[0].queues).toBe(1);
      const request = output.hypervisor.devices[0].config;
      // Kata's iface_id: the endpoint name, which Firecracker's runtime PATCH keys on too.
      expect(request.path).toBe('/network-interfaces/eth0');
      expect(request.body.iface_id).toBe('eth0');
      const validate = validatorFor(firecrackerSchemas, 'NetworkInterface').closed;
      expect(validate(request.body), errorsOf(validate)).toBe(true);
      expect(request.body.rx_rate_limiter).toEqual({ bandwidth: { size: 1_304_576, refill_time: 1000 } });
      expect(request.body.tx_rate_limiter).toEqual({ bandwidth: { size: 2_609_152, refill_time: 1000 } });
      expect(qdiscKinds(pod).filter((entry) => entry.endsWith(':htb'))).toEqual([]);
      expect(vcnet(['detach', '--sandbox', 'fc1', '--state-dir', stateDirectory()]).status).toBe(0);
    },
  );

  it('--hypervisor over another section of the configuration: used, with a warning naming both', () => {
    const { pod } = makePod();
    const config = configFile('[hypervisor.firecracker]\nrx_rate_limiter_max_rate = 10000000\n');
    const planned = vcnet([
      'attach',
      '--sandbox',
      'q1',
      '--netns',
      pod.path,
      '--config',
      config,
      '--hypervisor',
      'qemu',
      '--dry-run',
    ]);
    expect(planned.status, planned.stderr).toBe(0);
    expect(planned.stderr).toContain('--hypervisor qemu is used, not [hypervisor.firecracker]');
    // QEMU limits with tc, as Kata does.
    expect(planned.stdout).toContain('htb');
  });

  it('two [hypervisor.*] sections: the first is read, with a warning naming both (Kata picks one at random)', () => {
    const { pod } = makePod();
    const config = configFile(
      '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 10000000\n[hypervisor.firecracker]\ndefault_vcpus = 1\n',
    );
    const planned = vcnet(['attach', '--sandbox', 'q2', '--netns', pod.path, '--config', config, '--dry-run']);
    expect(planned.status, planned.stderr).toBe(0);
    expect(planned.stderr).toContain(
      `vcnet: warning: ${config} has 2 [hypervisor.*] sections (qemu, firecracker): vcnet reads [hypervisor.qemu]`,
    );
    expect(planned.stdout).toContain('htb');
  });

  it('Cloud Hypervisor: net_rate_limiter_* become the --net limiter, one queue pair, and no htb qdisc is made', () => {
    const { pod } = makePod();
    const config = configFile(
      '[hypervisor.clh]\nnet_rate_limiter_bw_max_rate = 10000000\nnet_rate_limiter_bw_one_time_burst = 8000000\n' +
        'net_rate_limiter_ops_max_rate = 500\ndefault_vcpus = 2\nenable_iommu = true\n',
    );
    const attached = vcnet([
      'attach',
      '--sandbox',
      'clh1',
      '--netns',
      pod.path,
      '--config',
      config,
      '--hypervisor',
      'clh',
      '--state-dir',
      stateDirectory(),
      '--json',
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    const output = JSON.parse(attached.stdout);
    expect(output.endpoints[0].queues).toBe(1);
    const argument: string = output.hypervisor.devices[0].config[1];
    expect(argument).toContain('num_queues=2');
    expect(argument).toContain('bw_size=1304576,bw_refill_time=1000,bw_one_time_burst=1048576');
    expect(argument).toContain('ops_size=500,ops_refill_time=1000');
    // enable_iommu: Kata's Go runtime does not read it for Cloud Hypervisor, so no NIC goes behind an IOMMU.
    expect(argument).not.toContain('iommu');
    expect(attached.stderr).toContain(
      'vcnet: warning: [hypervisor.clh] enable_iommu = true puts no NIC behind an IOMMU',
    );
    expect(qdiscKinds(pod).filter((entry) => entry.endsWith(':htb'))).toEqual([]);
    expect(vcnet(['detach', '--sandbox', 'clh1', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});

describe('a running Firecracker sandbox', () => {
  it('refuses add-iface, del-iface and watch before anything is made', () => {
    const { pod } = makePod();
    const attached = vcnet([
      'attach',
      '--sandbox',
      'fc2',
      '--netns',
      pod.path,
      '--hypervisor',
      'firecracker',
      '--api-socket',
      join(stateDirectory(), 'firecracker.sock'),
      '--state-dir',
      stateDirectory(),
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    pod.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'peer7']);
    const before = fingerprint(pod);
    const state = readFileSync(join(stateDirectory(), 'fc2', 'state.json'), 'utf8');
    const newInterface = join(stateDirectory(), 'eth7.json');
    writeFileSync(newInterface, JSON.stringify({ name: 'eth7' }));
    const attachedInterface = join(stateDirectory(), 'eth0.json');
    writeFileSync(attachedInterface, JSON.stringify({ name: 'eth0' }));
    for (const args of [
      ['add-iface', 'fc2', newInterface],
      ['del-iface', 'fc2', attachedInterface],
    ]) {
      const result = vcnet([...args, '--state-dir', stateDirectory()]);
      expect(result.status, args[0]).not.toBe(0);
      expect(result.stderr).toContain('Firecracker, which configures network devices only before boot');
    }
    const watch = vcnet(['watch', '--sandbox', 'fc2', '--state-dir', stateDirectory()]);
    expect(watch.status).not.toBe(0);
    expect(watch.stderr).toContain('configures network devices only before boot');
    expect(fingerprint(pod)).toEqual(before);
    expect(readFileSync(join(stateDirectory(), 'fc2', 'state.json'), 'utf8')).toBe(state);
    pod.exec('ip', ['link', 'del', 'eth7']);
    expect(vcnet(['detach', '--sandbox', 'fc2', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});
