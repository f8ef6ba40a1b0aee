/**
 * Numbers in a Kata configuration.toml, read as Kata's two decoders read them (kata-containers
 * 7c6ba40c54ea): the Go runtime decodes with BurntSushi/toml v1.6.0 into uint64 and int64 fields
 * (decode.go unifyInt: a TOML float is "incompatible types", whatever its value; parse.go
 * valueInteger: an integer beyond int64 fails the file); runtime-rs with the toml crate 1.1.2 into a
 * toml::Value (integers are i64: "u64 value was too large"), then serde into u64 and u32 fields,
 * whose visitors take no float. Both take a float or an integer in a float key (default_vcpus).
 */
import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { parseKataConfiguration } from '../../../src/network/config.js';

/** The [runtime] of a file runtime-rs runs (every runtime-rs configuration sets its handler's name). */
const RUNTIME_RS = '[runtime]\nname = "virt_container"\n';

function refusal(text: string, dropIns: { source: string; text: string }[] = []): InvalidInputError {
  try {
    parseKataConfiguration(text, 'configuration.toml', dropIns);
  } catch (error) {
    if (error instanceof InvalidInputError) return error;
    throw error;
  }
  throw new Error(`accepted: ${text}`);
}

describe('a float in an integer key of configuration.toml', () => {
  it.each([
    ['[hypervisor.qemu]\nrx_rate_limiter_max_rate = 1e6\n', 'hypervisor.qemu.rx_rate_limiter_max_rate', '1000000.0'],
    ['[hypervisor.qemu]\ntx_rate_limiter_max_rate = 1.0\n', 'hypervisor.qemu.tx_rate_limiter_max_rate', '1.0'],
    ['[hypervisor.qemu]\nrx_rate_limiter_max_rate = 1.5\n', 'hypervisor.qemu.rx_rate_limiter_max_rate', '1.5'],
    [
      '[hypervisor.firecracker]\ntx_rate_limiter_max_rate = 8e6\n',
      'hypervisor.firecracker.tx_rate_limiter_max_rate',
      '8000000.0',
    ],
    [
      '[hypervisor.clh]\nnet_rate_limiter_bw_max_rate = 1e6\n',
      'hypervisor.clh.net_rate_limiter_bw_max_rate',
      '1000000.0',
    ],
    [
      '[hypervisor.clh]\nnet_rate_limiter_ops_max_rate = 100\nnet_rate_limiter_ops_one_time_burst = 5e2\n',
      'hypervisor.clh.net_rate_limiter_ops_one_time_burst',
      '500.0',
    ],
    [`${RUNTIME_RS}[hypervisor.qemu]\nnetwork_queues = 2.0\n`, 'hypervisor.qemu.network_queues', '2.0'],
    [
      `${RUNTIME_RS}[hypervisor.qemu]\nrx_rate_limiter_max_rate = 1e6\n`,
      'hypervisor.qemu.rx_rate_limiter_max_rate',
      '1000000.0',
    ],
  ])('refuses %j, naming the key, the float and what is accepted', (text, field, shown) => {
    const error = refusal(text);
    expect(error.field).toBe(field);
    expect(error.message).toBe(
      `invalid ${field}: ${shown} (accepted: an integer, written without a decimal point or an exponent)`,
    );
    expect(error.hint).toContain('Kata refuses a float in an integer key');
    expect(JSON.parse(JSON.stringify(error)).value).toBe(shown);
  });

  it('shows a float in a string key as a float', () => {
    expect(refusal('[hypervisor.qemu]\nvhost_user_store_path = 1.0\n').message).toBe(
      'invalid hypervisor.qemu.vhost_user_store_path: 1.0 (accepted: a string)',
    );
    expect(refusal('[runtime]\ninternetworking_model = 2.5\n').message).toBe(
      'invalid runtime.internetworking_model: 2.5 (accepted: a string)',
    );
  });

  it('shows a negative zero float with its sign, as the file wrote it', () => {
    expect(refusal('[hypervisor.qemu]\nrx_rate_limiter_max_rate = -0.0\n').message).toBe(
      'invalid hypervisor.qemu.rx_rate_limiter_max_rate: -0.0 (accepted: an integer, written without a decimal point or an exponent)',
    );
  });

  it('says which integer a whole float stands for, and not for a fraction', () => {
    expect(refusal('[hypervisor.qemu]\nrx_rate_limiter_max_rate = 1e6\n').hint).toContain('write 1000000');
    expect(refusal('[hypervisor.qemu]\nrx_rate_limiter_max_rate = 1.5\n').hint).not.toContain('write ');
  });

  it('names the drop-in that set the float', () => {
    const error = refusal('[hypervisor.qemu]\nrx_rate_limiter_max_rate = 0\n', [
      { source: 'config.d/50-rate.toml', text: '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 2e6\n' },
    ]);
    expect(error.field).toBe('hypervisor.qemu.rx_rate_limiter_max_rate (set in config.d/50-rate.toml)');
  });

  it('keeps the integers Kata takes, in every notation TOML has for them', () => {
    const text = '[hypervisor.qemu]\nrx_rate_limiter_max_rate = 1_000_000\ntx_rate_limiter_max_rate = 0x1E8480\n';
    expect(parseKataConfiguration(text).rateLimit).toEqual({ rxBitsPerSecond: 1_000_000, txBitsPerSecond: 2_000_000 });
  });

  it('takes a float and an integer in default_vcpus, a float key in both runtimes', () => {
    expect(parseKataConfiguration('[hypervisor.qemu]\ndefault_vcpus = 2.0\n').vcpus).toBe(2);
    expect(parseKataConfiguration('[hypervisor.qemu]\ndefault_vcpus = 2\n').vcpus).toBe(2);
    expect(parseKataConfiguration('[hypervisor.qemu]\ndefault_vcpus = 15e-1\n').vcpus).toBe(2);
  });

  it('says a float in network_queues of a Go runtime file, which nothing reads, as a float', () => {
    const { warnings } = parseKataConfiguration('[hypervisor.qemu]\nnetwork_queues = 2.0\n');
    expect(warnings?.find((warning) => warning.includes('network_queues'))).toMatch(
      /^\[hypervisor\.qemu\] network_queues = 2\.0 is not used/,
    );
  });
});

