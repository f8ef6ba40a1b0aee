/** Turns CLI flags into a validated NetworkConfig (flags win over configuration.toml). */
import { availableParallelism } from 'node:os';
import { InvalidInputError } from '../errors.js';
import { OWN_NAMESPACE_PATH } from '../netns/host-namespace.js';
import { openNamespace } from '../netns/namespace.js';
import { type NetworkConfig, readKataConfiguration, validateNetworkConfig } from '../network/config.js';
import { DEFAULT_INTERWORKING_MODEL, parseInterworkingModel } from '../network/interworking-model.js';

export interface NetworkFlags {
  netns?: string;
  /** qemu (default), clh or firecracker: decides queues, vhost-net and where rate limits apply. */
  hypervisor?: string;
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
  for (const warning of kata.warnings ?? []) process.stderr.write(`vcnet: warning: ${warning}\n`);
  // Kata's vhost_user_store_path is for vhost-user block devices; vhost-user-net sockets are always
  // looked for in /tmp/vhostuser_<ip>/vhu.sock, so the key must not move that search.
  const vcpus = kata.vcpus && kata.vcpus > 0 ? kata.vcpus : 1;
  // As Kata: only QEMU gets queues = vCPUs and vhost-net; Firecracker and Cloud Hypervisor get one
  // queue pair, no vhost-net, and rate limits applied by their own token buckets instead of tc.
  const builtInLimiter = flags.hypervisor === 'clh' || flags.hypervisor === 'firecracker';
  if (builtInLimiter && flags.vhostNet === 'auto') {
    throw new InvalidInputError('--vhost-net', flags.vhostNet, `off with --hypervisor ${flags.hypervisor}`);
  }
  if (flags.hypervisor === 'clh' && kata.rateLimit) {
    process.stderr.write(
      'vcnet: warning: rx/tx_rate_limiter_max_rate are not Cloud Hypervisor keys (Kata ignores them there): ' +
        'use net_rate_limiter_bw_max_rate in [hypervisor.clh]\n',
    );
  }
  const vmmRateLimiter =
    flags.hypervisor === 'clh'
      ? kata.cloudHypervisorRateLimiter
      : flags.hypervisor === 'firecracker'
        ? kata.rateLimit
        : undefined;
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
    queues: parseQueues(flags.queues, builtInLimiter ? 1 : Math.min(vcpus, availableParallelism())),
    vhostNet: builtInLimiter ? 'off' : ((flags.vhostNet as 'auto' | 'off' | undefined) ?? kata.vhostNet ?? 'auto'),
    ...(kata.rateLimit && !builtInLimiter ? { rateLimit: kata.rateLimit } : {}),
    ...(vmmRateLimiter ? { vmmRateLimiter } : {}),
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
