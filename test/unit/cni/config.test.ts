import { describe, expect, it } from 'vitest';
import {
  DEFAULT_CNI_LOCK_TIMEOUT_MS,
  decodeConfig,
  MAX_CONFIG_DEPTH,
  parseCniConfig,
  parseEnvironment,
  requirePreviousResult,
} from '../../../src/cni/config.js';
import { CniConfigError, CniEnvironmentError, CniError } from '../../../src/cni/errors.js';
import { DEFAULT_CNI_STATE_DIRECTORY } from '../../../src/network/state/default-directories.js';

const base = { cniVersion: '1.0.0', name: 'pods', type: 'vcnet-cni' };

function thrown(run: () => unknown): CniError {
  try {
    run();
  } catch (error) {
    if (error instanceof CniError) return error;
    throw error;
  }
  throw new Error('expected a CniError');
}

describe('parseCniConfig', () => {
  it('fills the defaults: tcfilter, one queue, /run/vcnet/cni, no rate limit, no prevResult', () => {
    expect(parseCniConfig(base)).toEqual({
      cniVersion: '1.0.0',
      name: 'pods',
      type: 'vcnet-cni',
      model: 'tcfilter',
      queues: 1,
      stateDirectory: DEFAULT_CNI_STATE_DIRECTORY,
      lockTimeoutMs: DEFAULT_CNI_LOCK_TIMEOUT_MS,
    });
  });

  it('takes tapOwner and tapGroup as numbers or names, and names the field of one it cannot resolve', () => {
    expect(parseCniConfig({ ...base, tapOwner: 'root', tapGroup: 107 })).toMatchObject({ tapOwner: 0, tapGroup: 107 });
    const unknown = thrown(() => parseCniConfig({ ...base, tapOwner: 'no-such-user-s13' }));
    expect(unknown).toBeInstanceOf(CniConfigError);
    expect(unknown.message).toContain('tapOwner');
    expect(unknown.message).toContain('no-such-user-s13');
    expect(thrown(() => parseCniConfig({ ...base, tapGroup: -1 })).message).toContain('tapGroup');
  });

  it('resolves model "default", maps rateLimit to bits per second, 0 meaning no limit', () => {
    const config = parseCniConfig({ ...base, model: 'default', rateLimit: { rx: 1_000_000, tx: 0 }, queues: 4 });
    expect(config.model).toBe('tcfilter');
    expect(config.queues).toBe(4);
    expect(config.rateLimit).toEqual({ rxBitsPerSecond: 1_000_000 });
    expect(parseCniConfig({ ...base, rateLimit: { rx: 0, tx: 0 } }).rateLimit).toBeUndefined();
    expect(parseCniConfig({ ...base, model: 'macvtap' }).model).toBe('macvtap');
  });

  it('accepts a 0.4.0 config and keeps prevResult in the 1.x shape (no "version" on IPs; plugin.ts writes it back)', () => {
    const prevResult = {
      cniVersion: '0.4.0',
      interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/var/run/netns/pod' }],
      ips: [{ version: '4', address: '10.1.0.2/24', interface: 0 }],
    };
    const config = parseCniConfig({ ...base, cniVersion: '0.4.0', prevResult, runtimeConfig: { any: 1 } });
    expect(config.cniVersion).toBe('0.4.0');
    expect(config.prevResult).toEqual({ ...prevResult, ips: [{ address: '10.1.0.2/24', interface: 0 }] });
  });

  it('refuses a prevResult in a version it cannot read with code 1', () => {
    const error = thrown(() => parseCniConfig({ ...base, prevResult: { cniVersion: '0.2.0', ip4: {} } }));
    expect(error.cniCode).toBe(1);
    expect(error.message).toContain('incompatible CNI version of prevResult "0.2.0"');
  });

  it.each([
    [{ model: 'fast' }, 'model', 'expected one of default, macvtap, tcfilter, none (got "fast")'],
    [{ queues: 0 }, 'queues', 'expected an integer from 1 to 256 (got 0)'],
    [{ queues: 1.5 }, 'queues', 'expected an integer from 1 to 256 (got 1.5)'],
    [{ stateDir: 'relative/dir' }, 'stateDir', 'expected an absolute directory path (got "relative/dir")'],
    [{ stateDir: '/' }, 'stateDir', 'expected an absolute directory path other than "/", without NUL bytes (got "/")'],
    [{ stateDir: '/tmp/a\0b' }, 'stateDir', 'expected an absolute directory path other than "/", without NUL bytes'],
    [{ rateLimit: { rx: -1 } }, 'rateLimit.rx', 'expected a whole number of bits per second (0 = no limit) (got -1)'],
    [{ rateLimit: 5 }, 'rateLimit', 'expected an object {rx, tx} (got 5)'],
    // The kernel refuses an htb class below 1 byte per second (EINVAL at attach, code 103, before).
    [{ rateLimit: { rx: 1 } }, 'rateLimit.rx', 'expected 0 (off) or at least 8 bits per second (got 1)'],
    [{ rateLimit: { tx: 7 } }, 'rateLimit.tx', 'expected 0 (off) or at least 8 bits per second (got 7)'],
    [{ name: 'bad name' }, 'name', 'expected letters, digits'],
    [{ prevResult: { interfaces: [{ mac: 'x' }] } }, 'prevResult.interfaces[0].name', 'missing, expected a string'],
    // Out of range said as in range: zod's "Too big: expected number to be <=2147483647" never shows.
    [{ tapOwner: 2 ** 31 }, 'tapOwner', 'expected a uid (0 to 2147483647) or a user name (got 2147483648)'],
    [{ tapOwner: -1 }, 'tapOwner', 'expected a uid (0 to 2147483647) or a user name (got -1)'],
    [{ tapOwner: 2 ** 53 }, 'tapOwner', 'expected a uid (0 to 2147483647) or a user name (got 9007199254740992)'],
    [{ tapGroup: 2 ** 32 }, 'tapGroup', 'expected a gid (0 to 2147483647) or a group name (got 4294967296)'],
    [{ tapGroup: -1e21 }, 'tapGroup', 'expected a gid (0 to 2147483647) or a group name (got -1e+21)'],
    [
      { prevResult: { interfaces: [{ name: 'eth0' }, null] } },
      'prevResult.interfaces[1]',
      'expected an interface object',
    ],
    [{ prevResult: { ips: [7] } }, 'prevResult.ips[0]', 'expected an IP object such as {"address": "10.0.0.2/24"}'],
    [{ prevResult: { routes: ['x'] } }, 'prevResult.routes[0]', 'expected a route object such as {"dst": "0.0.0.0/0"}'],
  ])('refuses %j with code 7 naming %s', (extra, field, problem) => {
    const error = thrown(() => parseCniConfig({ ...base, ...extra }));
    expect(error).toBeInstanceOf(CniConfigError);
    expect(error.cniCode).toBe(7);
    expect((error as CniConfigError).field).toBe(field);
    expect(error.message).toContain(`invalid network config: ${field}: ${problem}`);
  });

  it("says every refusal of a field in vcnet's words, never zod's", () => {
    const odd = [null, -1, -0.5, 1.5, 2 ** 31, 2 ** 53, 1e308, -1e308, '', 'x', true, [], {}, [null], { a: 1 }];
    const fields: Array<(value: unknown) => Record<string, unknown>> = [
      (value) => ({ model: value }),
      (value) => ({ queues: value }),
      (value) => ({ tapOwner: value }),
      (value) => ({ tapGroup: value }),
      (value) => ({ stateDir: value }),
      (value) => ({ lockTimeoutMs: value }),
      (value) => ({ rateLimit: value }),
      (value) => ({ rateLimit: { rx: value } }),
      (value) => ({ prevResult: value }),
      (value) => ({ prevResult: { interfaces: value } }),
      (value) => ({ prevResult: { interfaces: [value] } }),
      (value) => ({ prevResult: { interfaces: [{ name: value }] } }),
      (value) => ({ prevResult: { ips: [value] } }),
      (value) => ({ prevResult: { routes: [value] } }),
      (value) => ({ prevResult: { dns: value } }),
    ];
    let refused = 0;
    for (const field of fields) {
      for (const value of odd) {
        let message: string | undefined;
        try {
          parseCniConfig({ ...base, ...field(value) });
        } catch (error) {
          expect(error).toBeInstanceOf(CniError);
          message = (error as Error).message;
        }
        if (message === undefined) continue;
        refused++;
        expect(message, JSON.stringify(field(value))).not.toMatch(
          /Invalid input|Too (big|small)|expected (int|number|object|string|array) to|received |\[object Object\]|undefined|NaN/,
        );
      }
    }
    expect(refused).toBeGreaterThan(150);
  });

  it('accepts 8 bits per second, the smallest rate the kernel takes', () => {
    expect(parseCniConfig({ ...base, rateLimit: { rx: 8, tx: 8 } }).rateLimit).toEqual({
      rxBitsPerSecond: 8,
      txBitsPerSecond: 8,
    });
  });

  it('a malformed prevResult: the hint says the runtime passes it, and to check the plugins before vcnet-cni', () => {
    const error = thrown(() => parseCniConfig({ ...base, prevResult: { interfaces: 'eth0' } }));
    expect((error as CniConfigError).field).toBe('prevResult.interfaces');
    expect(error.hint).toBe(
      "the runtime passes the previous plugin's result as prevResult: check the plugins before vcnet-cni in the conflist (their versions and output)",
    );
  });

  it('names a missing required field', () => {
    const { name: _name, ...withoutName } = base;
    expect(thrown(() => parseCniConfig(withoutName)).message).toBe(
      'invalid network config: name: missing, expected a string',
    );
  });

  it('refuses a config without cniVersion, or with the "" libcni passes for a conflist without one, with code 1 saying so', () => {
    const { cniVersion: _version, ...withoutVersion } = base;
    const supported = 'which CNI reads as 0.1.0: vcnet-cni supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0';
    for (const [config, passed] of [
      [withoutVersion, 'none'],
      [{ ...base, cniVersion: '' }, '""'],
    ] as const) {
      const error = thrown(() => parseCniConfig(config));
      expect(error.cniCode).toBe(1);
      expect(error.message).toBe(`the conflist names no cniVersion (the runtime passed ${passed}), ${supported}`);
      expect(error.hint).toBe(
        'add "cniVersion": "1.0.0" to the conflist (the plugins before vcnet-cni then answer in 1.0.0 too, not with 0.1.0\'s "ip4" result); a conflist that lists only cniVersions (CNI 1.1) needs a runtime whose libcni chooses from that list, and an older one passes none: keep cniVersion beside it',
      );
    }
  });

  it('refuses an unknown key inside rateLimit with code 2, naming key and value', () => {
    const error = thrown(() => parseCniConfig({ ...base, rateLimit: { rx: 1_000_000, burst: 64 } }));
    expect(error.cniCode).toBe(2);
    expect(error.message).toBe('unsupported field in network config: rateLimit.burst = 64');
  });

  it('refuses a CNI version it does not speak with code 1', () => {
    const error = thrown(() => parseCniConfig({ ...base, cniVersion: '0.2.0' }));
    expect(error.cniCode).toBe(1);
    expect(error.message).toBe(
      'incompatible CNI version "0.2.0": vcnet-cni supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0',
    );
  });

  it('requires prevResult for ADD and CHECK with a message saying why', () => {
    const error = thrown(() => requirePreviousResult(parseCniConfig(base), 'ADD'));
    expect(error.cniCode).toBe(7);
    expect(error.message).toContain('prevResult: missing: vcnet-cni is a chained plugin');
    expect(error.hint).toContain('after an interface plugin (bridge, ptp, macvlan...)');
  });
});

