/**
 * The library called from plain JavaScript: an options argument of the wrong type, a misspelt key or a
 * timeout that is not a number in range is refused with InvalidInputError naming the parameter, the
 * value and what is accepted, before anything is read or changed (an options string used to mean "no
 * options": attach into the default state directory, gc over every namespace).
 */
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { closestName } from '../../src/arguments.js';
import {
  AgentClient,
  addInterface,
  attachSandbox,
  classifyScan,
  cloudHypervisorNetConfig,
  collectGarbage,
  configureGuest,
  createAgentServer,
  createEndpoint,
  defineNetworkConfig,
  detachSandbox,
  hypervisorDeviceConfig,
  InvalidInputError,
  interfaceFromJson,
  listInterfaces,
  listRoutes,
  NetlinkHandle,
  type NetworkConfig,
  type NetworkDevice,
  neighbourFromJson,
  neighboursFromJson,
  networkConfigFromKata,
  networkHotplugCommands,
  parseInterworkingModel,
  parseKataConfiguration,
  planSandboxAttach,
  planSandboxDetach,
  QemuHotplugSessions,
  QemuNetworkHotplugTarget,
  QmpClient,
  qemuNetworkArguments,
  removeInterface,
  routeFromJson,
  routesFromJson,
  scanNamespace,
  unplugNetworkDevice,
  updateRoutes,
  validateNetworkConfig,
  watchSandbox,
} from '../../src/index.js';

/** Whatever a JavaScript caller might pass, past the type checker. */
const js = <T>(value: unknown): T => value as T;

const config: NetworkConfig = defineNetworkConfig({ namespacePath: '/run/netns/f11p-not-there' });
const device: NetworkDevice = { id: 'net0', tapName: 'tap0_kata', queues: 1, guestMac: '02:00:00:00:00:01' };

