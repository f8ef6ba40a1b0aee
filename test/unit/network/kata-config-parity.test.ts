/**
 * Kata configuration parity (session 25, against kata-containers 7c6ba40c54ea): config.d drop-ins
 * merged over configuration.toml (katautils/config.go decodeDropIns; kata-types config/drop_in.rs),
 * runtime-rs's network_queues, the internetworking_model values Kata's SetModel takes (exactly, and ""
 * as the default).
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidInputError, VcnetError } from '../../../src/errors.js';
import {
  defineNetworkConfig,
  networkConfigFromKata,
  parseKataConfiguration,
  readKataConfiguration,
  refuseDisabledColdPlug,
} from '../../../src/network/config.js';

const namespacePath = '/var/run/netns/pod';

const MAIN = `
[hypervisor.qemu]
default_vcpus = 1
disable_vhost_net = true
rx_rate_limiter_max_rate = 0
tx_rate_limiter_max_rate = 0

[runtime]
internetworking_model = "tcfilter"
`;

let directory: string;
let main: string;

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'vcnet-kata-config-'));
  main = join(directory, 'configuration.toml');
  writeFileSync(main, MAIN);
});
afterEach(() => rmSync(directory, { recursive: true, force: true }));

function dropIn(name: string, text: string): string {
  mkdirSync(join(directory, 'config.d'), { recursive: true });
  const path = join(directory, 'config.d', name);
  writeFileSync(path, text);
  return path;
}

function refusal(run: () => unknown): VcnetError {
  try {
    run();
  } catch (error) {
    if (error instanceof VcnetError) return error;
    throw error;
  }
  throw new Error('not refused');
}

describe('config.d drop-ins, as Kata merges them', () => {
  it("the Helm chart's 50-user-overrides.toml changes the model, the vCPUs and the rx rate", () => {
    dropIn(
      '50-user-overrides.toml',
      '[hypervisor.qemu]\ndefault_vcpus = 4\nrx_rate_limiter_max_rate = 1000000\n\n[runtime]\ninternetworking_model = "macvtap"\n',
    );
    const settings = readKataConfiguration(main);
    expect(settings).toMatchObject({
      model: 'macvtap',
      vcpus: 4,
      rateLimit: { rxBitsPerSecond: 1_000_000 },
      // Kept from the main file: a drop-in's table is merged key by key, not put in place of the main one's.
      vhostNet: 'off',
      hypervisor: 'qemu',
    });
  });

  it('in file name order (every entry of config.d, as Kata reads them), the last one setting a key wins', () => {
    // Written in the other order, so the directory's own order is not the one tested.
    dropIn('20-second', '[runtime]\ninternetworking_model = "none"\n');
    dropIn('10-first.toml', '[runtime]\ninternetworking_model = "macvtap"\ndisable_new_netns = true\n');
    expect(readKataConfiguration(main)).toMatchObject({ model: 'none', disableNewNetns: true });
  });

  it('beside the file a symlink resolves to, as Kata resolves the path first', () => {
    const real = join(directory, 'defaults');
    mkdirSync(join(real, 'config.d'), { recursive: true });
    writeFileSync(join(real, 'configuration-qemu.toml'), MAIN);
    writeFileSync(join(real, 'config.d', '50-user.toml'), '[runtime]\ninternetworking_model = "macvtap"\n');
    const linked = join(directory, 'etc');
    mkdirSync(linked);
    symlinkSync(join(real, 'configuration-qemu.toml'), join(linked, 'configuration.toml'));
    expect(readKataConfiguration(join(linked, 'configuration.toml')).model).toBe('macvtap');
  });

  it('no config.d: the main file alone, as before', () => {
    expect(readKataConfiguration(main)).toMatchObject({ model: 'tcfilter', vcpus: 1 });
  });

  it('a bad value in a drop-in names the drop-in file and the key', () => {
    const path = dropIn('50-user.toml', '[hypervisor.qemu]\ndefault_vcpus = "four"\n');
    const error = refusal(() => readKataConfiguration(main));
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error.message).toContain('hypervisor.qemu.default_vcpus');
    expect(error.message).toContain(path);
    expect(error.hint).toContain(path);
  });

  it('a table replaced by a scalar in a drop-in is refused naming the drop-in', () => {
    const path = dropIn('50-user.toml', 'runtime = 5\n');
    expect(refusal(() => readKataConfiguration(main)).message).toMatch(new RegExp(`runtime.*${path}`));
  });

  it('a drop-in that is not TOML, or not a file, is refused naming it', () => {
    const path = dropIn('50-user.toml', '[runtime\n');
    const syntax = refusal(() => readKataConfiguration(main));
    expect(syntax.code).toBe('VCNET_CONFIG_SYNTAX');
    expect(syntax.message).toContain(path);
    rmSync(path);
    mkdirSync(join(directory, 'config.d', '60-dir'));
    expect(refusal(() => readKataConfiguration(main)).message).toContain(join(directory, 'config.d', '60-dir'));
  });

  it('a configuration file that cannot be read: the hint says what is wrong with the path and what to do, not only the errno', () => {
    const missing = refusal(() => readKataConfiguration(join(directory, 'missing.toml')));
    expect(missing.code).toBe('VCNET_INVALID_INPUT');
    // Named as the parameter a library caller passed (the CLI says --config).
    expect((missing as InvalidInputError).field).toBe('path');
    expect(missing.hint).toBe(`ENOENT: ${join(directory, 'missing.toml')} does not exist: check the path`);
    expect(refusal(() => readKataConfiguration(directory)).hint).toBe(
      `EISDIR: ${directory} is a directory: give the file in it`,
    );
    mkdirSync(join(directory, 'config.d', '60-dir'), { recursive: true });
    const notFile = refusal(() => readKataConfiguration(main));
    expect((notFile as InvalidInputError).field).toBe('path');
    expect(notFile.hint).toBe(
      `${join(directory, 'config.d', '60-dir')} is not a file: check ${join(directory, 'config.d', '60-dir')}, or move it out of config.d`,
    );
  });

  it('parseKataConfiguration takes drop-ins as text, applied in the order given', () => {
    const settings = parseKataConfiguration(MAIN, 'configuration.toml', [
      { source: 'config.d/10-a.toml', text: '[hypervisor.qemu]\ndefault_vcpus = 2\n' },
      { source: 'config.d/20-b.toml', text: '[hypervisor.qemu]\ndefault_vcpus = 3\n' },
    ]);
    expect(settings.vcpus).toBe(3);
  });
});

describe("runtime-rs's network_queues", () => {
  const RUNTIME_RS = `
[hypervisor.qemu]
default_vcpus = 1
network_queues = 1

[runtime]
internetworking_model = "tcfilter"
name = "virt_container"
hypervisor_name = "qemu"
agent_name = "kata"
`;
  const queues = (text: string, hypervisor?: 'qemu' | 'clh') =>
    networkConfigFromKata(parseKataConfiguration(text), { namespacePath, ...(hypervisor ? { hypervisor } : {}) })
      .queues;

  it('takes the tap queues from network_queues, not default_vcpus', () => {
    expect(queues(RUNTIME_RS)).toBe(1);
    expect(queues(RUNTIME_RS.replace('network_queues = 1', 'network_queues = 4'))).toBe(4);
    expect(queues(RUNTIME_RS.replace('default_vcpus = 1', 'default_vcpus = 2'))).toBe(1);
  });

  it("a runtime-rs file without network_queues (told by [runtime] name) has runtime-rs's one queue pair", () => {
    expect(
      queues(RUNTIME_RS.replace('network_queues = 1\n', '').replace('default_vcpus = 1', 'default_vcpus = 2')),
    ).toBe(1);
  });

  it('0 is one queue pair and above 256 is 256, as runtime-rs adjusts them; a negative or a fraction is refused', () => {
    expect(queues(RUNTIME_RS.replace('network_queues = 1', 'network_queues = 0'))).toBe(1);
    expect(queues(RUNTIME_RS.replace('network_queues = 1', 'network_queues = 300'))).toBe(256);
    for (const bad of ['-1', '1.5', '"4"']) {
      expect(() => parseKataConfiguration(RUNTIME_RS.replace('network_queues = 1', `network_queues = ${bad}`))).toThrow(
        /hypervisor\.qemu\.network_queues/,
      );
    }
  });

  it("a Go runtime file (no network_queues, no [runtime] name) keeps Kata's one queue pair per vCPU", () => {
    expect(queues(MAIN.replace('default_vcpus = 1', 'default_vcpus = 2'))).toBe(2);
  });
});

describe('internetworking_model, as Kata sets it', () => {
  const model = (value: string) =>
    parseKataConfiguration(`[runtime]\ninternetworking_model = ${JSON.stringify(value)}\n`).model;

  it('"" keeps the default, as Kata skips an empty value', () => {
    expect(model('')).toBeUndefined();
    expect(
      networkConfigFromKata(parseKataConfiguration('[runtime]\ninternetworking_model = ""\n'), { namespacePath }).model,
    ).toBe('tcfilter');
  });

  it("a name in another case or with blanks is refused, as Kata's SetModel matches exactly", () => {
    for (const value of ['TCFILTER', ' tcfilter', 'MacVtap', 'none ']) {
      const error = refusal(() => model(value));
      expect(error).toBeInstanceOf(InvalidInputError);
      expect(error.message).toContain('runtime.internetworking_model');
      expect(error.message).toContain('default, macvtap, tcfilter, none');
    }
    for (const value of ['default', 'macvtap', 'tcfilter', 'none']) expect(() => model(value)).not.toThrow();
  });
});

describe('cold_plug_vfio, which Kata checks before it unbinds a physical NIC', () => {
  const config = (text: string, hypervisor?: 'qemu' | 'clh' | 'firecracker') =>
    networkConfigFromKata(parseKataConfiguration(text), { namespacePath, ...(hypervisor ? { hypervisor } : {}) });

  it('a Go runtime file for QEMU or Cloud Hypervisor: "no-port" when absent (Kata\'s default), else as written', () => {
    expect(config(MAIN).coldPlugVfio).toBe('no-port');
    expect(config(MAIN.replace('[runtime]', 'cold_plug_vfio = "root-port"\n\n[runtime]')).coldPlugVfio).toBe(
      'root-port',
    );
    expect(config(MAIN.replace('[hypervisor.qemu]', '[hypervisor.clh]')).coldPlugVfio).toBe('no-port');
    // Kata's Firecracker and runtime-rs configurations do not check it.
    expect(config(MAIN.replace('[hypervisor.qemu]', '[hypervisor.firecracker]')).coldPlugVfio).toBeUndefined();
    expect(config(`${MAIN}name = "virt_container"\n`).coldPlugVfio).toBeUndefined();
    expect(() => parseKataConfiguration(MAIN.replace('[runtime]', 'cold_plug_vfio = 1\n[runtime]'))).toThrow(
      /hypervisor\.qemu\.cold_plug_vfio/,
    );
  });

  it("only a file read gives Kata's default: no settings (vcnet attach without --config) check nothing", () => {
    // What `vcnet attach` without --config builds: no Kata file was read, so Kata's default does not apply.
    for (const hypervisor of ['qemu', 'clh'] as const) {
      expect(networkConfigFromKata({}, { namespacePath, hypervisor }).coldPlugVfio).toBeUndefined();
    }
    expect(parseKataConfiguration('').coldPlugVfio).toBe('no-port');
    // A Go runtime file with nothing in it is still read by Kata, with its default.
    expect(config('').coldPlugVfio).toBe('no-port');
    expect(parseKataConfiguration('[hypervisor.qemu]\ncold_plug_vfio = ""\n').coldPlugVfio).toBe('no-port');
    // runtime-rs does not check it: its settings keep what the file says, nothing more.
    expect(parseKataConfiguration('[runtime]\nname = "virt_container"\n').coldPlugVfio).toBeUndefined();
  });

  it('a runtime-rs [hypervisor.cloud-hypervisor] section: no default, no refusal', () => {
    // runtime-rs's name for Cloud Hypervisor's section; once taken for a Go runtime file, and a physical
    // NIC was refused for a cold_plug_vfio no one set. Without [runtime] name the file is refused
    // (kata-go-or-runtime-rs.test.ts): neither runtime runs it.
    const runtimeRs = '[runtime]\nname = "virt_container"\n';
    const settings = parseKataConfiguration(`[hypervisor.cloud-hypervisor]\ndefault_vcpus = 2\n${runtimeRs}`);
    expect(settings.coldPlugVfio).toBeUndefined();
    expect(settings.networkQueues).toBe(1);
    const rs = networkConfigFromKata(settings, { namespacePath });
    expect(rs.coldPlugVfio).toBeUndefined();
    expect(() => refuseDisabledColdPlug(rs, ['enp59s2f1'])).not.toThrow();
    // What it says is kept, as for any runtime-rs file.
    expect(
      parseKataConfiguration(`[hypervisor.cloud-hypervisor]\ncold_plug_vfio = "no-port"\n${runtimeRs}`).coldPlugVfio,
    ).toBe('no-port');
  });

  it("a value Kata's checkPCIeConfig refuses is refused, naming the key, the value and Kata's values", () => {
    const qemu = (lines: string) => parseKataConfiguration(`[hypervisor.qemu]\n${lines}\n`);
    const clh = (lines: string) => parseKataConfiguration(`[hypervisor.clh]\n${lines}\n`);
    // "no_port" is how the comment in Kata's own configuration-qemu.toml.in spells it; Kata refuses the
    // file ("invalid vfio_port=no_port setting"), and vcnet took it as a port and passed the NIC through.
    for (const value of ['no_port', 'rootport', 'Root-Port']) {
      const error = refusal(() => qemu(`cold_plug_vfio = "${value}"`));
      expect(error).toBeInstanceOf(InvalidInputError);
      expect(error.message).toContain('hypervisor.qemu.cold_plug_vfio');
      expect(error.message).toContain(value);
      expect(error.message).toContain('no-port, bridge-port, root-port, switch-port');
    }
    expect(refusal(() => qemu('hot_plug_vfio = "root_port"')).message).toContain('hypervisor.qemu.hot_plug_vfio');
    // Kata's own cases (katautils create_test.go TestVfioCheckQemu, TestVfioChecksClh).
    const both = refusal(() => qemu('cold_plug_vfio = "root-port"\nhot_plug_vfio = "root-port"'));
    expect(both.message).toContain('hypervisor.qemu.cold_plug_vfio');
    expect(both.hint).toContain('hot_plug_vfio');
    expect(() => qemu('cold_plug_vfio = "switch-port"\nhot_plug_vfio = "root-port"')).toThrow(InvalidInputError);
    expect(qemu('cold_plug_vfio = "root-port"\nhot_plug_vfio = "no-port"').coldPlugVfio).toBe('root-port');
    expect(qemu('cold_plug_vfio = "no-port"\nhot_plug_vfio = "root-port"').coldPlugVfio).toBe('no-port');
    expect(qemu('cold_plug_vfio = "bridge-port"').coldPlugVfio).toBe('bridge-port');
    expect(clh('cold_plug_vfio = "root-port"').coldPlugVfio).toBe('root-port');
    for (const value of ['bridge-port', 'switch-port']) {
      const error = refusal(() => clh(`cold_plug_vfio = "${value}"`));
      expect(error.message).toContain('hypervisor.clh.cold_plug_vfio');
      expect(error.message).toContain('no-port, root-port');
    }
    expect(() => clh('hot_plug_vfio = "switch-port"')).toThrow(/hypervisor\.clh\.hot_plug_vfio/);
    // Kata checks the port only on a q35 or virt machine (q35 when machine_type is unset); on another
    // machine it takes any value, and a value other than "no-port" lets the NIC through, in Kata and vcnet.
    expect(qemu('machine_type = "pc"\ncold_plug_vfio = "rootport"').coldPlugVfio).toBe('rootport');
    expect(() => qemu('machine_type = "virt"\ncold_plug_vfio = "rootport"')).toThrow(InvalidInputError);
    expect(() => qemu('machine_type = 35')).toThrow(/hypervisor\.qemu\.machine_type/);
    // Not checked where Kata does not check it: Firecracker, and a runtime-rs file.
    expect(() => parseKataConfiguration('[hypervisor.firecracker]\ncold_plug_vfio = "rootport"\n')).not.toThrow();
    expect(() =>
      parseKataConfiguration('[hypervisor.qemu]\ncold_plug_vfio = "rootport"\n[runtime]\nname = "virt_container"\n'),
    ).not.toThrow();
  });

  it('"no-port" refuses the physical NICs an attach would pass through, naming them and the key', () => {
    const noPort = config(MAIN);
    const error = refusal(() => refuseDisabledColdPlug(noPort, ['enp59s2f1']));
    expect(error.code).toBe('VCNET_CONFIG_CONFLICT');
    expect(error.message).toContain('enp59s2f1');
    expect(error.message).toContain('cold_plug_vfio');
    expect(error.hint).toMatch(/root-port/);
    expect(() => refuseDisabledColdPlug(noPort, [])).not.toThrow();
    const rootPort = config(MAIN.replace('[runtime]', 'cold_plug_vfio = "root-port"\n\n[runtime]'));
    expect(() => refuseDisabledColdPlug(rootPort, ['enp59s2f1'])).not.toThrow();
    // Without a Kata configuration (vcnet's own defaults) physical NICs are passed through, as before.
    expect(() => refuseDisabledColdPlug(defineNetworkConfig({ namespacePath }), ['enp59s2f1'])).not.toThrow();
  });
});
