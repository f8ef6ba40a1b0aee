/**
 * networkConfigFromKata: configuration.toml settings become the NetworkConfig Kata would use, for each
 * hypervisor, with nothing dropped (vCPUs as queues, Cloud Hypervisor's limiter) and nothing stray.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { defineNetworkConfig, networkConfigFromKata, parseKataConfiguration } from '../../../src/network/config.js';

const namespacePath = '/var/run/netns/pod';

const QEMU = `
[hypervisor.qemu]
default_vcpus = 2
rx_rate_limiter_max_rate = 1000000
tx_rate_limiter_max_rate = 2000000
[runtime]
internetworking_model = "macvtap"
`;

const CLH = `
[hypervisor.clh]
default_vcpus = 4
net_rate_limiter_bw_max_rate = 8000000
net_rate_limiter_ops_max_rate = 100
net_rate_limiter_ops_one_time_burst = 500
`;

const FIRECRACKER = `
[hypervisor.firecracker]
default_vcpus = 4
rx_rate_limiter_max_rate = 1000000
`;

describe('networkConfigFromKata', () => {
  it('QEMU: one queue pair per vCPU, vhost-net, rates as tc shaping; no stray keys', () => {
    const config = networkConfigFromKata(parseKataConfiguration(QEMU), { namespacePath });
    expect(config).toEqual({
      namespacePath,
      model: 'macvtap',
      namespaceCreatedByVcnet: false,
      disableNewNetns: false,
      queues: Math.min(2, availableParallelism()),
      vhostNet: 'auto',
      rateLimit: { rxBitsPerSecond: 1_000_000, txBitsPerSecond: 2_000_000 },
      // Kata's default when the file has no cold_plug_vfio: physical NICs are refused.
      coldPlugVfio: 'no-port',
    });
    // Spreading the settings into defineNetworkConfig is refused: their keys are not NetworkConfig's
    // (it used to drop vcpus silently, queues 1, and keep the stray keys).
    expect(() => defineNetworkConfig({ ...parseKataConfiguration(QEMU), namespacePath } as never)).toThrow(
      /invalid options key: "(vcpus|hypervisor)"/,
    );
  });

  it("Cloud Hypervisor: the VMM's limiter from net_rate_limiter_*, one queue pair, no vhost-net, no tc", () => {
    const config = networkConfigFromKata(parseKataConfiguration(CLH), { namespacePath });
    expect(config).toMatchObject({ queues: 1, vhostNet: 'off', model: 'tcfilter' });
    expect(config.rateLimit).toBeUndefined();
    expect(config.vmmRateLimiter).toEqual({
      bandwidth: { maxRate: 8_000_000 },
      operations: { maxRate: 100, oneTimeBurst: 500 },
    });
  });

  it("Firecracker: rx/tx_rate_limiter_max_rate go to the VMM's token buckets, not tc; macvtap is refused", () => {
    const config = networkConfigFromKata(parseKataConfiguration(FIRECRACKER), { namespacePath });
    expect(config).toMatchObject({ queues: 1, vhostNet: 'off', vmmRateLimiter: { rxBitsPerSecond: 1_000_000 } });
    expect(config.rateLimit).toBeUndefined();
    expect(() =>
      networkConfigFromKata(parseKataConfiguration(FIRECRACKER), { namespacePath, overrides: { model: 'macvtap' } }),
    ).toThrow(InvalidInputError);
  });

  it('takes the hypervisor from the options over the section, and overrides over the file', () => {
    const warnings: string[] = [];
    const config = networkConfigFromKata(parseKataConfiguration(QEMU), {
      namespacePath,
      hypervisor: 'clh',
      overrides: { model: 'tcfilter', queues: 2 },
      warn: (message) => warnings.push(message),
    });
    expect(config).toMatchObject({ model: 'tcfilter', queues: 2, vhostNet: 'off' });
    // rx/tx_rate_limiter_* are not Cloud Hypervisor keys: not applied, and the caller is told.
    expect(config.rateLimit).toBeUndefined();
    expect(config.vmmRateLimiter).toBeUndefined();
    expect(warnings.join('\n')).toMatch(/not Cloud Hypervisor keys/);
  });

  it('names the section the file gave Cloud Hypervisor when it warns of QEMU rate keys there', () => {
    const warningsOf = (section: string, runtime = '') => {
      const warnings: string[] = [];
      networkConfigFromKata(
        parseKataConfiguration(`[hypervisor.${section}]\nrx_rate_limiter_max_rate = 1000\n${runtime}`),
        {
          namespacePath,
          warn: (message) => warnings.push(message),
        },
      );
      return warnings.join('\n');
    };
    // runtime-rs's files call it cloud-hypervisor: the hint points at the section the user has.
    expect(warningsOf('cloud-hypervisor', '[runtime]\nname = "virt_container"\n')).toMatch(
      /in \[hypervisor\.cloud-hypervisor\]/,
    );
    expect(warningsOf('clh')).toMatch(/in \[hypervisor\.clh\]/);
  });

  it("[hypervisor.clh] enable_iommu puts no NIC behind an IOMMU, as Kata's Go runtime does not read it there; QEMU's is the VM's", () => {
    const settings = parseKataConfiguration(`${CLH}enable_iommu = true\n`);
    expect(settings.cloudHypervisorIommu).toBeUndefined();
    expect(settings.warnings).toEqual([
      expect.stringMatching(/^\[hypervisor\.clh\] enable_iommu = true puts no NIC behind an IOMMU: Kata's Go runtime/),
    ]);
    expect(networkConfigFromKata(settings, { namespacePath }).nicIommu).toBeUndefined();
    expect(parseKataConfiguration(`${CLH}enable_iommu = false\n`).warnings).toBeUndefined();
    // What Kata's enable_iommu annotation does, a caller may still ask for: each NIC behind the IOMMU (clh.go addNet).
    const annotated = { ...parseKataConfiguration(CLH), cloudHypervisorIommu: true };
    expect(networkConfigFromKata(annotated, { namespacePath }).nicIommu).toBe(true);
    // Read as another hypervisor's, it means nothing for NICs.
    expect(networkConfigFromKata(annotated, { namespacePath, hypervisor: 'qemu' }).nicIommu).toBeUndefined();
    expect(
      networkConfigFromKata(parseKataConfiguration('[hypervisor.qemu]\nenable_iommu = true\n'), { namespacePath })
        .nicIommu,
    ).toBeUndefined();
    expect(() => parseKataConfiguration(`${CLH}enable_iommu = "yes"\n`)).toThrow(/hypervisor\.clh\.enable_iommu/);
  });

  it('warns about two [hypervisor.*] sections, naming both and the one read (Kata picks one at random)', () => {
    const settings = parseKataConfiguration(QEMU + FIRECRACKER, '/etc/kata/configuration.toml');
    expect(settings.hypervisor).toBe('qemu');
    expect(settings.warnings).toEqual([
      expect.stringContaining(
        '/etc/kata/configuration.toml has 2 [hypervisor.*] sections (qemu, firecracker): vcnet reads [hypervisor.qemu], the first',
      ),
    ]);
    const warnings: string[] = [];
    networkConfigFromKata(settings, { namespacePath, warn: (message) => warnings.push(message) });
    expect(warnings).toEqual(settings.warnings);
    expect(parseKataConfiguration(QEMU).warnings).toBeUndefined();
  });

  it('refuses more queue pairs than default_vcpus for Cloud Hypervisor (it refuses such a NIC)', () => {
    expect(() =>
      networkConfigFromKata(parseKataConfiguration(QEMU), {
        namespacePath,
        hypervisor: 'clh',
        overrides: { queues: 3 },
      }),
    ).toThrow(/invalid queues: 3 \(accepted: at most 2 with the clh hypervisor and default_vcpus = 2/);
  });

  it('needs the namespace unless disable_new_netns, and names what is wrong', () => {
    expect(() => networkConfigFromKata({})).toThrow(/namespacePath/);
    const shared = networkConfigFromKata({ disableNewNetns: true, model: 'none' });
    expect(shared).toMatchObject({ namespacePath: '/proc/self/ns/net', disableNewNetns: true });
    expect(() => networkConfigFromKata({}, { namespacePath, hypervisor: 'xen' as never })).toThrow(/hypervisor/);
    expect(() => networkConfigFromKata(null as never, { namespacePath })).toThrow(InvalidInputError);
  });
});

describe("dan_conf (Kata's directly attachable networks)", () => {
  const withDan = (directory: string) => `[runtime]\ndan_conf = "${directory}"\n`;

  it('goes on as Kata does when the sandbox has no DAN file: Kata scans the namespace then, as vcnet does', () => {
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-dan-'));
    try {
      const settings = parseKataConfiguration(withDan(directory));
      expect(settings.danConfigDirectory).toBe(directory);
      expect(networkConfigFromKata(settings, { namespacePath, sandbox: 'sb1' }).model).toBe('tcfilter');
    } finally {
      rmSync(directory, { recursive: true });
    }
  });

  it('refuses, naming the key and the file, when <dan_conf>/<sandbox>.json exists (Kata reads it and does not scan)', () => {
    const directory = mkdtempSync(join(tmpdir(), 'vcnet-dan-'));
    try {
      writeFileSync(join(directory, 'sb1.json'), '{"netns":"/var/run/netns/pod","devices":[]}');
      const error = (() => {
        try {
          networkConfigFromKata(parseKataConfiguration(withDan(directory)), { namespacePath, sandbox: 'sb1' });
        } catch (caught) {
          return caught;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(InvalidInputError);
      expect((error as InvalidInputError).field).toBe('runtime.dan_conf');
      expect((error as InvalidInputError).message).toContain(join(directory, 'sb1.json'));
      // Another sandbox has no file: it is scanned.
      expect(() =>
        networkConfigFromKata(parseKataConfiguration(withDan(directory)), { namespacePath, sandbox: 'sb2' }),
      ).not.toThrow();
    } finally {
      rmSync(directory, { recursive: true });
    }
  });

  it('refuses a dan_conf that is not a string, naming it', () => {
    expect(() => parseKataConfiguration('[runtime]\ndan_conf = 3\n')).toThrow(/runtime\.dan_conf/);
  });
});

describe('configuration.toml shapes Kata refuses, and numbers JavaScript cannot hold', () => {
  function refusal(text: string): InvalidInputError {
    try {
      parseKataConfiguration(text);
    } catch (error) {
      if (error instanceof InvalidInputError) return error;
      throw error;
    }
    throw new Error(`accepted: ${text}`);
  }

  it.each([
    ['[[runtime]]\ninternetworking_model = "bogus"\n', 'runtime'],
    ['runtime = 5\n', 'runtime'],
    ['runtime = ["macvtap"]\n', 'runtime'],
    ['hypervisor = "qemu"\n', 'hypervisor'],
    ['hypervisor = [1, 2]\n', 'hypervisor'],
    ['[[hypervisor.qemu]]\nrx_rate_limiter_max_rate = 5\n', 'hypervisor.qemu'],
    ['[hypervisor]\nqemu = 5\n', 'hypervisor.qemu'],
    ['[hypervisor.""]\ndefault_vcpus = 2\n', 'hypervisor.""'],
  ])('refuses %j naming %s as not a table', (text, field) => {
    const error = refusal(text);
    expect(error.field).toBe(field);
    expect(error.message).toMatch(/table/);
  });

  it('keeps an integer beyond 2^53 in a key vcnet does not read, and refuses one in a key it reads, naming it', () => {
    const text = '[hypervisor.qemu]\ndefault_memory = 9223372036854775807\ndefault_vcpus = 2\n';
    expect(parseKataConfiguration(text)).toMatchObject({ hypervisor: 'qemu', vcpus: 2 });
    const error = refusal('[hypervisor.qemu]\nrx_rate_limiter_max_rate = 9223372036854775807\n');
    expect(error.field).toBe('hypervisor.qemu.rx_rate_limiter_max_rate');
    expect(error.message).toContain(': 9223372036854775807 (');
    expect(JSON.parse(JSON.stringify(error)).value).toBe('9223372036854775807');
    expect(refusal('[runtime]\ndisable_new_netns = 999999999999999999\n').field).toBe('runtime.disable_new_netns');
  });

  it('shows nan and inf as the TOML wrote them', () => {
    expect(refusal('[hypervisor.qemu]\ndefault_vcpus = nan\n').message).toContain('default_vcpus: nan (');
    expect(refusal('[hypervisor.qemu]\ndefault_vcpus = -inf\n').message).toContain('default_vcpus: -inf (');
    expect(refusal('[hypervisor.clh]\nnet_rate_limiter_bw_max_rate = inf\n').message).toContain('_max_rate: inf (');
    // The runtime keys too: expectType shows the raw value as written.
    expect(refusal('[runtime]\ndisable_new_netns = nan\n').message).toContain(
      'disable_new_netns: nan (accepted: a boolean)',
    );
    expect(refusal('[runtime]\ninternetworking_model = -inf\n').message).toContain(
      'internetworking_model: -inf (accepted: a string)',
    );
    expect(refusal('[runtime]\ndan_conf = inf\n').message).toContain('dan_conf: inf (accepted: a string)');
  });
});