/** Expects an InvalidInputError naming `field` (and, when given, with `text` in its message). */
async function refused(work: () => unknown, field: string, text?: string | RegExp): Promise<InvalidInputError> {
  let caught: unknown;
  try {
    await work();
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a refusal of ${field}`).toBeInstanceOf(InvalidInputError);
  const error = caught as InvalidInputError;
  expect(error.field).toBe(field);
  if (text !== undefined) expect(error.message).toMatch(text);
  return error;
}

describe('options arguments that are not objects', () => {
  it('attachSandbox refuses a string where its options belong, naming the parameter and the value', async () => {
    const error = await refused(() => attachSandbox('f11p-a', config, js('/tmp/f11p/state')), 'options');
    expect(error.value).toBe('/tmp/f11p/state');
    expect(error.accepted).toContain('stateDirectory');
  });

  it('collectGarbage refuses a string instead of running a gc over every namespace', async () => {
    await refused(() => collectGarbage(js('/tmp/f11p/state')), 'options', /"\/tmp\/f11p\/state"/);
    await refused(() => collectGarbage(js(null)), 'options');
    await refused(() => collectGarbage(js(['/tmp/f11p/state'])), 'options');
    await refused(() => collectGarbage({ namespaces: js('/run/netns/x') }), 'namespaces');
    await refused(() => collectGarbage({ dryRun: js('yes') }), 'dryRun');
    await refused(() => collectGarbage({ stateDirectories: js('/tmp/f11p') }), 'stateDirectories');
  });

  it('every sandbox function refuses a non-object options argument', async () => {
    const cases: Array<[string, () => unknown]> = [
      ['detachSandbox', () => detachSandbox('f11p-a', js('/tmp/f11p'))],
      ['planSandboxAttach', () => planSandboxAttach(config, 'f11p-a', undefined, js('/tmp/f11p'))],
      ['planSandboxDetach', () => planSandboxDetach('f11p-a', js('/tmp/f11p'))],
      ['addInterface', () => addInterface('f11p-a', '{}', js('/tmp/f11p'))],
      ['removeInterface', () => removeInterface('f11p-a', '{}', js('/tmp/f11p'))],
      ['updateRoutes', () => updateRoutes('f11p-a', '[]', js('/tmp/f11p'))],
      ['listInterfaces', () => listInterfaces('f11p-a', js('/tmp/f11p'))],
      ['listRoutes', () => listRoutes('f11p-a', js('/tmp/f11p'))],
      ['configureGuest', () => configureGuest('f11p-a', js('/tmp/f11p'))],
      ['watchSandbox', () => watchSandbox('f11p-a', js('/tmp/f11p'))],
      ['networkConfigFromKata', () => networkConfigFromKata({}, js('/run/netns/x'))],
      ['createAgentServer', () => createAgentServer(js({}), js('x'))],
      ['QmpClient.connect', () => QmpClient.connect('/tmp/f11p/qmp', js(5000))],
      ['AgentClient.connect', () => AgentClient.connect('/tmp/f11p/agent', js(5000))],
    ];
    for (const [name, work] of cases) {
      const error = await refused(work, 'options');
      expect(error.value, name).toBeDefined();
    }
  });

  it('a request given as an object instead of JSON text is refused by name', async () => {
    await refused(() => addInterface('f11p-a', js({ name: 'eth0' })), 'text', /JSON text/);
  });

  it('planSandboxAttach refuses an unknown hypervisor, attachSandbox a malformed hypervisor record', async () => {
    await refused(() => planSandboxAttach(config, 'f11p-a', js('kvm')), 'hypervisor');
    await refused(() => attachSandbox('f11p-a', config, { hypervisor: js({ kind: 'kvm' }) }), 'hypervisor.kind');
    await refused(
      () => attachSandbox('f11p-a', config, { hypervisor: js({ kind: 'qemu', socket: '/x' }) }),
      'hypervisor key',
    );
  });
});

describe('numeric options', () => {
  it('lockTimeoutMs must be milliseconds from 0 to an hour: "soon" used to wait for ever, -5 "waited -5 ms"', async () => {
    for (const value of ['soon', -5, Number.NaN, Number.POSITIVE_INFINITY, 3_600_001]) {
      const error = await refused(() => attachSandbox('f11p-a', config, { lockTimeoutMs: js(value) }), 'lockTimeoutMs');
      expect(error.accepted).toBe('an integer from 0 to 3600000 (milliseconds)');
      await refused(() => detachSandbox('f11p-a', { lockTimeoutMs: js(value) }), 'lockTimeoutMs');
    }
  });

  it('timeouts of the watch, the agent and QMP clients are checked before anything connects', async () => {
    await refused(() => watchSandbox('f11p-a', { debounceMs: js('soon') }), 'debounceMs');
    await refused(() => watchSandbox('f11p-a', { debounceMs: -1 }), 'debounceMs');
    await refused(() => AgentClient.connect('/tmp/f11p/agent', { deadlineMs: js('soon') }), 'deadlineMs');
    await refused(() => AgentClient.connect('/tmp/f11p/agent', { callTimeoutMs: -5 }), 'callTimeoutMs');
    await refused(() => QmpClient.connect('/tmp/f11p/qmp', { timeoutMs: Number.NaN }), 'timeoutMs');
    for (const value of ['soon', -1, Number.NaN, 3_600_001]) {
      const error = await refused(() => detachSandbox('f11p-a', { qmpWaitMs: js(value) }), 'qmpWaitMs');
      expect(error.accepted).toBe('a number from 0 to 3600000 (milliseconds)');
    }
    await refused(() => QmpClient.connect('/tmp/f11p/qmp', { commandTimeoutMs: 0 }), 'commandTimeoutMs');
    await refused(() => unplugNetworkDevice(js({}), 'net0', { timeoutMs: js('soon') }), 'timeoutMs');
    await refused(() => new QemuHotplugSessions('/tmp/f11p/qmp', { connectTimeoutMs: -1 }), 'connectTimeoutMs');
    await refused(() => new QemuNetworkHotplugTarget(js({}), { machine: js('q36') }), 'machine');
  });

  it('a call timeout that is not a number is refused instead of meaning no deadline', async () => {
    const silent = new Duplex({ read() {}, write: (_chunk, _encoding, done) => done() });
    const client = new AgentClient(silent);
    try {
      await refused(() => client.listRoutes({ timeoutMs: js('soon') }), 'timeoutMs');
      await refused(() => client.listRoutes(js({ timeout: 5 })), 'options key', /did you mean timeoutMs\?/);
    } finally {
      client.close();
    }
  });

  it('rate limits of a library NetworkConfig are checked as configuration.toml ones are', () => {
    expect(() => validateNetworkConfig({ ...config, rateLimit: { rxBitsPerSecond: js('fast') } })).toThrow(
      /invalid rateLimit\.rxBitsPerSecond: "fast"/,
    );
    expect(() => validateNetworkConfig({ ...config, rateLimit: { rxBitsPerSecond: 4 } })).toThrow(
      /at least 8 bits per second/,
    );
    expect(() => validateNetworkConfig({ ...config, vmmRateLimiter: { bandwidth: { maxRate: -1 } } })).toThrow(
      /vmmRateLimiter\.bandwidth\.maxRate/,
    );
  });
});

describe('unknown keys', () => {
  it('defineNetworkConfig refuses a misspelt key instead of using the default model', async () => {
    const error = await refused(
      () => defineNetworkConfig(js({ namespacePath: '/run/netns/x', modle: 'macvtap' })),
      'options key',
      /invalid options key: "modle" \(accepted: one of namespacePath, model, .* \(did you mean model\?\)\)/,
    );
    expect(error.hint).toBe('rename the key modle to model');
  });

  it('validateNetworkConfig and networkConfigFromKata refuse keys they do not know', async () => {
    await refused(() => validateNetworkConfig(js({ ...config, queue: 2 })), 'config key', /did you mean queues\?/);
    await refused(
      () => networkConfigFromKata({}, js({ namespacePath: '/run/netns/x', overides: { queues: 2 } })),
      'options key',
      /did you mean overrides\?/,
    );
    await refused(
      () => networkConfigFromKata({}, { namespacePath: '/run/netns/x', overrides: js({ vhostnet: 'off' }) }),
      'overrides key',
      /did you mean vhostNet\?/,
    );
  });

  it('sandbox functions, clients and hypervisor builders refuse keys they do not know', async () => {
    await refused(
      () => attachSandbox('f11p-a', config, js({ stateDir: '/tmp/f11p' })),
      'options key',
      /did you mean stateDirectory\?/,
    );
    await refused(() => collectGarbage(js({ dryrun: true })), 'options key', /did you mean dryRun\?/);
    // The one-directory stateDirectory (deprecated before any release) is gone: it is refused, not read
    // (the aborted signal stops a gc that took it before it reads anything).
    await refused(
      () => collectGarbage(js({ stateDirectory: '/tmp/f11p', signal: AbortSignal.abort() })),
      'options key',
      /stateDirectories/,
    );
    await refused(() => listRoutes('f11p-a', js({ onAgentDown: () => {} })), 'options key');
    await refused(() => configureGuest('f11p-a', js({ timeout: 5 })), 'options key', /did you mean timeoutMs\?/);
    await refused(() => AgentClient.connect('/tmp/f11p/agent', js({ deadline: 5 })), 'options key');
    await refused(() => networkHotplugCommands(device, js({ buss: 'pci.0' })), 'options key', /did you mean bus\?/);
    await refused(() => qemuNetworkArguments(device, js({ vhostnet: true })), 'options key', /vhostNet/);
    await refused(() => cloudHypervisorNetConfig(device, js({ queuesize: 256 })), 'options key', /queueSize/);
    await refused(() => createEndpoint(js({}), js('tcfilter')), 'options');
    await refused(() => createEndpoint(js({}), js({ index: 0, model: 'tcfilter', guest: 'eth0' })), 'options key');
  });

  it('names no key when none is close', () => {
    expect(closestName('frobnicate', ['model', 'queues'])).toBeUndefined();
    expect(closestName('moedl', ['model', 'queues'])).toBe('model');
    expect(closestName('qeues', ['model', 'queues'])).toBe('queues');
  });
});

describe('arguments that are not what a function takes', () => {
  it('scanNamespace refuses a number or nothing, naming the parameter', async () => {
    await refused(() => scanNamespace(js(7)), 'namespace', /a network namespace path or an open NetlinkHandle/);
    await refused(() => scanNamespace(js(undefined)), 'namespace');
    await refused(() => scanNamespace(''), 'namespace');
    await refused(() => scanNamespace('/proc/self/ns/net', js({ signal: 'soon' })), 'signal', /an AbortSignal/);
    await refused(() => scanNamespace('/proc/self/ns/net', js({ sigal: AbortSignal.abort() })), 'options key');
    // An aborted signal stops it before it opens anything: a path that would be refused is not looked at.
    const reason = new Error('enough');
    await expect(scanNamespace('/no/such/namespace', { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  it('AgentClient.connect refuses a missing address, NetlinkHandle.open and QmpClient.connect a number', async () => {
    await refused(() => AgentClient.connect(js(undefined)), 'address', /not given/);
    await refused(() => NetlinkHandle.open(js(5)), 'namespacePath', /invalid namespacePath: 5/);
    await refused(() => QmpClient.connect(js(5)), 'socketPath');
    await refused(() => new AgentClient(js('/tmp/f11p/agent')), 'stream');
  });
});

describe('values of the wrong type where a string or a scan belongs', () => {
  const namespacePath = '/run/netns/s15lb-not-there';

  it('defineNetworkConfig checks the model as validateNetworkConfig does: 5 was a TypeError, null meant the default', async () => {
    const five = await refused(() => defineNetworkConfig({ namespacePath, model: js(5) }), 'model');
    expect(five.message).toBe('invalid model: 5 (accepted: default, macvtap, tcfilter, none)');
    await refused(() => defineNetworkConfig({ namespacePath, model: js(null) }), 'model', /invalid model: null/);
    await refused(() => defineNetworkConfig({ namespacePath, model: js(['tcfilter']) }), 'model');
    await refused(
      () => validateNetworkConfig(js({ namespacePath, model: null, queues: 1, vhostNet: 'auto' })),
      'model',
    );
    expect(defineNetworkConfig({ namespacePath }).model).toBe('tcfilter');
    expect(defineNetworkConfig({ namespacePath, model: undefined }).model).toBe('tcfilter');
    expect(defineNetworkConfig({ namespacePath, model: js(' MacVTap ') }).model).toBe('macvtap');
    expect(defineNetworkConfig({ namespacePath, model: 'default' }).model).toBe('tcfilter');
  });

  it('parseInterworkingModel refuses a non-string model and a non-string field name', async () => {
    await refused(() => parseInterworkingModel(js(5)), 'internetworking_model', /invalid internetworking_model: 5/);
    await refused(() => parseInterworkingModel(js(undefined), 'model'), 'model', /not given/);
    await refused(() => parseInterworkingModel('tcfilter', js({})), 'field');
  });

  it('the *FromJson readers refuse options given as the field name, instead of "invalid [object Object].mtu"', async () => {
    const error = await refused(() => interfaceFromJson({ mtu: 'x' }, js({})), 'field', /such as "interface"/);
    expect(error.hint).toMatch(/an options object goes in the argument after it/);
    // A null-prototype object threw "Cannot convert object to primitive value".
    await refused(() => interfaceFromJson({ mtu: 'x' }, js(Object.create(null))), 'field');
    await refused(() => interfaceFromJson({}, js({ ignoredKeys: [] })), 'field');
    await refused(() => interfaceFromJson({}, 'iface', js({ ignoredKeys: 'x' })), 'options.ignoredKeys');
    await refused(() => interfaceFromJson({}, 'iface', js(null)), 'options');
    await refused(() => routeFromJson({}, js(5)), 'field');
    await refused(() => routesFromJson([], js([])), 'field');
    await refused(() => neighbourFromJson({}, js(true)), 'field');
    await refused(() => neighboursFromJson([], ''), 'field');
    const ignoredKeys: string[] = [];
    expect(interfaceFromJson({ name: 'eth0', colour: 1 }, 'iface', { ignoredKeys }).name).toBe('eth0');
    expect(ignoredKeys).toEqual(['iface.colour']);
  });

  it('parseKataConfiguration refuses text that is not a string ("toml.charCodeAt is not a function") and a non-string source', async () => {
    for (const text of [5, {}, Object.create(null), undefined, null]) {
      const error = await refused(() => parseKataConfiguration(js(text)), 'text', /configuration\.toml, as a string/);
      expect(error.code).toBe('VCNET_INVALID_INPUT');
    }
    await refused(() => parseKataConfiguration('a = ', js({})), 'source');
    expect(parseKataConfiguration('[runtime]\ninternetworking_model = "macvtap"\n', 'kata.toml').model).toBe('macvtap');
  });

  it('classifyScan refuses what is no scan (TypeErrors before), and options of the wrong type', async () => {
    await refused(() => classifyScan(js(undefined)), 'scan', /what scanNamespace returns/);
    await refused(() => classifyScan(js({})), 'scan');
    await refused(() => classifyScan(js({ interfaces: 'eth0' })), 'scan');
    await refused(() => classifyScan(js({ interfaces: [null] })), 'scan.interfaces[0]');
    await refused(
      () => classifyScan(js({ interfaces: [{ link: {}, addresses: [], routes: [], neighbours: [] }] })),
      'scan.interfaces[0]',
    );
    await refused(() => classifyScan(js({ interfaces: [] }), js({ named: ['eth0'] })), 'options.named');
    await refused(() => classifyScan(js({ interfaces: [] }), js('eth0')), 'options');
    expect(classifyScan(js({ interfaces: [] }))).toEqual([]);
  });

  it('hypervisorDeviceConfig refuses options that are no object and endpoints that are no list of endpoints', async () => {
    await refused(() => hypervisorDeviceConfig('qemu', [], js(null)), 'options');
    await refused(() => hypervisorDeviceConfig('qemu', [], js({ vhostNet: 'yes' })), 'options.vhostNet');
    await refused(() => hypervisorDeviceConfig('qemu', js('tap0')), 'endpoints');
    await refused(() => hypervisorDeviceConfig('qemu', js([{}])), 'endpoints');
    expect(hypervisorDeviceConfig('qemu', [])).toEqual([]);
  });
});