describe('decodeConfig', () => {
  it('gives code 6 for stdin that is not a JSON object', () => {
    expect(thrown(() => decodeConfig('{nope')).cniCode).toBe(6);
    expect(thrown(() => decodeConfig('[1]')).cniCode).toBe(6);
    expect(thrown(() => decodeConfig('')).message).toContain('not valid JSON');
    expect(decodeConfig('{"a":1}')).toEqual({ a: 1 });
  });

  it('says a config that starts with a byte order mark does so, in words a terminal shows', () => {
    expect(thrown(() => decodeConfig('\uFEFF{"a":1}')).message).toBe(
      'network config on stdin is not valid JSON: it starts with a byte order mark (U+FEFF), which JSON does not allow',
    );
  });

  it('gives code 6 naming the key for a config nested deeper than ADD could write back, and takes one just within', () => {
    // Found by fuzzing vcnet-cni: JSON.parse took 5000 levels under prevResult, then JSON.stringify of
    // ADD's result overflowed the stack (code 999) after the attach, leaving the tap and its record.
    const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
    const deep = thrown(() => decodeConfig(`{"cniVersion":"1.0.0","prevResult":{"dns":{"x":${nested(5000)}}}}`));
    expect(deep.cniCode).toBe(6);
    expect(deep.message).toBe(
      `network config on stdin nests deeper than ${MAX_CONFIG_DEPTH} levels (at prevResult.dns.x[0]...)`,
    );
    expect(deep.hint).toContain('"prevResult"');
    // The config object is level 0: a value MAX_CONFIG_DEPTH levels down is still taken.
    expect(decodeConfig(`{"runtimeConfig":${nested(MAX_CONFIG_DEPTH - 1)}}`)).toHaveProperty('runtimeConfig');
    expect(thrown(() => decodeConfig(`{"runtimeConfig":${nested(MAX_CONFIG_DEPTH)}}`)).cniCode).toBe(6);
  });
});

