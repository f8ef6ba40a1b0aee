/**
 * A misspelled key of configuration.toml (internetworking_modle) was passed over in silence, as Kata
 * passes it over: the sandbox then ran with the default model. A key within two edits of one vcnet
 * reads gets a notice naming both, and so does a key vcnet reads in the other table (Kata reads it
 * only there too); every other key vcnet does not read stays silent, as Kata's files hold dozens of them.
 */
import { describe, expect, it } from 'vitest';
import { networkConfigFromKata, parseKataConfiguration } from '../../../src/network/config.js';

/** Keys of Kata's shipped configuration-qemu.toml that vcnet does not read, next to those it does. */
const KATA_QEMU = `
[hypervisor.qemu]
path = "/usr/bin/qemu-system-x86_64"
kernel = "/usr/share/kata-containers/vmlinux.container"
machine_type = "q35"
default_vcpus = 1
default_maxvcpus = 0
default_bridges = 1
default_memory = 2048
memory_slots = 10
shared_fs = "virtio-fs"
block_device_driver = "virtio-scsi"
enable_iommu = false
enable_iommu_platform = false
enable_vhost_user_store = false
vhost_user_store_path = "/var/run/kata-containers/vhost-user"
valid_vhost_user_store_paths = ["/var/run/kata-containers/vhost-user"]
disable_vhost_net = false
rx_rate_limiter_max_rate = 0
tx_rate_limiter_max_rate = 0
enable_annotations = ["enable_iommu"]
[runtime]
enable_debug = false
internetworking_model = "tcfilter"
disable_guest_seccomp = true
disable_new_netns = false
sandbox_cgroup_only = false
static_sandbox_resource_mgmt = false
vfio_mode = "guest-kernel"
experimental = []
dan_conf = ""
`;

