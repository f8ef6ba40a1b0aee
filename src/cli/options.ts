/** Turns CLI flags into a validated NetworkConfig (flags win over configuration.toml). */
import { availableParallelism } from 'node:os';
import { InvalidInputError } from '../errors.js';
import { OWN_NAMESPACE_PATH } from '../netns/host-namespace.js';
import { openNamespace } from '../netns/namespace.js';
import { type NetworkConfig, readKataConfiguration, validateNetworkConfig } from '../network/config.js';
import { DEFAULT_INTERWORKING_MODEL, parseInterworkingModel } from '../network/interworking-model.js';

export interface NetworkFlags {
  netns?: string;
  model?: string;
  config?: string;
  queues?: string;
  vhostNet?: string;
  disableNewNetns?: boolean;
  /** attach --interface (repeatable): links to attach even without an address. */
  interface?: string[];
}

/** Commander collector for an option given several times. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function parseQueues(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 256)
    throw new InvalidInputError('--queues', text, 'an integer from 1 to 256');
  return value;
}

export function networkConfigFromFlags(flags: NetworkFlags): NetworkConfig {
  const kata = flags.config ? readKataConfiguration(flags.config) : {};
  const model = flags.model
    ? parseInterworkingModel(flags.model, '--model')
    : (kata.model ?? DEFAULT_INTERWORKING_MODEL);
  if (flags.vhostNet !== undefined && flags.vhostNet !== 'auto' && flags.vhostNet !== 'off') {
    throw new InvalidInputError('--vhost-net', flags.vhostNet, 'auto, off');
  }
  const vcpus = kata.vcpus && kata.vcpus > 0 ? kata.vcpus : 1;
  const disableNewNetns = flags.disableNewNetns ?? kata.disableNewNetns ?? false;
  // With disable_new_netns the VMM runs in vcnet's own (the host's) namespace, as in Kata.
  const netns = flags.netns ?? (disableNewNetns ? OWN_NAMESPACE_PATH : undefined);
  if (netns === undefined) {
    throw new InvalidInputError('--netns', netns, 'the pod namespace path (only --disable-new-netns goes without it)');
  }
  const config: NetworkConfig = {
    namespacePath: openNamespace(netns),
    model,
    namespaceCreatedByVcnet: false,
    disableNewNetns,
    queues: parseQueues(flags.queues, Math.min(vcpus, availableParallelism())),
    vhostNet: (flags.vhostNet as 'auto' | 'off' | undefined) ?? kata.vhostNet ?? 'auto',
    ...(kata.rateLimit ? { rateLimit: kata.rateLimit } : {}),
    ...(flags.interface && flags.interface.length > 0 ? { namedInterfaces: flags.interface } : {}),
  };
  return validateNetworkConfig(config);
}

/** --lock-timeout <seconds>: how long to wait for another vcnet command on the same sandbox. */
export function parseLockTimeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (text.trim() === '' || !Number.isFinite(seconds) || seconds < 0 || seconds > 3600)
    throw new InvalidInputError('--lock-timeout', text, 'seconds from 0 to 3600 (fractions allowed)');
  return Math.round(seconds * 1000);
}

export const LOCK_TIMEOUT_OPTION = [
  '--lock-timeout <seconds>',
  'wait this long for another vcnet command on the same sandbox (default $VCNET_LOCK_TIMEOUT or 30)',
] as const;
