import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { InvalidFieldsError, InvalidInputError } from '../../../src/errors.js';
import { isLocallyAdministeredUnicast, randomPrivateMacAddress } from '../../../src/mac-address.js';
import { type NetworkConfig, parseKataConfiguration, validateNetworkConfig } from '../../../src/network/config.js';
import { createInterfacePair, tapName } from '../../../src/network/interface-pair.js';
import {
  type InterworkingModel,
  isValidInterworkingModel,
  parseInterworkingModel,
} from '../../../src/network/interworking-model.js';
import { macvtapQueueLength } from '../../../src/network/plan/plan-attach.js';

describe('internetworking model', () => {
  it('parses every name, resolves default to tcfilter, and refuses others listing the accepted names', () => {
    expect(parseInterworkingModel('default')).toBe('tcfilter');
    expect(parseInterworkingModel('tcfilter')).toBe('tcfilter');
    expect(parseInterworkingModel('macvtap')).toBe('macvtap');
    expect(parseInterworkingModel('none')).toBe('none');
    expect(parseInterworkingModel(' MacVtap ')).toBe('macvtap');
    const error = (() => {
      try {
        parseInterworkingModel('bridged');
      } catch (caught) {
        return caught as InvalidInputError;
      }
    })();
    expect(error).toBeInstanceOf(InvalidInputError);
    expect(error?.message).toContain('"bridged"');
    expect(error?.message).toContain('default, macvtap, tcfilter, none');
    expect(isValidInterworkingModel('none')).toBe(true);
    expect(isValidInterworkingModel('unknown')).toBe(false);
    expect(isValidInterworkingModel(3)).toBe(false);
  });
});

describe('MAC addresses', () => {
  it('makes 10,000 random MACs, all unicast and locally administered, none repeated', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const mac = randomPrivateMacAddress();
      expect(mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      expect(isLocallyAdministeredUnicast(mac)).toBe(true);
      seen.add(mac);
    }
    expect(seen.size).toBe(10_000);
  });
});

describe('interface pair', () => {
  it('names the tap tap<idx>_kata and takes the pod interface name for the guest, eth<idx> if it has none', () => {
    expect(tapName(3)).toBe('tap3_kata');
    const pair = createInterfacePair(
      1,
      'eth0',
      { name: 'eth0', hardwareAddress: '02:00:00:00:00:01' },
      'tcfilter',
      'sb-eth0',
    );
    expect(pair).toMatchObject({
      name: 'eth0',
      tap: { name: 'tap1_kata', guestHardwareAddress: '02:00:00:00:00:01' },
      model: 'tcfilter',
    });
    expect(createInterfacePair(4, '', { name: 'x', hardwareAddress: '' }, 'macvtap', 'id').name).toBe('eth4');
    expect(isLocallyAdministeredUnicast(pair.spareHardwareAddress)).toBe(true);
  });
});

describe('macvtap queue length', () => {
  it("takes the pod interface's txqueuelen, but never 0 (a macvtap sizes its receive ring by it)", () => {
    expect(macvtapQueueLength({ txQueueLength: 500 })).toBe(500);
    expect(macvtapQueueLength({ txQueueLength: 0 })).toBe(1000);
    expect(macvtapQueueLength({})).toBe(1000);
  });
});

