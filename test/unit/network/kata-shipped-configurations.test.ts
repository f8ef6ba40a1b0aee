/**
 * Every configuration file Kata ships, as its Makefiles generate it (test/fixtures/kata/shipped, with
 * their origin and commit in its README), read as `vcnet attach --config` reads it. Each loads with
 * the network settings Kata would use, and says nothing about the many keys vcnet does not read; or
 * it is refused because its hypervisor is one vcnet cannot plan for, naming the file, the section and
 * why, and --hypervisor (the way out). The table is what each file holds, checked against the file.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { networkConfigFromFlags } from '../../../src/cli/options.js';
import { InvalidInputError } from '../../../src/errors.js';
import { networkConfigFromKata, readKataConfiguration } from '../../../src/network/config.js';

const shipped = fileURLToPath(new URL('../../fixtures/kata/shipped/', import.meta.url));

interface Loads {
  hypervisor: string;
  /** [runtime] name is set: runtime-rs runs the file. */
  runtimeRs: boolean;
  vhostNet: 'auto' | 'off';
  /** cold_plug_vfio as the Go runtime checks it (QEMU, Cloud Hypervisor); runtime-rs and Firecracker: none. */
  coldPlugVfio?: string;
}

const qemu = (coldPlugVfio = 'no-port'): Loads => ({
  hypervisor: 'qemu',
  runtimeRs: false,
  vhostNet: 'auto',
  coldPlugVfio,
});
const qemuRs: Loads = { hypervisor: 'qemu', runtimeRs: true, vhostNet: 'auto' };

