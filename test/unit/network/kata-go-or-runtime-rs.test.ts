/**
 * Keys that Kata's two runtimes read differently, and how vcnet tells which runtime a file is for.
 * runtime-rs runs a file only when its [runtime] name is set (kata-types Annotation::
 * update_config_by_annotation: "Runtime name is missing in the configuration"); the Go runtime does not
 * read name or hypervisor_name. So a file without name is the Go runtime's, whatever else it says.
 * Fixtures: test/fixtures/kata/*.toml, short files with the keys that matter.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import {
  ConfigurationConflictError,
  networkConfigFromKata,
  parseKataConfiguration,
  readKataConfiguration,
} from '../../../src/network/config.js';

const namespacePath = '/var/run/netns/pod';
const fixture = (name: string) => fileURLToPath(new URL(`../../fixtures/kata/${name}`, import.meta.url));

function refusalOf(action: () => unknown): InvalidInputError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    return error as InvalidInputError;
  }
  throw new Error('expected a refusal, got none');
}

describe('[runtime] hypervisor_name that names no [hypervisor.*] section', () => {
  it('in a file without [runtime] name (the Go runtime runs it, ignoring the key): read, with a warning', () => {
    const settings = readKataConfiguration(fixture('go-runtime-stray-hypervisor-name.toml'));
    expect(settings).toMatchObject({ hypervisor: 'qemu', model: 'tcfilter', coldPlugVfio: 'no-port' });
    expect(settings.warnings).toHaveLength(1);
    const [warning] = settings.warnings ?? [];
    expect(warning).toContain('hypervisor_name = "dragonball"');
    expect(warning).toContain('(qemu)');
    expect(warning).toMatch(/the Go runtime does not read it/);
    expect(warning).toMatch(/runtime-rs would refuse/);
    const config = networkConfigFromKata(settings, { namespacePath });
    expect(config).toMatchObject({ model: 'tcfilter', vhostNet: 'auto', coldPlugVfio: 'no-port' });
  });

  it('in a runtime-rs file ([runtime] name set): refused naming the key, the value and the sections', () => {
    const refusal = refusalOf(() => readKataConfiguration(fixture('runtime-rs-stray-hypervisor-name.toml')));
    expect(refusal.field).toBe('runtime.hypervisor_name');
    expect(refusal.value).toBe('firecracker');
    expect(refusal.message).toContain('(qemu)');
    expect(refusal.hint).toMatch(/runtime-rs/);
    expect(refusal.hint).toMatch(/\[runtime\] name/);
  });

  it('naming one of several sections in a file without [runtime] name: that one is read, and the Go runtime said', () => {
    const settings = readKataConfiguration(fixture('go-runtime-two-sections-hypervisor-name.toml'));
    expect(settings.hypervisor).toBe('qemu');
    expect(settings.warnings).toHaveLength(1);
    expect(settings.warnings?.[0]).toMatch(/firecracker, qemu/);
    expect(settings.warnings?.[0]).toMatch(/the Go runtime does not read hypervisor_name/);
  });
});

describe('internetworking_model as runtime-rs reads it, in a runtime-rs file', () => {
  it('"default": refused, as runtime-rs refuses it; the Go runtime reads it as tcfilter', () => {
    const refusal = refusalOf(() => readKataConfiguration(fixture('runtime-rs-model-default.toml')));
    expect(refusal.field).toBe('runtime.internetworking_model');
    expect(refusal.value).toBe('default');
    expect(refusal.message).toContain('tcfilter, macvtap, none');
    expect(refusal.hint).toMatch(/runtime-rs refuses "default"/);
    const goRuntime = readKataConfiguration(fixture('go-runtime-model-default.toml'));
    expect(goRuntime.model).toBe('tcfilter');
    expect(goRuntime.warnings).toBeUndefined();
  });

  it('"macvtap": built as the Go runtime builds it, with a warning that runtime-rs connects nothing', () => {
    const settings = readKataConfiguration(fixture('runtime-rs-model-macvtap.toml'));
    expect(settings.model).toBe('macvtap');
    expect(settings.warnings).toHaveLength(1);
    expect(settings.warnings?.[0]).toMatch(/runtime-rs has no macvtap model/);
    expect(networkConfigFromKata(settings, { namespacePath }).model).toBe('macvtap');
  });

  it('disable_new_netns with tcfilter: runtime-rs makes no network, so read as none, with a warning', () => {
    const settings = readKataConfiguration(fixture('runtime-rs-disable-new-netns-tcfilter.toml'));
    expect(settings).toMatchObject({ model: 'none', disableNewNetns: true });
    expect(settings.warnings).toHaveLength(1);
    expect(settings.warnings?.[0]).toMatch(/internetworking_model = "tcfilter".*disable_new_netns/);
    expect(settings.warnings?.[0]).toMatch(/the Go runtime refuses/);
    const config = networkConfigFromKata(settings, {});
    expect(config).toMatchObject({ model: 'none', disableNewNetns: true });
  });

  it('disable_new_netns with tcfilter in a Go runtime file: refused, as the Go runtime refuses it', () => {
    const settings = readKataConfiguration(fixture('go-runtime-disable-new-netns-tcfilter.toml'));
    expect(settings).toMatchObject({ model: 'tcfilter', disableNewNetns: true });
    expect(() => networkConfigFromKata(settings, {})).toThrow(ConfigurationConflictError);
    expect(() => networkConfigFromKata(settings, {})).toThrow(
      /disable_new_netns works only with internetworking_model "none"/,
    );
  });
});

describe('keys that differ only in case', () => {
  it('in a runtime-rs file: ignored, as runtime-rs matches keys by their exact name, each said', () => {
    const settings = readKataConfiguration(fixture('runtime-rs-key-case.toml'));
    expect(settings.model).toBeUndefined();
    expect(settings.vhostNet).toBeUndefined();
    expect(settings.warnings).toHaveLength(2);
    expect(settings.warnings?.join('\n')).toMatch(/\[hypervisor\.qemu\] Disable_Vhost_Net is ignored: runtime-rs/);
    expect(settings.warnings?.join('\n')).toMatch(/\[runtime\] Internetworking_Model is ignored: runtime-rs/);
    expect(networkConfigFromKata(settings, { namespacePath })).toMatchObject({ model: 'tcfilter', vhostNet: 'auto' });
  });

  it('the same keys without [runtime] name: read, as the Go runtime reads them', () => {
    const text = readFileSync(fixture('runtime-rs-key-case.toml'), 'utf8')
      .replace('name = "virt_container"\n', '')
      .replace('network_queues = 1\n', '');
    const settings = parseKataConfiguration(text);
    expect(settings).toMatchObject({ model: 'macvtap', vhostNet: 'off' });
    expect(settings.warnings).toBeUndefined();
  });

  it('a long s or a Kelvin sign for s or k: read as the Go runtime reads them (strings.EqualFold), no other letter', () => {
    // BurntSushi/toml matches a key to a field exactly, else by strings.EqualFold: the long s U+017F
    // is an s and the Kelvin sign U+212A a k there. toLowerCase left the long s as it was: ignored.
    const folded = parseKataConfiguration(
      '[hypervisor.qemu]\n"di\u017fable_vhost_net" = true\n"default_vcpu\u017f" = 4\n[runtime]\n"internetwor\u212aing_model" = "macvtap"\n',
    );
    expect(folded).toMatchObject({ model: 'macvtap', vhostNet: 'off', vcpus: 4 });
    expect(folded.warnings).toBeUndefined();
    // The dotless \u0131 and the dotted \u0130 fold onto no ASCII letter in Go: ignored, each named with the key meant.
    const unfolded = parseKataConfiguration(
      '[hypervisor.qemu]\n"d\u0131sable_vhost_net" = true\n"D\u0130SABLE_VHOST_NET" = true\n',
    );
    expect(unfolded.vhostNet).toBeUndefined();
    expect(unfolded.warnings).toEqual([
      '[hypervisor.qemu] d\u0131sable_vhost_net is not a key vcnet reads, so it is ignored: did you mean disable_vhost_net?',
      '[hypervisor.qemu] D\u0130SABLE_VHOST_NET is not a key vcnet reads, so it is ignored: did you mean disable_vhost_net?',
    ]);
    // runtime-rs (serde) matches exactly: in its file the long s is ignored, and said.
    const runtimeRs = parseKataConfiguration(
      '[runtime]\nname = "virt_container"\nhypervisor_name = "qemu"\n[hypervisor.qemu]\n"di\u017fable_vhost_net" = true\n',
    );
    expect(runtimeRs.vhostNet).toBeUndefined();
    expect(runtimeRs.warnings).toEqual([
      expect.stringMatching(
        /^\[hypervisor\.qemu\] di\u017fable_vhost_net is ignored: runtime-rs reads keys by their exact name \(the Go runtime would read it as \[hypervisor\.qemu\] disable_vhost_net\)/,
      ),
    ]);
  });

  it("a drop-in's [Runtime] of a runtime-rs file is not merged into [runtime], as runtime-rs leaves it out", () => {
    const main = readFileSync(fixture('runtime-rs-model-macvtap.toml'), 'utf8').replace(
      'model = "macvtap"',
      'model = "tcfilter"',
    );
    const dropIn = { source: 'config.d/50-user.toml', text: '[Runtime]\ninternetworking_model = "none"\n' };
    const settings = parseKataConfiguration(main, 'configuration.toml', [dropIn]);
    expect(settings.model).toBe('tcfilter');
    expect(settings.warnings).toEqual([expect.stringMatching(/^config\.d\/50-user\.toml: \[Runtime\] is ignored/)]);
    // The name a drop-in sets decides too: without it, [Runtime] is the Go runtime's [runtime].
    const goRuntime = parseKataConfiguration(main.replace('name = "virt_container"\n', ''), 'configuration.toml', [
      dropIn,
    ]);
    expect(goRuntime.model).toBe('none');
  });
});

describe('rx/tx_rate_limiter_max_rate below 8 bits per second, where Kata runs the file', () => {
  it('Firecracker: no limit, as Kata gives Firecracker a 0-byte bucket, with a warning', () => {
    const settings = readKataConfiguration(fixture('go-runtime-firecracker-low-rate.toml'));
    expect(settings.rateLimit).toEqual({ txBitsPerSecond: 8000 });
    expect(settings.warnings).toEqual([
      expect.stringMatching(/\[hypervisor\.firecracker\] rx_rate_limiter_max_rate = 4 is no limit/),
    ]);
    expect(networkConfigFromKata(settings, { namespacePath }).vmmRateLimiter).toEqual({ txBitsPerSecond: 8000 });
  });

  it('Cloud Hypervisor: read and ignored with the usual warning, as the Go runtime does not read them there', () => {
    const settings = readKataConfiguration(fixture('go-runtime-clh-low-rate.toml'));
    const warnings: string[] = [];
    const config = networkConfigFromKata(settings, { namespacePath, warn: (message) => warnings.push(message) });
    expect(config.rateLimit).toBeUndefined();
    expect(config.vmmRateLimiter).toBeUndefined();
    expect(warnings).toEqual([expect.stringMatching(/not Cloud Hypervisor keys \(Kata ignores them there\)/)]);
  });

  it('QEMU in a runtime-rs file: no limit for that key, with a warning, as runtime-rs reads the keys and limits nothing', () => {
    const settings = readKataConfiguration(fixture('runtime-rs-qemu-low-rate.toml'));
    expect(settings.rateLimit).toEqual({ rxBitsPerSecond: 10_000_000 });
    expect(settings.warnings).toEqual([
      expect.stringMatching(/^\[hypervisor\.qemu\] tx_rate_limiter_max_rate = 4 is no limit: runtime-rs limits no NIC/),
    ]);
    const warnings: string[] = [];
    const config = networkConfigFromKata(settings, { namespacePath, warn: (message) => warnings.push(message) });
    expect(config.rateLimit).toEqual({ rxBitsPerSecond: 10_000_000 });
    // The file's warning, then the one every runtime-rs file with a limit gets for the key vcnet applies.
    expect(warnings).toEqual([
      settings.warnings?.[0],
      expect.stringMatching(/of a runtime-rs configuration: runtime-rs limits no NIC/),
    ]);
    // Without [runtime] name the Go runtime runs the file, and its htb of 0 bytes/s fails: refused, naming the key.
    const goRuntimeText = readFileSync(fixture('runtime-rs-qemu-low-rate.toml'), 'utf8').replace(
      'name = "virt_container"\n',
      '',
    );
    const refusal = refusalOf(() => parseKataConfiguration(goRuntimeText));
    expect(refusal.message).toMatch(/hypervisor\.qemu\.tx_rate_limiter_max_rate/);
  });
});

describe('network_queues (a runtime-rs key) in a file without [runtime] name', () => {
  it("is the Go runtime's file: queues from default_vcpus, cold_plug_vfio's default, and a warning", () => {
    const settings = readKataConfiguration(fixture('go-runtime-network-queues.toml'));
    expect(settings.networkQueues).toBeUndefined();
    expect(settings.coldPlugVfio).toBe('no-port');
    expect(settings.warnings).toEqual([expect.stringMatching(/\[hypervisor\.qemu\] network_queues = 4 is not used/)]);
    const config = networkConfigFromKata(settings, { namespacePath });
    expect(config).toMatchObject({ queues: 1, coldPlugVfio: 'no-port' });
  });

  it("with [runtime] name it is runtime-rs's: queues from network_queues, no cold_plug_vfio default", () => {
    const text = readFileSync(fixture('go-runtime-network-queues.toml'), 'utf8').replace(
      '[runtime]\n',
      '[runtime]\nname = "virt_container"\nhypervisor_name = "qemu"\n',
    );
    const settings = parseKataConfiguration(text);
    expect(settings).toMatchObject({ networkQueues: 4 });
    expect(settings.coldPlugVfio).toBeUndefined();
    expect(settings.warnings).toBeUndefined();
    expect(networkConfigFromKata(settings, { namespacePath }).queues).toBe(4);
  });
});

describe('which runtime a file is for, carried in the settings (runtimeRs)', () => {
  it("a runtime-rs file's settings say so, and networkConfigFromKata follows the flag, not networkQueues", () => {
    const settings = readKataConfiguration(fixture('runtime-rs-cloud-hypervisor-cold-plug.toml'));
    expect(settings).toMatchObject({ runtimeRs: true, hypervisor: 'cloud-hypervisor', networkQueues: 1 });
    // A caller that leaves networkQueues out still has a runtime-rs file: one queue pair (runtime-rs's
    // default), cold_plug_vfio not checked, and the warning that runtime-rs limits no NIC.
    const { networkQueues: _left, ...withoutQueues } = settings;
    const warnings: string[] = [];
    const config = networkConfigFromKata(withoutQueues, { namespacePath, warn: (message) => warnings.push(message) });
    expect(config).toMatchObject({ queues: 1, vhostNet: 'off' });
    expect(config.coldPlugVfio).toBeUndefined();
    expect(warnings).toEqual([
      expect.stringMatching(/net_rate_limiter_\* in \[hypervisor\.cloud-hypervisor\] of a runtime-rs configuration/),
    ]);
  });

  it("a Go runtime file's settings have no runtimeRs, and its cold_plug_vfio is checked", () => {
    const settings = readKataConfiguration(fixture('go-runtime-network-queues.toml'));
    expect(settings.runtimeRs).toBeUndefined();
    expect(networkConfigFromKata(settings, { namespacePath }).coldPlugVfio).toBe('no-port');
  });

  it('networkQueues without runtimeRs: true is refused, naming the field (a runtime-rs key)', () => {
    const refusal = refusalOf(() => networkConfigFromKata({ networkQueues: 4 }, { namespacePath }));
    expect(refusal.field).toBe('settings.networkQueues');
    expect(refusal.value).toBe(4);
    expect(refusal.hint).toMatch(/runtimeRs: true/);
    expect(networkConfigFromKata({ runtimeRs: true, networkQueues: 4 }, { namespacePath }).queues).toBe(4);
    expect(refusalOf(() => networkConfigFromKata({ runtimeRs: 'yes' } as never, { namespacePath })).field).toBe(
      'settings.runtimeRs',
    );
  });
});

describe("[hypervisor.cloud-hypervisor] (runtime-rs's name for Cloud Hypervisor)", () => {
  it('in a file without [runtime] name: refused, naming the table and what each runtime accepts, as Kata runs it with neither', () => {
    const refusal = refusalOf(() => readKataConfiguration(fixture('go-runtime-cloud-hypervisor-section.toml')));
    expect(refusal.field).toMatch(/^\[hypervisor\.\*\] section of /);
    expect(refusal.value).toBe('[hypervisor.cloud-hypervisor]');
    expect(refusal.message).toContain("[hypervisor.clh] in a file for Kata's Go runtime");
    expect(refusal.message).toContain('[runtime] name set');
    expect(refusal.hint).toMatch(/Runtime name is missing/);
    expect(refusal.hint).toMatch(/name = "virt_container"/);
    // Beside another section, too: the Go runtime fails on any section it does not know.
    const withQemu = `[hypervisor.qemu]\ndefault_vcpus = 1\n\n${readFileSync(fixture('go-runtime-cloud-hypervisor-section.toml'), 'utf8')}`;
    expect(refusalOf(() => parseKataConfiguration(withQemu)).value).toBe('[hypervisor.cloud-hypervisor]');
  });

  it("the same table with [runtime] name: read as Cloud Hypervisor, the file runtime-rs's", () => {
    const text = readFileSync(fixture('go-runtime-cloud-hypervisor-section.toml'), 'utf8').replace(
      '[runtime]\n',
      '[runtime]\nname = "virt_container"\nhypervisor_name = "cloud-hypervisor"\n',
    );
    const settings = parseKataConfiguration(text);
    expect(settings).toMatchObject({ runtimeRs: true, hypervisor: 'cloud-hypervisor', networkQueues: 1 });
    expect(settings.coldPlugVfio).toBeUndefined();
    expect(networkConfigFromKata(settings, { namespacePath })).toMatchObject({ queues: 1, vhostNet: 'off' });
  });
});
