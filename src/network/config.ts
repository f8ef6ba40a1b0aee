/**
 * NetworkConfig, and reading Kata's configuration.toml for the network keys vcnet honours:
 *   [runtime]      internetworking_model, disable_new_netns
 *   [hypervisor.X] rx_rate_limiter_max_rate, tx_rate_limiter_max_rate (bits/s, 0 = off),
 *                  disable_vhost_net, default_vcpus
 * vhost_user_store_path is only type-checked: in Kata it is for vhost-user block devices, and
 * vhost-user-net sockets are always looked for as /tmp/vhostuser_<ip>/vhu.sock.
 */
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { InvalidInputError, VcnetError } from '../errors.js';
import { refuseHostNamespace } from '../netns/host-namespace.js';
import { type InterworkingModel, parseInterworkingModel } from './interworking-model.js';
import { type RateLimit, validateRate } from './rate-limit.js';

export interface NetworkConfig {
  namespacePath: string;
  model: InterworkingModel;
  /** vcnet made the namespace, so it may delete it when the sandbox goes. */
  namespaceCreatedByVcnet: boolean;
  /** The hypervisor runs in the host namespace; only model `none` works then. */
  disableNewNetns: boolean;
  /** Directly Attachable Network config (Kata's DAN), recorded for callers that use it. */
  danConfigPath?: string;
  /** Where vhost-user-net sockets are looked for (tests and library callers); Kata's /tmp when unset. */
  vhostUserStorePath?: string;
  rateLimit?: RateLimit;
  /** Queues per NIC (vCPUs); 1 disables multi-queue. */
  queues: number;
  vhostNet: 'auto' | 'off';
  /** Pod links to attach even though they have no address (attach --interface); others like them are skipped. */
  namedInterfaces?: string[];
}

export class ConfigurationConflictError extends VcnetError {
  constructor(message: string, value: unknown, hint: string) {
    super('VCNET_CONFIG_CONFLICT', message, { value, hint });
  }
}

/** Kata's rule: a hypervisor outside the pod namespace cannot reach a tcfilter or macvtap pair. */
export function validateNetworkConfig(config: NetworkConfig): NetworkConfig {
  if (config.disableNewNetns && config.model !== 'none') {
    throw new ConfigurationConflictError(
      `disable_new_netns works only with internetworking_model "none" (got "${config.model}")`,
      config.model,
      'set internetworking_model = "none", or disable_new_netns = false',
    );
  }
  if (!Number.isInteger(config.queues) || config.queues < 1 || config.queues > 256) {
    throw new InvalidInputError('queues', config.queues, 'an integer from 1 to 256');
  }
  return config;
}

/**
 * Never the host: a sandbox's namespace must not be the one vcnet runs in. The one exception is
 * Kata's disable_new_netns, where the VMM shares the host's namespace by design and vcnet only
 * makes hot-added taps of its own there (no scan, nothing of the host's is touched).
 */
export function refuseHostNamespaceUnlessShared(config: NetworkConfig, operation = 'plumb a sandbox'): void {
  if (!config.disableNewNetns) refuseHostNamespace(config.namespacePath, operation);
}

export interface KataNetworkSettings {
  model?: InterworkingModel;
  disableNewNetns?: boolean;
  rateLimit?: RateLimit;
  vhostNet?: 'auto' | 'off';
  vcpus?: number;
  /** The [hypervisor.*] section the values came from. */
  hypervisor?: string;
}

function expectType(key: string, value: unknown, type: 'string' | 'boolean' | 'number'): void {
  if (value !== undefined && typeof value !== type) {
    throw new InvalidInputError(key, value, `a ${type}`);
  }
}

export function parseKataConfiguration(text: string, source = 'configuration.toml'): KataNetworkSettings {
  let document: Record<string, unknown>;
  try {
    document = parseToml(text) as Record<string, unknown>;
  } catch (error) {
    throw new VcnetError('VCNET_CONFIG_SYNTAX', `${source} is not valid TOML: ${(error as Error).message}`, {
      value: source,
      hint: 'fix the TOML syntax at the line the message names',
    });
  }
  const settings: KataNetworkSettings = {};
  const runtime = (document.runtime ?? {}) as Record<string, unknown>;
  expectType('runtime.internetworking_model', runtime.internetworking_model, 'string');
  if (typeof runtime.internetworking_model === 'string') {
    settings.model = parseInterworkingModel(runtime.internetworking_model, 'runtime.internetworking_model');
  }
  expectType('runtime.disable_new_netns', runtime.disable_new_netns, 'boolean');
  if (typeof runtime.disable_new_netns === 'boolean') settings.disableNewNetns = runtime.disable_new_netns;

  const hypervisors = (document.hypervisor ?? {}) as Record<string, Record<string, unknown>>;
  const [name, section] = Object.entries(hypervisors)[0] ?? [];
  if (name && section) {
    settings.hypervisor = name;
    const prefix = `hypervisor.${name}`;
    const rx = validateRate(`${prefix}.rx_rate_limiter_max_rate`, section.rx_rate_limiter_max_rate);
    const tx = validateRate(`${prefix}.tx_rate_limiter_max_rate`, section.tx_rate_limiter_max_rate);
    if (rx || tx)
      settings.rateLimit = { ...(rx ? { rxBitsPerSecond: rx } : {}), ...(tx ? { txBitsPerSecond: tx } : {}) };
    // Block storage only (Kata): it must not move the vhost-user-net socket search.
    expectType(`${prefix}.vhost_user_store_path`, section.vhost_user_store_path, 'string');
    expectType(`${prefix}.disable_vhost_net`, section.disable_vhost_net, 'boolean');
    if (typeof section.disable_vhost_net === 'boolean') settings.vhostNet = section.disable_vhost_net ? 'off' : 'auto';
    expectType(`${prefix}.default_vcpus`, section.default_vcpus, 'number');
    if (typeof section.default_vcpus === 'number') {
      if (!Number.isInteger(section.default_vcpus) || section.default_vcpus < 0) {
        throw new InvalidInputError(`${prefix}.default_vcpus`, section.default_vcpus, 'a whole number of vCPUs');
      }
      settings.vcpus = section.default_vcpus;
    }
  }
  return settings;
}

export function readKataConfiguration(path: string): KataNetworkSettings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new InvalidInputError('config', path, 'a readable Kata configuration.toml', (error as Error).message);
  }
  return parseKataConfiguration(text, path);
}