describe('parseEnvironment', () => {
  const env = {
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: 'abc123',
    CNI_NETNS: '/var/run/netns/pod',
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/opt/cni/bin:/usr/lib/cni',
  };

  it('reads the CNI_* variables', () => {
    expect(parseEnvironment(env)).toEqual({
      command: 'ADD',
      containerId: 'abc123',
      namespacePath: '/var/run/netns/pod',
      interfaceName: 'eth0',
      pluginPath: ['/opt/cni/bin', '/usr/lib/cni'],
    });
  });

  it('needs nothing but CNI_COMMAND for VERSION, and no CNI_NETNS or CNI_PATH for DEL', () => {
    expect(parseEnvironment({ CNI_COMMAND: 'VERSION' }).command).toBe('VERSION');
    const del = parseEnvironment({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'abc', CNI_IFNAME: 'eth0' });
    expect(del.namespacePath).toBeUndefined();
  });

  it('needs no container, interface or namespace for STATUS and GC', () => {
    expect(parseEnvironment({ CNI_COMMAND: 'STATUS' })).toEqual({
      command: 'STATUS',
      containerId: '',
      interfaceName: '',
      pluginPath: [],
    });
    expect(parseEnvironment({ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }).pluginPath).toEqual(['/opt/cni/bin']);
  });

  it.each([
    [{ CNI_COMMAND: undefined }, 'CNI_COMMAND', 'is missing'],
    [{ CNI_COMMAND: 'UPDATE' }, 'CNI_COMMAND', 'is invalid: "UPDATE"'],
    [{ CNI_CONTAINERID: '' }, 'CNI_CONTAINERID', 'is missing'],
    [{ CNI_CONTAINERID: '-x' }, 'CNI_CONTAINERID', 'is invalid'],
    [{ CNI_IFNAME: 'a-very-long-interface-name' }, 'CNI_IFNAME', 'is invalid'],
    [{ CNI_IFNAME: 'eth/0' }, 'CNI_IFNAME', 'is invalid'],
    [{ CNI_NETNS: undefined }, 'CNI_NETNS', 'is missing'],
    [{ CNI_NETNS: 'pod' }, 'CNI_NETNS', 'is invalid'],
    [{ CNI_PATH: '' }, 'CNI_PATH', 'is missing'],
  ])('refuses %j with code 4 naming %s', (change, variable, problem) => {
    const error = thrown(() => parseEnvironment({ ...env, ...change }));
    expect(error).toBeInstanceOf(CniEnvironmentError);
    expect(error.cniCode).toBe(4);
    expect((error as CniEnvironmentError).variable).toBe(variable);
    expect(error.message).toContain(`environment variable ${variable} ${problem}`);
  });
  it('takes every interface name libcni takes (its ValidateInterfaceName), as bridge does', () => {
    for (const name of ['net+1', 'eth0@x', 'pod#1', 'ä-vm', '..x', '.hidden', '_', '123456789012345', 'ÿ'.repeat(7)]) {
      expect(parseEnvironment({ ...env, CNI_IFNAME: name }).interfaceName).toBe(name);
    }
  });

  it.each([
    ['a 16-byte name', '1234567890123456', '16 bytes, more than 15'],
    ['8 two-byte letters (16 bytes)', 'ÿ'.repeat(8), '16 bytes, more than 15'],
    ['"/"', 'eth/0', 'it contains "/"'],
    ['":"', 'eth0:1', 'it contains ":"'],
    ['a space', 'eth 0', 'it contains " "'],
    ['a tab', 'eth\t0', 'it contains "\\t"'],
    ['"."', '.', '"." names a directory'],
    [
      '".."',
      '..',
      '".." names a directory (the state path would leave <container>/interfaces/), and the kernel refuses it',
    ],
  ])('refuses CNI_IFNAME with %s, saying why', (_case, name, why) => {
    const error = thrown(() => parseEnvironment({ ...env, CNI_IFNAME: name }));
    expect(error).toBeInstanceOf(CniEnvironmentError);
    expect(error.cniCode).toBe(4);
    expect(error.message).toContain(`environment variable CNI_IFNAME is invalid: ${JSON.stringify(name)} (${why}`);
    expect(error.message).toContain('accepted: an interface name of 1 to 15 bytes without "/", ":" or whitespace');
  });
});