describe('configuration.toml keys one slip from a key vcnet reads', () => {
  it('names the misspelled key and the key it most likely meant, and still ignores it', () => {
    const settings = parseKataConfiguration(
      '[runtime]\ninternetworking_modle = "macvtap"\n[hypervisor.qemu]\ntx_rate_limiter_max_rat = 1000\ndisable_vhostnet = true\n',
    );
    expect(settings.model).toBeUndefined();
    expect(settings.rateLimit).toBeUndefined();
    expect(settings.vhostNet).toBeUndefined();
    expect(settings.warnings).toEqual([
      '[runtime] internetworking_modle is not a key vcnet reads, so it is ignored: did you mean internetworking_model?',
      '[hypervisor.qemu] tx_rate_limiter_max_rat is not a key vcnet reads, so it is ignored: did you mean tx_rate_limiter_max_rate?',
      '[hypervisor.qemu] disable_vhostnet is not a key vcnet reads, so it is ignored: did you mean disable_vhost_net?',
    ]);
    // Through networkConfigFromKata's warn, as the CLI and vcnet-cni print them.
    const warnings: string[] = [];
    networkConfigFromKata(settings, { namespacePath: '/var/run/netns/pod', warn: (line) => warnings.push(line) });
    expect(warnings).toEqual(settings.warnings);
  });

  it('names a key vcnet reads in the other table (internetworking_model under [hypervisor.qemu]), and still ignores it', () => {
    const settings = parseKataConfiguration(
      '[hypervisor.qemu]\ninternetworking_model = "macvtap"\n[runtime]\nDisable_Vhost_Net = true\n',
    );
    expect(settings.model).toBeUndefined();
    expect(settings.vhostNet).toBeUndefined();
    expect(settings.warnings).toEqual([
      '[runtime] Disable_Vhost_Net is read only in a [hypervisor.*] section, so here it is ignored: move it there',
      '[hypervisor.qemu] internetworking_model is read only in [runtime], so here it is ignored: move it there',
    ]);
  });

  it("says nothing of the keys of Kata's own file that vcnet does not read", () => {
    const settings = parseKataConfiguration(KATA_QEMU);
    expect(settings.warnings).toBeUndefined();
    expect(settings.model).toBe('tcfilter');
  });

  // Kata decodes with BurntSushi/toml, which matches a key to a struct field by its exact name, else
  // case-insensitively: Internetworking_Model and [Runtime] are read as Kata reads them. The map of
  // hypervisor sections is keyed by name as written ([hypervisor.QEMU] is not qemu).
  it('reads a key, or a section, that differs from one vcnet reads only in case, as Kata does, with no notice', () => {
    const settings = parseKataConfiguration(
      '[Runtime]\nInternetworking_Model = "macvtap"\nDISABLE_NEW_NETNS = false\n[Hypervisor.qemu]\nTx_Rate_Limiter_Max_Rate = 1000\nDisable_Vhost_Net = true\n',
    );
    expect(settings.model).toBe('macvtap');
    expect(settings.disableNewNetns).toBe(false);
    expect(settings.rateLimit).toEqual({ txBitsPerSecond: 1000 });
    expect(settings.vhostNet).toBe('off');
    expect(settings.warnings).toBeUndefined();
    // Its value is checked as the key vcnet reads is.
    expect(() => parseKataConfiguration('[runtime]\nInternetworking_Model = "bridged"\n')).toThrow(
      /runtime\.internetworking_model/,
    );
    // A slip beyond case still gets its notice.
    expect(parseKataConfiguration('[runtime]\nInternetworking_Modle = "macvtap"\n').warnings).toEqual([
      '[runtime] Internetworking_Modle is not a key vcnet reads, so it is ignored: did you mean internetworking_model?',
    ]);
  });

  it('takes the exact key over one that differs in case, and says that Kata takes either', () => {
    const settings = parseKataConfiguration(
      '[runtime]\ninternetworking_model = "macvtap"\nInternetworking_Model = "none"\n',
    );
    expect(settings.model).toBe('macvtap');
    expect(settings.warnings).toEqual([
      '[runtime] has both internetworking_model and Internetworking_Model: vcnet reads internetworking_model; Kata takes whichever its map iteration yields last, which varies from run to run. Keep one',
    ]);
  });

  it('takes the first of two spellings neither of which is exact, and says so', () => {
    const settings = parseKataConfiguration(
      '[runtime]\nInternetworking_Model = "macvtap"\nINTERNETWORKING_MODEL = "none"\n',
    );
    expect(settings.model).toBe('macvtap');
    expect(settings.warnings).toEqual([
      '[runtime] has both Internetworking_Model and INTERNETWORKING_MODEL: vcnet reads Internetworking_Model; Kata takes whichever its map iteration yields last, which varies from run to run. Keep one',
    ]);
  });

  // BurntSushi/toml decodes each of [runtime] and [Runtime] into the one struct field they both match,
  // one after the other, without clearing it: the keys of both are read, and a key both set takes the
  // value of whichever its map iteration yields last. Two hypervisor tables fill one Go map: all
  // their sections are kept, and a section name in both is replaced whole by the later one.
  it('reads [runtime] and [Runtime] as one section, as Kata does, the exact one winning where both set a key', () => {
    const merged = parseKataConfiguration(
      '[runtime]\ninternetworking_model = "none"\n[Runtime]\ndisable_new_netns = true\n',
    );
    expect(merged.model).toBe('none');
    expect(merged.disableNewNetns).toBe(true);
    expect(merged.warnings).toEqual([
      'the file has both [runtime] and [Runtime]: vcnet reads them as one section, as Kata does. Keep one',
    ]);
    const clashing = parseKataConfiguration(
      '[Runtime]\ninternetworking_model = "none"\ndisable_new_netns = true\n[runtime]\ninternetworking_model = "macvtap"\n',
    );
    expect(clashing.model).toBe('macvtap');
    expect(clashing.disableNewNetns).toBe(true);
    expect(clashing.warnings).toEqual([
      "the file has both [runtime] and [Runtime]: vcnet reads them as one section, as Kata does; both set internetworking_model: vcnet reads [runtime]'s, Kata whichever its map iteration yields last, which varies from run to run. Keep one",
    ]);
    // Not a table in one spelling: refused naming that spelling, as Kata's decoder refuses it.
    expect(() => parseKataConfiguration('Runtime = 5\n[runtime]\ninternetworking_model = "none"\n')).toThrow(/Runtime/);
  });

  it('keeps the hypervisor sections of [hypervisor.*] and [Hypervisor.*], one of a name taken whole', () => {
    const sameName = parseKataConfiguration(
      '[Hypervisor.qemu]\ntx_rate_limiter_max_rate = 1000\ndisable_vhost_net = true\n[hypervisor.qemu]\nrx_rate_limiter_max_rate = 2000\n',
    );
    expect(sameName.hypervisor).toBe('qemu');
    // Whole: disable_vhost_net and tx of [Hypervisor.qemu] are not read beside [hypervisor.qemu].
    expect(sameName.rateLimit).toEqual({ rxBitsPerSecond: 2000 });
    expect(sameName.vhostNet).toBeUndefined();
    expect(sameName.warnings).toEqual([
      "the file has both [hypervisor] and [Hypervisor]: vcnet reads them as one section, as Kata does; both set qemu: vcnet reads [hypervisor]'s, Kata whichever its map iteration yields last, which varies from run to run. Keep one",
    ]);
    const twoNames = parseKataConfiguration(
      '[hypervisor.qemu]\ndefault_vcpus = 2\n[Hypervisor.clh]\ndefault_vcpus = 4\n',
    );
    expect(twoNames.hypervisor).toBe('qemu');
    expect(twoNames.warnings).toEqual([
      'the file has both [hypervisor] and [Hypervisor]: vcnet reads them as one section, as Kata does. Keep one',
      'configuration.toml has 2 [hypervisor.*] sections (qemu, clh): vcnet reads [hypervisor.qemu], the first; Kata takes whichever its map iteration yields last, which varies from run to run. Keep only the section of the hypervisor the runtime uses',
    ]);
  });
});
