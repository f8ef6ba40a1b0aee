/**
 * The hypervisor a Kata configuration names by its [hypervisor.*] section: runtime-rs's names too
 * ([hypervisor.cloud-hypervisor] before Kata 3.30), and the sections vcnet cannot plan for (runtime-rs's
 * built-in Dragonball, StratoVirt, remote, OpenVMM, a misspelling) refused, not planned as QEMU.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { networkConfigFromFlags } from '../../../src/cli/options.js';
import { InvalidInputError } from '../../../src/errors.js';
import { networkConfigFromKata, parseKataConfiguration } from '../../../src/network/config.js';

let directory: string | undefined;
afterEach(() => {
  if (directory) rmSync(directory, { recursive: true, force: true });
  directory = undefined;
});

function configFile(text: string): string {
  directory = mkdtempSync(join(tmpdir(), 'vcnet-section-'));
  const path = join(directory, 'configuration.toml');
  writeFileSync(path, text);
  return path;
}

/** A runtime-rs file as Kata shipped it for Cloud Hypervisor before 3.30, with a rate and two queue pairs. */
const RUNTIME_RS_CLH = (section: string) => `
[hypervisor.${section}]
default_vcpus = 2
network_queues = 2
rx_rate_limiter_max_rate = 10000000

[runtime]
name = "virt_container"
internetworking_model = "none"
disable_new_netns = true
`;

function refusal(work: () => unknown): InvalidInputError {
  try {
    work();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return error as InvalidInputError;
  }
  throw new Error('not refused');
}

describe('[hypervisor.*] section names', () => {
  it('runtime-rs [hypervisor.cloud-hypervisor] is Cloud Hypervisor, as [hypervisor.clh]: no multi-queue tap, no tc htb', () => {
    for (const section of ['cloud-hypervisor', 'clh']) {
      const { config, hypervisor } = networkConfigFromFlags({ config: configFile(RUNTIME_RS_CLH(section)) });
      expect(hypervisor).toBe('clh');
      expect(config).toMatchObject({ queues: 2, vhostNet: 'off' });
      expect(config.rateLimit).toBeUndefined();
    }
    const settings = parseKataConfiguration(
      '[hypervisor.cloud-hypervisor]\nnet_rate_limiter_bw_max_rate = 8000\n[runtime]\nname = "virt_container"\n',
    );
    const config = networkConfigFromKata(settings, { namespacePath: '/var/run/netns/pod' });
    expect(config).toMatchObject({ vhostNet: 'off', vmmRateLimiter: { bandwidth: { maxRate: 8000 } } });
  });

  it('a section vcnet cannot plan for is refused, naming it and what is accepted, unless --hypervisor chooses', () => {
    for (const section of ['dragonball', 'stratovirt', 'remote', 'openvmm', 'qmeu']) {
      const path = configFile(RUNTIME_RS_CLH(section));
      const error = refusal(() => networkConfigFromFlags({ config: path }));
      expect(error.message).toContain(`hypervisor.${section}`);
      expect(error.message).toContain('qemu, clh (cloud-hypervisor), firecracker');
      expect(error.hint).toContain('--hypervisor');
      expect(networkConfigFromFlags({ config: path, hypervisor: 'firecracker' }).hypervisor).toBe('firecracker');
      const library = refusal(() =>
        networkConfigFromKata(parseKataConfiguration(`[hypervisor.${section}]\n`), { namespacePath: '/x' }),
      );
      expect(library.message).toContain(`hypervisor.${section}`);
      expect(library.hint).toContain('options.hypervisor');
    }
    expect(refusal(() => networkConfigFromFlags({ config: configFile(RUNTIME_RS_CLH('dragonball')) })).hint).toMatch(
      /Dragonball/,
    );
  });

  it('[hypervisor.acrn] (a Kata 3.9 or older file) is refused saying Kata 3.10 removed ACRN, not that Kata refuses it', () => {
    // The keys of the Go runtime's last configuration-acrn.toml that vcnet reads.
    const acrn = `
[hypervisor.acrn]
default_vcpus = 1
disable_vhost_net = false

[runtime]
internetworking_model = "macvtap"
disable_new_netns = false
`;
    const error = refusal(() => networkConfigFromFlags({ config: configFile(acrn) }));
    expect(error.message).toContain('[hypervisor.acrn]');
    expect(error.hint).toMatch(/^Kata 3\.10 removed ACRN/);
    expect(error.hint).not.toContain('Kata refuses a section of that name too');
    const chosen = networkConfigFromKata(parseKataConfiguration(acrn), { hypervisor: 'qemu', namespacePath: '/x' });
    expect(chosen.model).toBe('macvtap');
  });
});