describe('an integer in a key of another type', () => {
  it('shows an integer in a key of another type as the integer the file wrote, in any table', () => {
    expect(refusal('[hypervisor.qemu]\ndisable_vhost_net = 1\n').message).toBe(
      'invalid hypervisor.qemu.disable_vhost_net: 1 (accepted: a boolean)',
    );
    expect(refusal('[hypervisor.qemu]\nmachine_type = 5\n').message).toBe(
      'invalid hypervisor.qemu.machine_type: 5 (accepted: a string)',
    );
    expect(refusal('[hypervisor.clh]\nenable_iommu = 0\n').message).toBe(
      'invalid hypervisor.clh.enable_iommu: 0 (accepted: a boolean)',
    );
    expect(refusal('[hypervisor.qemu]\ndefault_vcpus = [2]\n').message).toBe(
      'invalid hypervisor.qemu.default_vcpus: [2] (accepted: a number)',
    );
    expect(refusal('[runtime]\ndisable_new_netns = 1\n').message).toBe(
      'invalid runtime.disable_new_netns: 1 (accepted: a boolean)',
    );
  });
});

describe('an integer beyond what Kata reads', () => {
  it.each([
    ['9223372036854775808', 'hypervisor.qemu.default_memory'],
    ['18446744073709551615', 'hypervisor.qemu.default_memory'],
    ['-9223372036854775809', 'hypervisor.qemu.default_memory'],
  ])('refuses %s beyond TOML 64-bit integers in any key, as both runtimes refuse the file', (written, field) => {
    const error = refusal(`[hypervisor.qemu]\ndefault_memory = ${written}\n`);
    expect(error.field).toBe(field);
    expect(error.message).toBe(
      `invalid ${field}: ${written} (accepted: an integer from -9223372036854775808 to 9223372036854775807)`,
    );
  });

  it('names the place in an array and the drop-in', () => {
    expect(refusal('[hypervisor.qemu]\nkernel_modules = [1, 99999999999999999999]\n').field).toBe(
      'hypervisor.qemu.kernel_modules[1]',
    );
    const error = refusal('[runtime]\n', [
      { source: 'config.d/10-big.toml', text: 'sizes = { a = 0xffffffffffffffff }\n' },
    ]);
    expect(error.field).toBe('sizes.a (set in config.d/10-big.toml)');
  });

  it('keeps a 64-bit integer beyond 2^53 in a key vcnet does not read', () => {
    const text = '[hypervisor.qemu]\ndefault_memory = 9223372036854775807\ndefault_vcpus = 2\n';
    expect(parseKataConfiguration(text)).toMatchObject({ hypervisor: 'qemu', vcpus: 2 });
  });

  it('refuses a rate beyond 2^53 - 1 bits/s, saying the bound and that Kata takes it', () => {
    const error = refusal('[hypervisor.qemu]\nrx_rate_limiter_max_rate = 9007199254740993\n');
    expect(error.field).toBe('hypervisor.qemu.rx_rate_limiter_max_rate');
    expect(error.message).toBe(
      'invalid hypervisor.qemu.rx_rate_limiter_max_rate: 9007199254740993 (accepted: a whole number of bits per second from 0 (no limit) to 9007199254740991)',
    );
    expect(error.hint).toMatch(/Kata takes up to 9223372036854775807/);
  });
});
