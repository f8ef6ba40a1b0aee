/** Turns CLI flags into a validated NetworkConfig (flags win over configuration.toml). */
import { availableParallelism } from 'node:os';
import { InvalidInputError } from '../errors.js';
import { OWN_NAMESPACE_PATH } from '../netns/host-namespace.js';
import { openNamespace } from '../netns/namespace.js';
import { type NetworkConfig, readKataConfiguration, validateNetworkConfig } from '../network/config.js';
import { DEFAULT_INTERWORKING_MODEL, parseInterworkingModel } from '../network/interworking-model.js';
import { HYPERVISORS, type HypervisorKind, parseHypervisor } from './hypervisor-config.js';

export interface NetworkFlags {
  netns?: string;
  /** qemu, clh or firecracker (default: the configuration's [hypervisor.*], else qemu): decides queues, vhost-net and where rate limits apply. */
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

/**
 * The hypervisor: --hypervisor, else the configuration's [hypervisor.*] section (Kata runs the one its
 * configuration names), else QEMU.
 */
function hypervisorOf(flag: string | undefined, section: string | undefined, configPath?: string): HypervisorKind {
  const named =
    section && (HYPERVISORS as readonly string[]).includes(section) ? (section as HypervisorKind) : undefined;
  if (flag !== undefined) {
    const kind = parseHypervisor(flag);
    if (named && named !== kind) {
      warn(
        `--hypervisor ${kind} is used, not [hypervisor.${section}] of ${configPath}: its keys are read as ${kind}'s`,
      );
    }
    return kind;
  }
  if (section && !named) {
    warn(
      `[hypervisor.${section}] of ${configPath}: vcnet knows qemu, clh and firecracker; going on as qemu (--hypervisor chooses)`,
    );
  }
  return named ?? 'qemu';
}

function warn(message: string): void {
  process.stderr.write(`vcnet: warning: ${message}\n`);
}

export function networkConfigFromFlags(flags: NetworkFlags): { config: NetworkConfig; hypervisor: HypervisorKind } {
  const kata = flags.config ? readKataConfiguration(flags.config) : {};
  const hypervisor = hypervisorOf(flags.hypervisor, kata.hypervisor, flags.config);
  const model = flags.model
    ? parseInterworkingModel(flags.model, '--model')
    : (kata.model ?? DEFAULT_INTERWORKING_MODEL);
  if (flags.vhostNet !== undefined && flags.vhostNet !== 'auto' && flags.vhostNet !== 'off') {
    throw new InvalidInputError('--vhost-net', flags.vhostNet, 'auto, off');
  }
  for (const warning of kata.warnings ?? []) warn(warning);
  // Kata's vhost_user_store_path is for vhost-user block devices; vhost-user-net sockets are always
  // looked for in /tmp/vhostuser_<ip>/vhu.sock, so the key must not move that search.
  const vcpus = kata.vcpus && kata.vcpus > 0 ? kata.vcpus : 1;
  // As Kata: only QEMU gets queues = vCPUs and vhost-net; Firecracker and Cloud Hypervisor get one
  // queue pair, no vhost-net, and rate limits applied by their own token buckets instead of tc.
  const builtInLimiter = hypervisor === 'clh' || hypervisor === 'firecracker';
  if (hypervisor === 'firecracker' && model === 'macvtap') {
    throw new InvalidInputError(
      flags.model ? '--model' : 'runtime.internetworking_model',
      'macvtap',
      'tcfilter or none with --hypervisor firecracker (it opens its tap by name, which a macvtap cannot be)',
    );
  }
  if (builtInLimiter && flags.vhostNet === 'auto') {
    throw new InvalidInputError('--vhost-net', flags.vhostNet, `off with --hypervisor ${hypervisor}`);
  }
  if (hypervisor === 'clh' && kata.rateLimit) {
    warn(
      'rx/tx_rate_limiter_max_rate are not Cloud Hypervisor keys (Kata ignores them there): ' +
        'use net_rate_limiter_bw_max_rate in [hypervisor.clh]',
    );
  }
  const vmmRateLimiter =
    hypervisor === 'clh' ? kata.cloudHypervisorRateLimiter : hypervisor === 'firecracker' ? kata.rateLimit : undefined;
  const disableNewNetns = flags.disableNewNetns ?? kata.disableNewNetns ?? false;
  // With disable_new_netns the VMM runs in vcnet's own (the host's) namespace, as in Kata.
  const netns = flags.netns ?? (disableNewNetns ? OWN_NAMESPACE_PATH : undefined);
  if (netns === undefined) {
    throw new InvalidInputError('--netns', netns, 'the pod namespace path (only --disable-new-netns goes without it)');
  }
  const queues = parseQueues(flags.queues, builtInLimiter ? 1 : Math.min(vcpus, availableParallelism()));
  // Cloud Hypervisor refuses a NIC with more queue pairs than the VM has boot vCPUs (num_queues / 2 >
  // boot_vcpus): known here only from the configuration's default_vcpus.
  if (hypervisor === 'clh' && kata.vcpus !== undefined && queues > vcpus) {
    throw new InvalidInputError(
      '--queues',
      flags.queues,
      `at most ${vcpus} with --hypervisor clh and default_vcpus = ${vcpus} in ${flags.config}: Cloud Hypervisor refuses more queue pairs per NIC than the VM's boot vCPUs`,
    );
  }
  const config: NetworkConfig = {
    namespacePath: openNamespace(netns, '--netns'),
    model,
    namespaceCreatedByVcnet: false,
    disableNewNetns,
    queues,
    vhostNet: builtInLimiter ? 'off' : ((flags.vhostNet as 'auto' | 'off' | undefined) ?? kata.vhostNet ?? 'auto'),
    ...(kata.rateLimit && !builtInLimiter ? { rateLimit: kata.rateLimit } : {}),
    ...(vmmRateLimiter ? { vmmRateLimiter } : {}),
    ...(flags.interface && flags.interface.length > 0 ? { namedInterfaces: flags.interface } : {}),
  };
  return { config: validateNetworkConfig(config), hypervisor };
}

/** The NetworkConfig fields the library names in its errors, and the flags a CLI user typed for them. */
const FLAG_OF_FIELD: Record<string, string> = { namedInterfaces: '--interface', agentSocket: '--agent' };

/** Runs `work`; an InvalidInputError naming a NetworkConfig field is reported under the flag instead. */
export async function inFlagTerms<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const flag = error instanceof InvalidInputError ? FLAG_OF_FIELD[error.field] : undefined;
    if (flag === undefined) throw error;
    throw (error as InvalidInputError).underField(flag);
  }
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