/** What each file gives: the settings it loads with, or the hypervisor section it is refused for. */
const EXPECTED: Record<string, Loads | { refusedSection: string; because: RegExp }> = {
  'go-runtime/configuration-qemu.toml': qemu(),
  'go-runtime/configuration-qemu-coco-dev.toml': qemu(),
  'go-runtime/configuration-qemu-nvidia-cpu.toml': qemu(),
  'go-runtime/configuration-qemu-nvidia-gpu.toml': qemu('root-port'),
  'go-runtime/configuration-qemu-nvidia-gpu-snp.toml': qemu('root-port'),
  'go-runtime/configuration-qemu-nvidia-gpu-tdx.toml': qemu('root-port'),
  'go-runtime/configuration-qemu-se.toml': qemu('bridge-port'),
  'go-runtime/configuration-qemu-snp.toml': qemu(),
  'go-runtime/configuration-qemu-tdx.toml': qemu(),
  'go-runtime/configuration-clh.toml': {
    hypervisor: 'clh',
    runtimeRs: false,
    vhostNet: 'off',
    coldPlugVfio: 'no-port',
  },
  'go-runtime/configuration-clh-azure.toml': {
    hypervisor: 'clh',
    runtimeRs: false,
    vhostNet: 'off',
    coldPlugVfio: 'no-port',
  },
  'go-runtime/configuration-fc.toml': { hypervisor: 'firecracker', runtimeRs: false, vhostNet: 'off' },
  'go-runtime/configuration-remote.toml': { refusedSection: 'remote', because: /runs the VM on another host/ },
  'go-runtime/configuration-stratovirt.toml': { refusedSection: 'stratovirt', because: /no StratoVirt device/ },
  'go-runtime-arm64/configuration-qemu.toml': qemu(),
  'go-runtime-s390x/configuration-qemu.toml': qemu(),
  'go-runtime-s390x/configuration-qemu-se.toml': qemu('bridge-port'),
  'runtime-rs/configuration-qemu-runtime-rs.toml': qemuRs,
  'runtime-rs/configuration-qemu-coco-dev-runtime-rs.toml': qemuRs,
  'runtime-rs/configuration-qemu-nvidia-cpu-runtime-rs.toml': qemuRs,
  'runtime-rs/configuration-qemu-nvidia-gpu-runtime-rs.toml': qemuRs,
  'runtime-rs/configuration-qemu-nvidia-gpu-snp-runtime-rs.toml': qemuRs,
  'runtime-rs/configuration-qemu-nvidia-gpu-tdx-runtime-rs.toml': qemuRs,
  // disable_vhost_net = true: the s390x secure execution build.
  'runtime-rs/configuration-qemu-se-runtime-rs.toml': { ...qemuRs, vhostNet: 'off' },
  'runtime-rs/configuration-qemu-snp-runtime-rs.toml': qemuRs,
  'runtime-rs/configuration-qemu-tdx-runtime-rs.toml': qemuRs,
  'runtime-rs/configuration-clh-runtime-rs.toml': { hypervisor: 'clh', runtimeRs: true, vhostNet: 'off' },
  'runtime-rs/configuration-clh-azure-runtime-rs.toml': { hypervisor: 'clh', runtimeRs: true, vhostNet: 'off' },
  'runtime-rs/configuration-rs-fc.toml': { hypervisor: 'firecracker', runtimeRs: true, vhostNet: 'off' },
  'runtime-rs/configuration-dragonball.toml': { refusedSection: 'dragonball', because: /runtime-rs's built-in VMM/ },
  'runtime-rs/configuration-openvmm-azure-runtime-rs.toml': {
    refusedSection: 'openvmm',
    because: /no OpenVMM device/,
  },
  'runtime-rs/configuration-remote.toml': { refusedSection: 'remote', because: /runs the VM on another host/ },
  'runtime-rs-s390x/configuration-qemu-se-runtime-rs.toml': { ...qemuRs, vhostNet: 'off' },
};

const files = readdirSync(shipped, { recursive: true, encoding: 'utf8' })
  .filter((name) => name.endsWith('.toml'))
  .sort();

describe("Kata's shipped configuration files (test/fixtures/kata/shipped)", () => {
  it('are all in the table, and the table names no file that is not there', () => {
    expect(files).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const file of files) {
    const expected = EXPECTED[file];
    if (expected === undefined || 'refusedSection' in expected) continue;
    it(`${file}: loads as Kata reads it, with no warning`, () => {
      const settings = readKataConfiguration(`${shipped}${file}`);
      expect(settings.warnings).toBeUndefined();
      // Every file Kata ships sets these, to these values.
      expect(settings).toMatchObject({
        model: 'tcfilter',
        disableNewNetns: false,
        danConfigDirectory: '/run/kata-containers/dans',
        vcpus: 1,
        hypervisor: expected.hypervisor,
      });
      expect(settings.runtimeRs ?? false).toBe(expected.runtimeRs);
      if (expected.runtimeRs) expect(settings.networkQueues).toBe(1);
      const warnings: string[] = [];
      const config = networkConfigFromKata(settings, {
        namespacePath: '/var/run/netns/pod',
        warn: (message) => warnings.push(message),
      });
      expect(warnings).toEqual([]);
      expect(config).toMatchObject({
        model: 'tcfilter',
        disableNewNetns: false,
        queues: 1,
        vhostNet: expected.vhostNet,
      });
      // Every rate key is 0 (no limit) in the files Kata ships.
      expect(config.rateLimit).toBeUndefined();
      expect(config.vmmRateLimiter).toBeUndefined();
      expect(config.coldPlugVfio).toBe(expected.coldPlugVfio);
    });
  }

  for (const file of files) {
    const expected = EXPECTED[file];
    if (expected === undefined || !('refusedSection' in expected)) continue;
    it(`${file}: refused for its [hypervisor.${expected.refusedSection}], naming the file, the section and --hypervisor`, () => {
      const path = `${shipped}${file}`;
      // The file itself reads: only planning a network for its hypervisor is refused.
      const settings = readKataConfiguration(path);
      expect(settings.hypervisor).toBe(expected.refusedSection);
      let refusal: unknown;
      try {
        networkConfigFromFlags({ config: path, netns: '/var/run/netns/pod' });
      } catch (error) {
        refusal = error;
      }
      expect(refusal).toBeInstanceOf(InvalidInputError);
      const { field, value, message, hint } = refusal as InvalidInputError;
      expect(field).toBe(`[hypervisor.*] section of ${path}`);
      expect(value).toBe(`[hypervisor.${expected.refusedSection}]`);
      expect(message).toContain(path);
      expect(message).toContain('qemu, clh (cloud-hypervisor), firecracker');
      expect(hint).toMatch(expected.because);
      expect(hint).toMatch(/give --hypervisor to plan the network for one of those instead/);
      // The library alone names the file too: readKataConfiguration keeps its path in the settings.
      expect(settings.file).toBe(path);
      let libraryRefusal: unknown;
      try {
        networkConfigFromKata(settings, { namespacePath: '/var/run/netns/pod' });
      } catch (error) {
        libraryRefusal = error;
      }
      expect(libraryRefusal).toBeInstanceOf(InvalidInputError);
      expect((libraryRefusal as InvalidInputError).field).toBe(`[hypervisor.*] section of ${path}`);
      expect((libraryRefusal as InvalidInputError).hint).toMatch(/give options\.hypervisor to plan the network/);
      // Settings parsed from text name no file, and say so.
      const { file: _, ...parsed } = settings;
      expect(() => networkConfigFromKata(parsed, { namespacePath: '/var/run/netns/pod' })).toThrow(
        '[hypervisor.*] section of the configuration',
      );
    });
  }
});