describe('network configuration', () => {
  const base = {
    namespacePath: '/var/run/netns/x',
    namespaceCreatedByVcnet: false,
    queues: 1,
    vhostNet: 'auto' as const,
  };

  it('refuses disable_new_netns with any model but none (Kata rule)', () => {
    expect(() => validateNetworkConfig({ ...base, model: 'tcfilter', disableNewNetns: true })).toThrow(
      /disable_new_netns works only with internetworking_model "none"/,
    );
    expect(() => validateNetworkConfig({ ...base, model: 'macvtap', disableNewNetns: true })).toThrow(/"macvtap"/);
    expect(validateNetworkConfig({ ...base, model: 'none', disableNewNetns: true }).model).toBe('none');
    expect(() => validateNetworkConfig({ ...base, model: 'none', disableNewNetns: false, queues: 0 })).toThrow(
      /queues/,
    );
  });

  it("reads Kata's configuration.toml network keys", () => {
    const settings = parseKataConfiguration(`
[hypervisor.qemu]
path = "/usr/bin/qemu-system-x86_64"
default_vcpus = 2
rx_rate_limiter_max_rate = 10000000
tx_rate_limiter_max_rate = 0
vhost_user_store_path = "/var/run/kata-containers/vhost-user"
disable_vhost_net = true

[runtime]
internetworking_model = "macvtap"
disable_new_netns = false
`);
    expect(settings).toEqual({
      hypervisor: 'qemu',
      model: 'macvtap',
      disableNewNetns: false,
      rateLimit: { rxBitsPerSecond: 10_000_000 },
      // vhost_user_store_path is for vhost-user block devices in Kata: it does not move the net socket search.
      vhostNet: 'off',
      vcpus: 2,
      // Kata's default for a Go runtime file that does not set it.
      coldPlugVfio: 'no-port',
    });
  });

  it('reads default_vcpus as Kata does: below 0 is every core, a fraction the next whole vCPU', () => {
    expect(parseKataConfiguration('[hypervisor.qemu]\ndefault_vcpus = -1\n').vcpus).toBe(availableParallelism());
    expect(parseKataConfiguration('[hypervisor.qemu]\ndefault_vcpus = 1.5\n').vcpus).toBe(2);
    expect(parseKataConfiguration('[hypervisor.qemu]\ndefault_vcpus = 0\n').vcpus).toBe(0);
    expect(() => parseKataConfiguration('[hypervisor.qemu]\ndefault_vcpus = nan\n')).toThrow(
      /hypervisor\.qemu\.default_vcpus.*a number of vCPUs/,
    );
  });

  it("checks a library caller's NetworkConfig: the model by name (default and any case), each field named", () => {
    const config: NetworkConfig = {
      namespacePath: '/var/run/netns/pod',
      model: 'tcfilter',
      namespaceCreatedByVcnet: false,
      disableNewNetns: false,
      queues: 1,
      vhostNet: 'auto',
    };
    expect(validateNetworkConfig(config)).toBe(config);
    expect(validateNetworkConfig({ ...config, model: 'default' as InterworkingModel }).model).toBe('tcfilter');
    expect(validateNetworkConfig({ ...config, model: 'MACVTAP' as InterworkingModel }).model).toBe('macvtap');
    expect(() => validateNetworkConfig({ ...config, model: 'bogus' as InterworkingModel })).toThrow(
      /invalid model: "bogus" \(accepted: default, macvtap, tcfilter, none\)/,
    );
    expect(() => validateNetworkConfig({ ...config, vhostNet: 'on' as 'auto' })).toThrow(/invalid vhostNet: "on"/);
    expect(() => validateNetworkConfig({ ...config, namespacePath: '' })).toThrow(/invalid namespacePath/);
  });

  it('fills the flags a JavaScript caller leaves out as the CLI does, and names every field the record would refuse', () => {
    const plain = { namespacePath: '/var/run/netns/pod', model: 'tcfilter', queues: 1, vhostNet: 'off' };
    expect(validateNetworkConfig(plain as NetworkConfig)).toEqual({
      ...plain,
      namespaceCreatedByVcnet: false,
      disableNewNetns: false,
    });
    const refused = (() => {
      try {
        validateNetworkConfig({
          namespacePath: 'var/run/netns/pod',
          model: 'bridge',
          queues: 0,
          vhostNet: 'auto',
          disableNewNetns: 1,
        } as never);
      } catch (error) {
        return error as InvalidFieldsError;
      }
    })();
    expect(refused).toBeInstanceOf(InvalidFieldsError);
    expect(refused?.issues).toEqual([
      {
        field: 'namespacePath',
        value: 'var/run/netns/pod',
        accepted: 'the absolute path of the pod network namespace',
      },
      { field: 'model', value: 'bridge', accepted: 'default, macvtap, tcfilter, none' },
      { field: 'disableNewNetns', value: 1, accepted: 'true or false' },
      { field: 'queues', value: 0, accepted: 'an integer from 1 to 256' },
    ]);
    expect(refused?.message).toMatch(/^invalid namespacePath: "var\/run\/netns\/pod" .* and 3 more: model="bridge"/);
  });

  it('names the key, the value and what is accepted for bad values', () => {
    expect(() => parseKataConfiguration('[runtime]\ninternetworking_model = "bridge"\n')).toThrow(
      /runtime\.internetworking_model.*"bridge".*default, macvtap, tcfilter, none/,
    );
    expect(() => parseKataConfiguration('[hypervisor.qemu]\nrx_rate_limiter_max_rate = -5\n')).toThrow(
      /hypervisor\.qemu\.rx_rate_limiter_max_rate.*-5.*bits per second/,
    );
    // Below 8 bits per second the kernel refuses the htb class (a rate of 0 bytes per second).
    for (const key of ['rx_rate_limiter_max_rate', 'tx_rate_limiter_max_rate']) {
      expect(() => parseKataConfiguration(`[hypervisor.qemu]\n${key} = 7\n`)).toThrow(
        `invalid hypervisor.qemu.${key}: 7 (accepted: 0 (off) or at least 8 bits per second)`,
      );
      expect(parseKataConfiguration(`[hypervisor.qemu]\n${key} = 8\n`).rateLimit).toEqual({
        [key.startsWith('rx') ? 'rxBitsPerSecond' : 'txBitsPerSecond']: 8,
      });
    }
    expect(() => parseKataConfiguration('[runtime]\ndisable_new_netns = "yes"\n')).toThrow(
      /runtime\.disable_new_netns.*a boolean/,
    );
    expect(() => parseKataConfiguration('[runtime\n')).toThrow(/not valid TOML/);
  });
});
