/**
 * NetworkConfig, and reading Kata's configuration.toml for the network keys vcnet honours:
 *   [runtime]      internetworking_model, disable_new_netns, dan_conf (only to refuse a sandbox
 *                  Kata would configure from a DAN file)
 *   [hypervisor.X] rx_rate_limiter_max_rate, tx_rate_limiter_max_rate (bits/s, 0 = off),
 *                  disable_vhost_net, default_vcpus
 *   [hypervisor.clh] net_rate_limiter_{bw,ops}_{max_rate,one_time_burst} (Cloud Hypervisor's own limiter)
 * vhost_user_store_path is only type-checked: in Kata it is for vhost-user block devices, and
 * vhost-user-net sockets are always looked for as /tmp/vhostuser_<ip>/vhu.sock.
 *
 * Firecracker and Cloud Hypervisor limit NIC rates with their own token buckets, as Kata uses them:
 * for those hypervisors the limits go to the VMM (vmmRateLimiter) and no tc qdisc is built.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import {
  booleanOption,
  editDistance,
  functionOption,
  labelArgument,
  optionsArgument,
  refuseUnknownKeys,
  stringListOption,
  stringOption,
} from '../arguments.js';
import {
  describeGivenValue,
  type FieldIssue,
  InvalidFieldsError,
  InvalidInputError,
  namespaceNameGivenAsPath,
  unreadableFileHint,
  VcnetError,
  WrittenAs,
} from '../errors.js';
import { goFoldedKey } from '../go-key-fold.js';
import { OWN_NAMESPACE_PATH, refuseHostNamespace } from '../netns/host-namespace.js';
import { PARSE_OPTIONS } from '../parse-options.js';
import {
  DEFAULT_INTERWORKING_MODEL,
  INTERWORKING_MODELS,
  type InterworkingModel,
  parseInterworkingModel,
} from './interworking-model.js';
import type { RateLimit } from './plan/types.js';
import { MIN_BITS_PER_SECOND, validateBitRate, validateRate } from './rate-limit.js';
import { networkConfigSchema } from './state/network-content-schema.js';
import { checkTapId } from './tap-owner.js';

/** How a sandbox's network is made: its namespace, internetworking model, queues, rate limits and taps' owner. */
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
  /** Limits the VMM applies itself (Firecracker, Cloud Hypervisor) instead of tc. */
  vmmRateLimiter?: VmmRateLimiter;
  /**
   * Cloud Hypervisor: each NIC behind the VM's IOMMU (`iommu` in its NetConfig), for a VM booted with one
   * (Kata: the enable_iommu annotation; its Go runtime does not read [hypervisor.clh] enable_iommu).
   */
  nicIommu?: boolean;
  /** Queues per NIC (vCPUs); 1 disables multi-queue. */
  queues: number;
  vhostNet: 'auto' | 'off';
  /** Pod links to attach even though they have no address (attach --interface); others like them are skipped. */
  namedInterfaces?: string[];
  /**
   * The uid and gid every tap vcnet makes is given (TUNSETOWNER, TUNSETGROUP): a VMM without
   * CAP_NET_ADMIN can open a tap by name only as its owner or in its group. Default: this process's
   * euid and egid (0 for a root runtime, as Kata's owner and group 0). See tap-owner.ts.
   */
  tapOwner?: number;
  tapGroup?: number;
  /**
   * Kata's [hypervisor.X] cold_plug_vfio (the Go runtime, QEMU and Cloud Hypervisor; set from a Kata
   * configuration only). "no-port", Kata's default, refuses a physical NIC before anything is unbound,
   * as Kata's addSingleEndpoint refuses it: its VFIO device could not reach the guest.
   */
  coldPlugVfio?: string;
}

/** One of Cloud Hypervisor's limiter buckets as configured: a rate per second and an optional first burst. */
export interface VmmBucketSetting {
  maxRate: number;
  oneTimeBurst?: number;
}

/**
 * A VMM's built-in NIC limiter. Firecracker: rx/tx in bits/s (rx/tx_rate_limiter_max_rate). Cloud
 * Hypervisor: one limiter per NIC, bandwidth in bits/s and operations per second (net_rate_limiter_*).
 */
export interface VmmRateLimiter {
  rxBitsPerSecond?: number;
  txBitsPerSecond?: number;
  bandwidth?: VmmBucketSetting;
  operations?: VmmBucketSetting;
}

/**
 * Settings that cannot go together (`VCNET_CONFIG_CONFLICT`); `fields` lists the `NetworkConfig` fields in
 * conflict (empty when the conflict is between links, such as two NICs with one MAC).
 */
export class ConfigurationConflictError extends VcnetError {
  static override readonly errorName: string = 'ConfigurationConflictError';
  constructor(
    message: string,
    value: unknown,
    hint: string,
    /** The NetworkConfig fields in conflict, so a caller can name them as its user set them (CLI flags). */
    readonly fields: readonly string[] = [],
  ) {
    super('VCNET_CONFIG_CONFLICT', message, { value, hint });
  }
}

/** What a library caller must give: the namespace; the rest has the CLI's defaults. */
export type NetworkConfigOptions = Pick<NetworkConfig, 'namespacePath'> &
  Partial<Omit<NetworkConfig, 'model'>> & { model?: NetworkConfig['model'] | 'default' };

/**
 * A NetworkConfig with the CLI's defaults (model tcfilter, one queue, vhost-net where present, the
 * namespace not made by vcnet), checked as attach checks it.
 */
export function defineNetworkConfig(options: NetworkConfigOptions): NetworkConfig {
  requireConfigObject(options, 'options');
  refuseUnknownKeys(options, 'options', NETWORK_CONFIG_KEYS);
  return validateNetworkConfig({
    namespaceCreatedByVcnet: false,
    disableNewNetns: false,
    queues: 1,
    vhostNet: 'auto',
    ...options,
    // Resolved, or refused with every other bad field, by validateNetworkConfig: one check of the model.
    model: (options.model === undefined ? 'default' : options.model) as InterworkingModel,
  });
}

/** A JavaScript caller may pass anything: refuse a non-object before reading its fields. */
function requireConfigObject(given: unknown, field: string): void {
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw new InvalidInputError(field, given, 'an object with at least namespacePath (see NetworkConfig)');
  }
}

/**
 * Checks a NetworkConfig a library caller built (the CLI builds one from flags): each field's type and
 * range, the model by name (`default` and any case read as the CLI reads them), and Kata's rule that a
 * hypervisor outside the pod namespace cannot reach a tcfilter or macvtap pair. Every field the record
 * would refuse is named in one InvalidFieldsError. Returns the config with its model resolved and
 * namespaceCreatedByVcnet and disableNewNetns false when left out (as the CLI fills them); callers use
 * the returned one.
 */
export function validateNetworkConfig(given: NetworkConfig): NetworkConfig {
  requireConfigObject(given, 'config');
  refuseUnknownKeys(given, 'config', NETWORK_CONFIG_KEYS);
  const config = withRecordDefaults(given);
  refuseWhatTheRecordRefuses(given, config);
  if (config.disableNewNetns && config.model !== 'none') {
    throw new ConfigurationConflictError(
      `disable_new_netns works only with internetworking_model "none" (got "${config.model}")`,
      config.model,
      'set internetworking_model = "none", or disable_new_netns = false',
      ['disableNewNetns', 'model'],
    );
  }
  booleanOption(config.nicIommu, 'nicIommu');
  stringOption(config.danConfigPath, 'danConfigPath', 'the path of a DAN configuration file');
  stringOption(config.vhostUserStorePath, 'vhostUserStorePath', 'a directory path');
  stringListOption(config.namedInterfaces, 'namedInterfaces', 'pod link names', 'the name of a pod link');
  checkTapId(config.tapOwner, 'tapOwner');
  checkTapId(config.tapGroup, 'tapGroup');
  stringOption(config.coldPlugVfio, 'coldPlugVfio', 'a cold_plug_vfio value, such as no-port or root-port');
  if (config.rateLimit !== undefined) {
    const rateLimit = optionsArgument(config.rateLimit, 'rateLimit', ['rxBitsPerSecond', 'txBitsPerSecond']);
    validateBitRate('rateLimit.rxBitsPerSecond', rateLimit.rxBitsPerSecond);
    validateBitRate('rateLimit.txBitsPerSecond', rateLimit.txBitsPerSecond);
  }
  if (config.vmmRateLimiter !== undefined) checkVmmRateLimiter(config.vmmRateLimiter);
  return config;
}

/**
 * The model resolved by name, and the two flags a JavaScript caller may leave out given the CLI's
 * defaults (the record needs them: detach and gc refuse a record without them). The caller's object
 * itself when nothing changes.
 */
function withRecordDefaults(given: NetworkConfig): NetworkConfig {
  let model: unknown = given.model;
  if (typeof model === 'string') {
    try {
      model = parseInterworkingModel(model, 'model');
    } catch {
      // left as given: the schema check names it with the other refused fields
    }
  }
  const defaults = {
    ...(given.namespaceCreatedByVcnet === undefined ? { namespaceCreatedByVcnet: false } : {}),
    ...(given.disableNewNetns === undefined ? { disableNewNetns: false } : {}),
  };
  if (model === given.model && Object.keys(defaults).length === 0) return given;
  return { ...given, ...defaults, model: model as InterworkingModel };
}

/** What each record field accepts, as a caller of the library reads it (the schema says it for the file). */
const ACCEPTED_CONFIG: Record<string, string> = {
  namespacePath: 'the absolute path of the pod network namespace',
  model: INTERWORKING_MODELS.join(', '),
};

/**
 * Every field the record's schema would refuse, named at once, before anything is made: an attach
 * must never write a record its own detach and gc cannot read (and so strand its plumbing).
 */
function refuseWhatTheRecordRefuses(given: NetworkConfig, config: NetworkConfig): void {
  const result = networkConfigSchema.safeParse(config, PARSE_OPTIONS);
  if (result.success) return;
  const issues: FieldIssue[] = result.error.issues.map((issue) => {
    const field = issue.path.map(String).join('.') || 'config';
    const value = issue.path.length === 1 ? (given as unknown as Record<string, unknown>)[field] : undefined;
    return { field, value, accepted: ACCEPTED_CONFIG[field] ?? issue.message };
  });
  const pathIssue = issues.find((issue) => issue.field === 'namespacePath');
  const nameMeant = typeof pathIssue?.value === 'string' ? namespaceNameGivenAsPath(pathIssue.value) : undefined;
  throw new InvalidFieldsError(issues, nameMeant);
}

/** Every key a NetworkConfig may have: any other is a misspelling that would quietly mean the default. */
const NETWORK_CONFIG_KEYS: readonly (keyof NetworkConfig)[] = [
  'namespacePath',
  'model',
  'namespaceCreatedByVcnet',
  'disableNewNetns',
  'danConfigPath',
  'vhostUserStorePath',
  'rateLimit',
  'vmmRateLimiter',
  'nicIommu',
  'queues',
  'vhostNet',
  'namedInterfaces',
  'tapOwner',
  'tapGroup',
  'coldPlugVfio',
];

function checkVmmRateLimiter(given: VmmRateLimiter): void {
  const limiter = optionsArgument(given, 'vmmRateLimiter', [
    'rxBitsPerSecond',
    'txBitsPerSecond',
    'bandwidth',
    'operations',
  ]);
  validateRate('vmmRateLimiter.rxBitsPerSecond', limiter.rxBitsPerSecond);
  validateRate('vmmRateLimiter.txBitsPerSecond', limiter.txBitsPerSecond);
  for (const kind of ['bandwidth', 'operations'] as const) {
    if (limiter[kind] === undefined) continue;
    const bucket = optionsArgument(limiter[kind], `vmmRateLimiter.${kind}`, ['maxRate', 'oneTimeBurst']);
    validateRate(`vmmRateLimiter.${kind}.maxRate`, bucket.maxRate);
    validateRate(`vmmRateLimiter.${kind}.oneTimeBurst`, bucket.oneTimeBurst);
  }
}

/**
 * Never the host: a sandbox's namespace must not be the one vcnet runs in. The one exception is
 * Kata's disable_new_netns, where the VMM shares the host's namespace by design and vcnet only
 * makes hot-added taps of its own there (no scan, nothing of the host's is touched).
 */
export function refuseHostNamespaceUnlessShared(config: NetworkConfig, operation = 'plumb a sandbox'): void {
  if (!config.disableNewNetns) refuseHostNamespace(config.namespacePath, operation);
}

/**
 * The network settings of a Kata `configuration.toml`, from `readKataConfiguration` or
 * `parseKataConfiguration`. Not a `NetworkConfig`: turn them into one with `networkConfigFromKata`.
 */
export interface KataNetworkSettings {
  model?: InterworkingModel;
  disableNewNetns?: boolean;
  rateLimit?: RateLimit;
  vhostNet?: 'auto' | 'off';
  vcpus?: number;
  /** [runtime] dan_conf: where Kata looks for a sandbox's DAN file, `<dan_conf>/<sandbox id>.json`. */
  danConfigDirectory?: string;
  /** [hypervisor.clh] net_rate_limiter_* (Cloud Hypervisor's own limiter). */
  cloudHypervisorRateLimiter?: Pick<VmmRateLimiter, 'bandwidth' | 'operations'>;
  /**
   * Cloud Hypervisor: each NIC behind the VM's IOMMU (clh.go addNet, SetIommu), as Kata does when the
   * sandbox's io.katacontainers.config.hypervisor.enable_iommu annotation turns the IOMMU on. Never set
   * from a file: Kata's Go runtime does not read [hypervisor.clh] enable_iommu.
   */
  cloudHypervisorIommu?: boolean;
  /**
   * The file is runtime-rs's (its [runtime] name is set; runtime-rs runs no file without it): its NICs
   * take networkQueues, its cold_plug_vfio is not checked, and its rate keys build nothing in runtime-rs.
   * Absent for a Go runtime file and when no file was read.
   */
  runtimeRs?: boolean;
  /**
   * runtime-rs's queue pairs per NIC ([hypervisor.X] network_queues, 1 when absent): set only for a
   * runtime-rs file (runtimeRs), whose queues do not follow default_vcpus.
   */
  networkQueues?: number;
  /**
   * [hypervisor.X] cold_plug_vfio as Kata's Go runtime reads it: as written, "no-port" (its default)
   * when absent or empty. Absent for a runtime-rs file, which does not check it, and when no file was
   * read (`{}`): then nothing is checked.
   */
  coldPlugVfio?: string;
  /** The [hypervisor.*] section the values came from. */
  hypervisor?: string;
  /**
   * The configuration file the settings were read from (readKataConfiguration's path): what
   * networkConfigFromKata's refusal of their [hypervisor.*] section names. Absent for parsed text.
   */
  file?: string;
  /** Settings read but ignored, for the caller to show. */
  warnings?: string[];
}

/** A net_rate_limiter_<kind>_* pair; a burst without a rate is ignored, as Kata ignores it (with a warning). */
function cloudHypervisorBucket(
  section: Record<string, unknown>,
  prefix: string,
  kind: 'bw' | 'ops',
  warnings: string[],
): VmmBucketSetting | undefined {
  const rateKey = `net_rate_limiter_${kind}_max_rate`;
  const burstKey = `net_rate_limiter_${kind}_one_time_burst`;
  const maxRate = validateRate(`${prefix}.${rateKey}`, tomlBitRate(`${prefix}.${rateKey}`, section[rateKey]));
  const burst = validateRate(`${prefix}.${burstKey}`, tomlBitRate(`${prefix}.${burstKey}`, section[burstKey]));
  if (!maxRate) {
    if (burst) warnings.push(`${prefix}.${burstKey} is ignored without ${rateKey}`);
    return undefined;
  }
  return { maxRate, ...(burst ? { oneTimeBurst: burst } : {}) };
}

/** Kata's cold_plug_vfio that keeps physical NICs out (PCIePort NoPort), and its default. */
const COLD_PLUG_DISABLED = 'no-port';

/** The ports Kata's Go runtime takes for cold_plug_vfio and hot_plug_vfio (config.PCIePort), written exactly so. */
const PCIE_PORTS = [COLD_PLUG_DISABLED, 'bridge-port', 'root-port', 'switch-port'] as const;
/** Cloud Hypervisor's: it has no bridges or switches to plug into. */
const CLH_PCIE_PORTS = [COLD_PLUG_DISABLED, 'root-port'] as const;

/**
 * Refuses the cold_plug_vfio and hot_plug_vfio values Kata's Go runtime refuses at load (katautils
 * checkPCIeConfig, QEMU and Cloud Hypervisor): both set, or, on a q35 or virt machine (q35 when
 * machine_type is unset, as Cloud Hypervisor's always is), a port Kata does not have. Taken as written,
 * such a value is not "no-port", so the physical NIC would be unbound and passed through where Kata runs
 * nothing. On any other machine Kata checks no value, and vcnet takes it as written too.
 */
function refuseWhatCheckPCIeConfigRefuses(
  section: Record<string, unknown>,
  prefix: string,
  hypervisor: 'qemu' | 'clh',
): void {
  const portOf = (key: string) =>
    typeof section[key] === 'string' && section[key] !== '' ? (section[key] as string) : COLD_PLUG_DISABLED;
  const coldPlug = portOf('cold_plug_vfio');
  const hotPlug = portOf('hot_plug_vfio');
  if (coldPlug !== COLD_PLUG_DISABLED && hotPlug !== COLD_PLUG_DISABLED) {
    throw new InvalidInputError(
      `${prefix}.cold_plug_vfio`,
      coldPlug,
      `"${COLD_PLUG_DISABLED}" while hot_plug_vfio is "${hotPlug}"`,
      `Kata refuses the configuration when cold_plug_vfio and hot_plug_vfio both name a port ("only one of them can be set"): set one of them to "${COLD_PLUG_DISABLED}"`,
    );
  }
  const machineType =
    typeof section.machine_type === 'string' && section.machine_type !== '' ? section.machine_type : 'q35';
  if (machineType !== 'q35' && machineType !== 'virt') return;
  const accepted = hypervisor === 'clh' ? CLH_PCIE_PORTS : PCIE_PORTS;
  for (const [key, value] of [
    ['cold_plug_vfio', coldPlug],
    ['hot_plug_vfio', hotPlug],
  ] as const) {
    if ((accepted as readonly string[]).includes(value)) continue;
    throw new InvalidInputError(
      `${prefix}.${key}`,
      value,
      `${accepted.join(', ')}, written exactly so`,
      `Kata's Go runtime refuses the configuration on ${hypervisor === 'clh' ? 'Cloud Hypervisor' : `a ${machineType} machine`} ("invalid vfio_port=${value} setting"); "${COLD_PLUG_DISABLED}" keeps physical NICs out of the VM, another port passes them through with VFIO`,
    );
  }
}

/**
 * Refuses, before anything is made, the physical NICs an attach would pass through when the Kata
 * configuration has cold_plug_vfio = "no-port" (network_linux.go addSingleEndpoint): Kata fails early
 * so that the NIC is not unbound from its driver for a VFIO device the VM could not take.
 */
export function refuseDisabledColdPlug(
  config: Pick<NetworkConfig, 'coldPlugVfio'>,
  physicalLinks: readonly string[],
): void {
  if (config.coldPlugVfio !== COLD_PLUG_DISABLED || physicalLinks.length === 0) return;
  throw new ConfigurationConflictError(
    `physical NIC ${physicalLinks.join(', ')} cannot be passed through: the Kata configuration has cold_plug_vfio = "${COLD_PLUG_DISABLED}" (its default), which keeps VFIO devices out of the VM, so Kata refuses the NIC before unbinding it`,
    physicalLinks.join(', '),
    'set cold_plug_vfio = "root-port" (or "switch-port", "bridge-port") in the [hypervisor.*] section to pass the NIC through, or leave it out of the pod namespace',
    ['coldPlugVfio'],
  );
}

/**
 * Refuses a TOML value of another type, shown as the file wrote it; nan and inf are not "a number".
 * `value` is as tomlShown gives it already (shown again, an integer would read as a float: 1 as 1.0).
 */
function expectType(key: string, value: unknown, type: 'string' | 'boolean' | 'number'): void {
  if (value === undefined) return;
  if (typeof value !== type || (type === 'number' && !Number.isFinite(value))) {
    throw new InvalidInputError(key, value, `a ${type}`);
  }
}

/** A TOML value vcnet reads as a table ([runtime], [hypervisor], [hypervisor.qemu]); undefined when absent. */
function tomlTable(value: unknown, field: string): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) {
    // As Kata's decoder: an array of tables ([[runtime]]), a scalar or a string is not the table it reads.
    throw new InvalidInputError(field, tomlShown(value), `a table ([${field}])`);
  }
  return value as Record<string, unknown>;
}

/**
 * A TOML float, kept apart from an integer: Kata decodes a float into none of its integer fields.
 * Shown as TOML writes a float (1e6 as 1000000.0, as serde's refusal shows it too).
 */
class TomlFloat extends WrittenAs {
  constructor(readonly number: number) {
    super(floatWritten(number));
  }
}

function floatWritten(number: number): string {
  if (Number.isNaN(number)) return 'nan';
  if (!Number.isFinite(number)) return number > 0 ? 'inf' : '-inf';
  // String(-0) is "0": the sign the file wrote is kept.
  const text = Object.is(number, -0) ? '-0' : String(number);
  return /^-?\d+$/.test(text) ? `${text}.0` : text;
}

/**
 * A TOML value (parsed with every integer a bigint, every float a number) as vcnet reads it: an
 * integer as a number, or as written when a number would not hold it exactly (beyond 2^53); a float
 * as a TomlFloat; arrays and tables likewise, element by element.
 */
function tomlShown(value: unknown): unknown {
  if (value instanceof WrittenAs) return value;
  if (typeof value === 'bigint') {
    return Number.isSafeInteger(Number(value)) ? Number(value) : new WrittenAs(String(value));
  }
  if (typeof value === 'number') return new TomlFloat(value);
  if (Array.isArray(value)) return value.map(tomlShown);
  if (isTomlTable(value)) return tomlShownValues(value);
  return value;
}

/** TOML's integers are 64-bit signed; both of Kata's decoders refuse the whole file on one beyond. */
const TOML_INTEGER_RANGE = [-(2n ** 63n), 2n ** 63n - 1n] as const;

/**
 * Refuses an integer beyond 64 bits anywhere in a parsed file (`path` is where `value` sits), as
 * Kata does whatever the key (the Go runtime: BurntSushi/toml "... is out of range for int64";
 * runtime-rs: its toml::Value holds an i64, "u64 value was too large"). smol-toml keeps it.
 */
function refuseBeyondTomlIntegers(value: unknown, path: string): void {
  const [lowest, highest] = TOML_INTEGER_RANGE;
  if (typeof value === 'bigint' && (value < lowest || value > highest)) {
    throw new InvalidInputError(
      path,
      new WrittenAs(String(value)),
      `an integer from ${lowest} to ${highest}`,
      'TOML\'s integers are 64-bit, and Kata refuses the whole file on one beyond (the Go runtime: "out of range for int64"; runtime-rs: "u64 value was too large"), whether or not vcnet reads the key',
    );
  }
  if (Array.isArray(value)) {
    for (const [index, element] of value.entries()) refuseBeyondTomlIntegers(element, `${path}[${index}]`);
  } else if (isTomlTable(value)) {
    for (const [key, inner] of Object.entries(value))
      refuseBeyondTomlIntegers(inner, path === '' ? key : `${path}.${key}`);
  }
}

/**
 * An integer key's value, refused when the file wrote a float: Kata's decoders take no float into an
 * integer field, not even 1.0 or 1e6 (the Go runtime's BurntSushi/toml: "incompatible types: TOML
 * value has type float64; destination has type integer"; runtime-rs's serde: "invalid type: floating
 * point"), so Kata runs nothing with the file.
 */
function tomlInteger(field: string, value: unknown): unknown {
  if (!(value instanceof TomlFloat)) return value;
  const meant = Number.isSafeInteger(value.number) ? `; write ${value.number}` : '';
  throw new InvalidInputError(
    field,
    value,
    'an integer, written without a decimal point or an exponent',
    `Kata refuses a float in an integer key, even a whole one such as 1.0 or 1e6 (the Go runtime: "incompatible types: TOML value has type float64; destination has type integer"; runtime-rs: "invalid type: floating point"), and runs nothing${meant}`,
  );
}

/**
 * A bit rate key's value (an integer key in both runtimes): a float refused (tomlInteger), and an
 * integer beyond 2^53 - 1, which Kata's uint64 takes but a JavaScript number does not hold exactly.
 */
function tomlBitRate(field: string, value: unknown): unknown {
  const integer = tomlInteger(field, value);
  if (integer instanceof WrittenAs && /^\d+$/.test(integer.text)) {
    throw new InvalidInputError(
      field,
      integer,
      `a whole number of bits per second from 0 (no limit) to ${Number.MAX_SAFE_INTEGER}`,
      `Kata takes up to ${TOML_INTEGER_RANGE[1]}, but vcnet holds a rate exactly only up to 2^53 - 1 (9 Pbit/s, more than any NIC carries): set 0 for no limit`,
    );
  }
  return integer;
}

/** A table's values, each as tomlShown gives it (a key vcnet reads then refuses them naming the key). */
function tomlShownValues(section: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(section).map(([key, value]) => [key, tomlShown(value)]));
}

/** The keys vcnet reads in [runtime] and in a [hypervisor.*] section (see the file's header). */
const RUNTIME_KEYS = ['internetworking_model', 'disable_new_netns', 'dan_conf'] as const;
const HYPERVISOR_KEYS = [
  'rx_rate_limiter_max_rate',
  'tx_rate_limiter_max_rate',
  'vhost_user_store_path',
  'disable_vhost_net',
  'default_vcpus',
  'enable_iommu',
  'net_rate_limiter_bw_max_rate',
  'net_rate_limiter_bw_one_time_burst',
  'net_rate_limiter_ops_max_rate',
  'net_rate_limiter_ops_one_time_burst',
  'network_queues',
  'cold_plug_vfio',
  'hot_plug_vfio',
  'machine_type',
] as const;

/**
 * `table` with each key that differs from one vcnet reads there only in case (Internetworking_Model,
 * [Runtime], or a long s: "di\u017fable_new_netns") under that key: Kata decodes with BurntSushi/toml
 * (v1.6.0 in its go.mod; v0.3.1 and every release between match keys alike), which matches a key to
 * a struct field by its exact name, else by strings.EqualFold (goFoldedKey: ASCII case, the long s and
 * the Kelvin sign; no other letter). Where several spellings of one key are written, the
 * decoder fills the one field from each in turn, in the order of a Go map walk (it varies from run to
 * run): a scalar ends with the last one's value; a table ([runtime] and [Runtime]: a struct; the
 * hypervisor tables: a Go map) is filled from each without being cleared first, so the keys of all
 * are read and only a key set in several takes the last one's value (a hypervisor section whole).
 * vcnet reads them the same way (`section` '' is the top level, whose keys are those tables) and,
 * where Kata's choice would vary, takes the exact spelling, else the first written, and says so.
 */
function foldKeyCase(
  table: Record<string, unknown>,
  section: string,
  known: readonly string[],
  warnings: string[],
): Record<string, unknown> {
  const folded: Record<string, unknown> = {};
  // For each key vcnet reads, its spellings in the file, the exact one first, then in file order.
  const spellings = new Map<string, string[]>();
  for (const key of Object.keys(table)) {
    const meant = known.find((name) => name === goFoldedKey(key));
    if (meant === undefined) {
      folded[key] = table[key];
      continue;
    }
    const written = spellings.get(meant) ?? [];
    if (key === meant) written.unshift(key);
    else written.push(key);
    spellings.set(meant, written);
  }
  for (const [meant, written] of spellings) {
    const [read = meant] = written;
    if (written.length === 1) {
      folded[meant] = table[read];
      continue;
    }
    const kataVaries = 'whichever its map iteration yields last, which varies from run to run';
    if (section !== '') {
      warnings.push(
        `[${section}] has ${written.length === 2 ? 'both ' : ''}${listed(written)}: vcnet reads ${read}; Kata takes ${kataVaries}. Keep one`,
      );
      folded[meant] = table[read];
      continue;
    }
    // Top level: tables, read as one; a key in several is read from the first (the exact spelling).
    const merged: Record<string, unknown> = {};
    const setInSeveral = new Set<string>();
    for (const spelling of written) {
      for (const [key, value] of Object.entries(tomlTable(table[spelling], spelling) ?? {})) {
        if (Object.hasOwn(merged, key)) setInSeveral.add(key);
        else merged[key] = value;
      }
    }
    folded[meant] = merged;
    const sections = written.map((spelling) => `[${spelling}]`);
    const clash =
      setInSeveral.size === 0
        ? ''
        : `; ${written.length === 2 ? 'both' : 'several'} set ${listed([...setInSeveral])}: vcnet reads [${read}]'s, Kata ${kataVaries}`;
    warnings.push(
      `the file has ${written.length === 2 ? 'both ' : ''}${listed(sections)}: vcnet reads them as one section, as Kata does${clash}. Keep one`,
    );
  }
  return folded;
}

/** `a`, `a and b`, `a, b and c`. */
function listed(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}

/**
 * A notice for each key of `table` within two edits of a key vcnet reads there, and not that key
 * (internetworking_modle): ignored, but most likely meant as the other (a difference in case only
 * is read as Kata reads it: foldKeyCase, before this); and for each key vcnet reads only in the
 * other table, `elsewhere` (internetworking_model under [hypervisor.qemu]). Every
 * other unknown key is passed over in silence: Kata's files hold many keys vcnet does not read.
 */
function nearMissNotices(
  table: Record<string, unknown>,
  section: string,
  known: readonly string[],
  elsewhere: { section: string; keys: readonly string[] },
): string[] {
  const notices: string[] = [];
  for (const key of Object.keys(table)) {
    // A difference in case only is read as the runtime reads it (foldKeyCase, exactKeyNotices).
    if (known.includes(goFoldedKey(key))) continue;
    // Kata reads it only there too, so here it changes nothing for either.
    if (elsewhere.keys.includes(goFoldedKey(key))) {
      notices.push(`[${section}] ${key} is read only in ${elsewhere.section}, so here it is ignored: move it there`);
      continue;
    }
    // The closest (tx_rate_limiter_max_rat is one edit from tx_, two from rx_rate_limiter_max_rate).
    let meant: string | undefined;
    let nearest = 3;
    for (const name of known) {
      const distance = editDistance(goFoldedKey(key), name);
      if (distance < nearest) [meant, nearest] = [name, distance];
    }
    if (meant !== undefined)
      notices.push(`[${section}] ${key} is not a key vcnet reads, so it is ignored: did you mean ${meant}?`);
  }
  return notices;
}

/** A config.d drop-in's text and where it came from (`source` names it in errors and notices). */
export interface KataDropIn {
  source: string;
  text: string;
}

/**
 * The network settings of a Kata configuration.toml's text (`source` names it in errors), with its
 * config.d drop-ins merged over it in the order given (readKataConfiguration reads them from the
 * directory in Kata's order). The merge is Kata's: a table in a drop-in is merged key by key into the
 * same table, any other value (an array too) replaces the one before it. A refused value set by a
 * drop-in is named with that drop-in.
 */
export function parseKataConfiguration(
  text: string,
  source = 'configuration.toml',
  dropIns: readonly KataDropIn[] = [],
): KataNetworkSettings {
  labelArgument(source, 'source', 'configuration.toml');
  if (typeof text !== 'string') {
    throw new InvalidInputError(
      'text',
      text,
      'the text of a Kata configuration.toml, as a string (readKataConfiguration reads one from a file)',
    );
  }
  if (!Array.isArray(dropIns)) throw new InvalidInputError('dropIns', dropIns, 'an array of { source, text }');
  const mainTree = parsedToml(text, source);
  const dropInTrees = dropIns.map((given, index) => {
    const dropIn = optionsArgument(given, `dropIns[${index}]`, ['source', 'text']);
    labelArgument(dropIn.source, `dropIns[${index}].source`, 'config.d/50-user-overrides.toml');
    if (typeof dropIn.text !== 'string') {
      throw new InvalidInputError(`dropIns[${index}].text`, dropIn.text, 'the text of a drop-in, as a string');
    }
    try {
      return { source: dropIn.source, tree: parsedToml(dropIn.text, dropIn.source) };
    } catch (error) {
      throw namingDropIn(error, () => dropIn.source);
    }
  });
  // runtime-rs reads every key by its exact name: a file it runs is read so, the Go runtime's any case.
  const runtimeRsRunsIt = runtimeRsRunsTrees([mainTree, ...dropInTrees.map(({ tree }) => tree)]);
  const warnings: string[] = [];
  const document = normalisedDocument(mainTree, warnings, runtimeRsRunsIt);
  // For each key path a drop-in set, the drop-in (the last one that set it).
  const origins = new Map<string, string>();
  for (const dropIn of dropInTrees) {
    const noticesOfDropIn: string[] = [];
    let tree: Record<string, unknown>;
    try {
      tree = normalisedDocument(dropIn.tree, noticesOfDropIn, runtimeRsRunsIt);
    } catch (error) {
      throw namingDropIn(error, () => dropIn.source);
    }
    warnings.push(...noticesOfDropIn.map((notice) => `${dropIn.source}: ${notice}`));
    mergeDropIn(document, tree, '', dropIn.source, origins);
  }
  try {
    const sourceShown = dropIns.length === 0 ? source : `${source} with its config.d drop-ins`;
    return settingsOf(document, sourceShown, warnings, runtimeRsRunsIt);
  } catch (error) {
    throw namingDropIn(error, (field) => originOf(field, origins), source);
  }
}

/**
 * Whether runtime-rs would run these trees (the file, then its drop-ins in order): [runtime] name, by its
 * exact name as runtime-rs reads it, set to a non-empty string by the last tree that sets it.
 */
function runtimeRsRunsTrees(trees: readonly Record<string, unknown>[]): boolean {
  let name: unknown;
  for (const tree of trees) {
    if (!Object.hasOwn(tree, 'runtime')) continue;
    const runtime = tree.runtime;
    if (!isTomlTable(runtime)) name = undefined;
    else if (Object.hasOwn(runtime, 'name')) name = runtime.name;
  }
  return namesRuntimeRsHandler({ name });
}

/** Kata's merge of a drop-in's tree into the tree so far (kata-types config/drop_in.rs; config.go agrees for these keys). */
function mergeDropIn(
  base: Record<string, unknown>,
  dropIn: Record<string, unknown>,
  prefix: string,
  source: string,
  origins: Map<string, string>,
): void {
  for (const [key, value] of Object.entries(dropIn)) {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    const before = base[key];
    if (isTomlTable(value) && isTomlTable(before)) {
      mergeDropIn(before, value, path, source, origins);
      continue;
    }
    base[key] = value;
    for (const known of origins.keys()) if (known.startsWith(`${path}.`)) origins.delete(known);
    origins.set(path, source);
  }
}

function isTomlTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** The drop-in that set `field` (runtime.internetworking_model) or a table holding it, if one did. */
function originOf(field: string, origins: ReadonlyMap<string, string>): string | undefined {
  const parts = field.split('.');
  for (let length = parts.length; length > 0; length--) {
    const origin = origins.get(parts.slice(0, length).join('.'));
    if (origin !== undefined) return origin;
  }
  return undefined;
}

/**
 * A refusal of a value a drop-in set, with the drop-in named in the field and the hint; of one the
 * file itself set (`mainSource`), with the file named in the hint, so the user knows which file to
 * edit (a node may have several configuration.toml, one per runtime class).
 */
function namingDropIn(error: unknown, dropInOf: (field: string) => string | undefined, mainSource?: string): unknown {
  if (!(error instanceof InvalidInputError)) return error;
  const dropIn = dropInOf(error.field);
  if (dropIn === undefined)
    return mainSource === undefined ? error : error.underField(error.field, `in ${mainSource}, ${error.hint}`);
  return error.underField(`${error.field} (set in ${dropIn})`, `${dropIn}: ${error.hint}`);
}

/** One file's TOML tree; a syntax error is refused naming the file. */
function parsedToml(text: string, source: string): Record<string, unknown> {
  let tree: Record<string, unknown>;
  try {
    // Every integer a bigint, every float a number: Kata tells them apart (tomlInteger), and its
    // uint64 keys may hold integers beyond 2^53.
    tree = parseToml(text, { integersAsBigInt: true }) as Record<string, unknown>;
  } catch (error) {
    throw new VcnetError('VCNET_CONFIG_SYNTAX', `${source} is not valid TOML: ${(error as Error).message}`, {
      value: source,
      hint: 'fix the TOML syntax at the line the message names',
    });
  }
  refuseBeyondTomlIntegers(tree, '');
  return tree;
}

/**
 * For a file runtime-rs runs: a notice for each key (or [runtime], [hypervisor] table) that differs from
 * one vcnet reads only in case. runtime-rs's decoder (serde) matches keys by their exact name, so it
 * ignores them, and vcnet does too; the Go runtime would read them (foldKeyCase).
 */
function exactKeyNotices(document: Record<string, unknown>, warnings: string[]): void {
  const notice = (written: string, meant: string) =>
    `${written} is ignored: runtime-rs reads keys by their exact name (the Go runtime would read it as ${meant}), and this file is runtime-rs's (its [runtime] name is set)`;
  const caseOnly = (table: Record<string, unknown>, known: readonly string[], shown: (key: string) => string) => {
    for (const key of Object.keys(table)) {
      const meant = known.find((name) => name !== key && name === goFoldedKey(key));
      if (meant !== undefined) warnings.push(notice(shown(key), shown(meant)));
    }
  };
  caseOnly(document, ['runtime', 'hypervisor'], (key) => `[${key}]`);
  if (isTomlTable(document.runtime)) caseOnly(document.runtime, RUNTIME_KEYS, (key) => `[runtime] ${key}`);
  if (isTomlTable(document.hypervisor)) {
    for (const [name, section] of Object.entries(document.hypervisor)) {
      if (isTomlTable(section)) caseOnly(section, HYPERVISOR_KEYS, (key) => `[hypervisor.${name}] ${key}`);
    }
  }
}

/**
 * One file's TOML tree, its [runtime] and [hypervisor.*] keys under the names vcnet reads
 * (foldKeyCase), so that a drop-in's [Runtime] merges into the main file's [runtime] as in the Go
 * runtime; for a file runtime-rs runs, as written (exactKeyNotices says what that leaves out).
 */
function normalisedDocument(
  tree: Record<string, unknown>,
  warnings: string[],
  runtimeRsRunsIt: boolean,
): Record<string, unknown> {
  if (runtimeRsRunsIt) {
    exactKeyNotices(tree, warnings);
    return tree;
  }
  const document = foldKeyCase(tree, '', ['runtime', 'hypervisor'], warnings);
  if (isTomlTable(document.runtime)) {
    document.runtime = foldKeyCase(document.runtime, 'runtime', RUNTIME_KEYS, warnings);
  }
  if (isTomlTable(document.hypervisor)) {
    const hypervisors = document.hypervisor;
    for (const [name, section] of Object.entries(hypervisors)) {
      if (isTomlTable(section)) {
        hypervisors[name] = foldKeyCase(section, `hypervisor.${name}`, HYPERVISOR_KEYS, warnings);
      }
    }
  }
  return document;
}

/**
 * A model as Kata's SetModel takes it: exactly one of the names (no other case, no blanks); the
 * empty string is not given to SetModel at all, so the default stays (config.go updateRuntimeConfig).
 */
function kataInterworkingModel(value: string, field: string): InterworkingModel | undefined {
  if (value === '') return undefined;
  if (!(INTERWORKING_MODELS as readonly string[]).includes(value)) {
    throw new InvalidInputError(
      field,
      value,
      INTERWORKING_MODELS.join(', '),
      `set ${field} to ${INTERWORKING_MODELS.join(', ')}, written exactly so: Kata refuses any other spelling ("Unknown type")`,
    );
  }
  return parseInterworkingModel(value, field);
}

/** Most network queue pairs runtime-rs gives a NIC (kata-types MAX_NETWORK_QUEUES); a larger setting is cut to it. */
const RUNTIME_RS_MAX_NETWORK_QUEUES = 256;

/**
 * runtime-rs's [hypervisor.X] network_queues (a u32; 0 or absent is 1, above 256 is 256: kata-types
 * NetworkInfo::adjust_config). Anything that is not a u32 fails runtime-rs's decoding, so is refused.
 */
function runtimeRsNetworkQueues(value: unknown, field: string): number {
  if (value === undefined) return 1;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new InvalidInputError(
      field,
      value,
      `a whole number of queue pairs (runtime-rs reads 0 as 1 and caps it at ${RUNTIME_RS_MAX_NETWORK_QUEUES})`,
    );
  }
  return Math.min(Math.max(value, 1), RUNTIME_RS_MAX_NETWORK_QUEUES);
}

/**
 * runtime-rs runs a configuration only when its [runtime] name (the handler, "virt_container") is set,
 * and refuses any other ("Runtime name is missing in the configuration"); the Go runtime does not read
 * the key. A file without it is the Go runtime's.
 */
function namesRuntimeRsHandler(runtime: Record<string, unknown>): boolean {
  return typeof runtime.name === 'string' && runtime.name !== '';
}

/**
 * runtime-rs checks internetworking_model against its own list (kata-types Runtime::validate: tcfilter,
 * macvtap, none, l3forwarding; empty is tcfilter) and refuses the file on "default", the Go runtime's
 * name for tcfilter.
 */
function refuseRuntimeRsDefaultModel(value: string): void {
  if (value !== 'default') return;
  throw new InvalidInputError(
    'runtime.internetworking_model',
    value,
    'tcfilter, macvtap, none',
    'runtime-rs refuses "default" ("Invalid internetworking_model"), and this file is runtime-rs\'s (its [runtime] name is set); write "tcfilter" (or leave the key empty): the Go runtime reads "default" as tcfilter',
  );
}

/**
 * The model of a file runtime-rs runs, where runtime-rs differs from the Go runtime:
 * - disable_new_netns: runtime-rs gives the sandbox no network namespace, so no network, whatever the
 *   model (the Go runtime refuses any model but none): read as none, which is what vcnet builds then;
 * - macvtap: runtime-rs accepts it but has no such model (network_model::new gives every name but
 *   tcfilter and l3forwarding the none model: a tap joined to nothing); vcnet builds the macvtap the
 *   Go runtime builds, and says so.
 */
function readModelAsRuntimeRs(settings: KataNetworkSettings, warnings: string[]): void {
  const model = settings.model ?? DEFAULT_INTERWORKING_MODEL;
  if (settings.disableNewNetns === true && model !== 'none') {
    warnings.push(
      `internetworking_model = "${model}" with disable_new_netns in a runtime-rs configuration: runtime-rs then makes no network for the sandbox whatever the model, so vcnet reads the model as none (the Go runtime refuses the pair)`,
    );
    settings.model = 'none';
    return;
  }
  if (model === 'macvtap') {
    warnings.push(
      'internetworking_model = "macvtap" in a runtime-rs configuration: runtime-rs has no macvtap model and runs the none model instead (the tap is made and joined to nothing); vcnet builds the macvtap as the Go runtime does',
    );
  }
}

/**
 * [hypervisor.X] rx_ or tx_rate_limiter_max_rate in bits/s, undefined for no limit. Below 8 bits/s a tc
 * limit cannot be built (htb takes bytes/s, and the kernel refuses 0): refused, as the Go runtime fails
 * on it when it builds the htb, except where Kata builds none. Firecracker: Kata's bucket is rate / 8 =
 * 0 bytes, which Firecracker takes as no limit; Cloud Hypervisor: the Go runtime does not read the keys
 * (networkConfigFromKata says so); a runtime-rs file: runtime-rs reads both keys and limits nothing, so
 * it runs the file whatever they say, and vcnet builds no limit for that key either.
 */
function kataBitRate(
  section: Record<string, unknown>,
  name: string,
  direction: 'rx' | 'tx',
  warnings: string[],
  runtimeRsRunsIt: boolean,
): number | undefined {
  const key = `${direction}_rate_limiter_max_rate`;
  const field = `hypervisor.${name}.${key}`;
  const hypervisor = knownHypervisorOfSection(name);
  if (hypervisor !== 'firecracker' && hypervisor !== 'clh' && !runtimeRsRunsIt) {
    return validateBitRate(field, tomlBitRate(field, section[key]));
  }
  const rate = validateRate(field, tomlBitRate(field, section[key]));
  if (hypervisor === 'qemu' && rate !== undefined && rate < MIN_BITS_PER_SECOND) {
    warnings.push(
      `[hypervisor.${name}] ${key} = ${rate} is no limit: runtime-rs limits no NIC with the key (this file is runtime-rs's: its [runtime] name is set), and a tc limit below ${MIN_BITS_PER_SECOND} bits/s cannot be built, so vcnet builds none for it. Set 0, or at least ${MIN_BITS_PER_SECOND} for a limit`,
    );
    return undefined;
  }
  if (hypervisor === 'firecracker' && rate !== undefined && rate < MIN_BITS_PER_SECOND) {
    warnings.push(
      `[hypervisor.${name}] ${key} = ${rate} is no limit: Kata gives Firecracker a bucket of ${rate} / 8 = 0 bytes, which Firecracker takes as none, and so does vcnet. Set at least ${MIN_BITS_PER_SECOND} for a limit`,
    );
    return undefined;
  }
  return rate;
}

/** The settings of a merged, normalised tree (`source` names it in notices). */
function settingsOf(
  document: Record<string, unknown>,
  source: string,
  warnings: string[],
  runtimeRsRunsIt: boolean,
): KataNetworkSettings {
  const settings: KataNetworkSettings = {};
  const runtime = tomlShownValues(tomlTable(document.runtime, 'runtime') ?? {});
  warnings.push(
    ...nearMissNotices(runtime, 'runtime', RUNTIME_KEYS, {
      section: 'a [hypervisor.*] section',
      keys: HYPERVISOR_KEYS,
    }),
  );
  expectType('runtime.internetworking_model', runtime.internetworking_model, 'string');
  if (typeof runtime.internetworking_model === 'string') {
    if (runtimeRsRunsIt) refuseRuntimeRsDefaultModel(runtime.internetworking_model);
    const model = kataInterworkingModel(runtime.internetworking_model, 'runtime.internetworking_model');
    if (model !== undefined) settings.model = model;
  }
  expectType('runtime.disable_new_netns', runtime.disable_new_netns, 'boolean');
  if (typeof runtime.disable_new_netns === 'boolean') settings.disableNewNetns = runtime.disable_new_netns;
  if (runtimeRsRunsIt) {
    settings.runtimeRs = true;
    readModelAsRuntimeRs(settings, warnings);
  }
  expectType('runtime.dan_conf', runtime.dan_conf, 'string');
  if (typeof runtime.dan_conf === 'string' && runtime.dan_conf !== '') settings.danConfigDirectory = runtime.dan_conf;

  const hypervisors = tomlTable(document.hypervisor, 'hypervisor') ?? {};
  for (const [key, value] of Object.entries(hypervisors)) {
    if (key === '') {
      throw new InvalidInputError(
        'hypervisor.""',
        tomlShown(value),
        'a table named after its hypervisor, such as [hypervisor.qemu]',
      );
    }
    tomlTable(value, `hypervisor.${key}`);
    if (!runtimeRsRunsIt && Object.hasOwn(SECTION_ALIASES, key)) refuseRuntimeRsSectionName(key, source);
  }
  let [name, section] = (Object.entries(hypervisors)[0] ?? []) as [string?, Record<string, unknown>?];
  const sectionNames = Object.keys(hypervisors);
  // runtime-rs runs the section its [runtime] hypervisor_name names (a key the Go runtime does not have,
  // read as runtime-rs's serde decoder reads it: by its exact name), and fails on a name with no section.
  // It runs only a file whose [runtime] name is set: without one the file is the Go runtime's, which
  // ignores hypervisor_name, so a stray one must not refuse a file the Go runtime runs.
  expectType('runtime.hypervisor_name', runtime.hypervisor_name, 'string');
  const namedSection = typeof runtime.hypervisor_name === 'string' ? runtime.hypervisor_name : '';
  const namedSectionPresent = namedSection !== '' && Object.hasOwn(hypervisors, namedSection);
  if (namedSection !== '' && sectionNames.length > 0 && !namedSectionPresent) {
    if (runtimeRsRunsIt) {
      throw new InvalidInputError(
        'runtime.hypervisor_name',
        namedSection,
        `the name of a [hypervisor.*] section of ${source} (${sectionNames.join(', ')})`,
        "runtime-rs runs the section hypervisor_name names and fails when the file has none of that name (the file is runtime-rs's: its [runtime] name is set)",
      );
    }
    warnings.push(
      `[runtime] hypervisor_name = "${namedSection}" names no [hypervisor.*] section of ${source} (${sectionNames.join(', ')}): the Go runtime does not read it, and runs the file, as vcnet reads it; runtime-rs would refuse it ("Invalid hypervisor name"), and runs no file without [runtime] name anyway. Remove the key, or name the section`,
    );
  }
  if (namedSectionPresent) {
    [name, section] = [namedSection, hypervisors[namedSection] as Record<string, unknown>];
    if (!runtimeRsRunsIt && sectionNames.length > 1) {
      warnings.push(
        `${source} has ${sectionNames.length} [hypervisor.*] sections (${sectionNames.join(', ')}): vcnet reads [hypervisor.${name}], the one [runtime] hypervisor_name names; but the file has no [runtime] name, so only the Go runtime runs it, and the Go runtime does not read hypervisor_name: it takes whichever section its map iteration yields last, which varies from run to run. Keep only the section of the hypervisor the runtime uses`,
      );
    }
  } else if (name && sectionNames.length > 1) {
    // Kata keeps the last section its map iteration yields, which Go randomises: no order is Kata's.
    warnings.push(
      `${source} has ${sectionNames.length} [hypervisor.*] sections (${sectionNames.join(', ')}): vcnet reads [hypervisor.${name}], the first; Kata takes whichever its map iteration yields last, which varies from run to run. Keep only the section of the hypervisor the runtime uses`,
    );
  }
  if (name && section) {
    warnings.push(
      ...nearMissNotices(section, `hypervisor.${name}`, HYPERVISOR_KEYS, { section: '[runtime]', keys: RUNTIME_KEYS }),
    );
    section = tomlShownValues(section);
    settings.hypervisor = name;
    const prefix = `hypervisor.${name}`;
    const rx = kataBitRate(section, name, 'rx', warnings, runtimeRsRunsIt);
    const tx = kataBitRate(section, name, 'tx', warnings, runtimeRsRunsIt);
    if (rx || tx)
      settings.rateLimit = { ...(rx ? { rxBitsPerSecond: rx } : {}), ...(tx ? { txBitsPerSecond: tx } : {}) };
    // Block storage only (Kata): it must not move the vhost-user-net socket search.
    expectType(`${prefix}.vhost_user_store_path`, section.vhost_user_store_path, 'string');
    expectType(`${prefix}.disable_vhost_net`, section.disable_vhost_net, 'boolean');
    if (typeof section.disable_vhost_net === 'boolean') settings.vhostNet = section.disable_vhost_net ? 'off' : 'auto';
    // A float key in both runtimes (float32, f32): an integer or a float.
    const vcpus = section.default_vcpus instanceof TomlFloat ? section.default_vcpus.number : section.default_vcpus;
    if (vcpus instanceof WrittenAs || (typeof vcpus === 'number' && !Number.isFinite(vcpus))) {
      throw new InvalidInputError(`${prefix}.default_vcpus`, section.default_vcpus, 'a number of vCPUs');
    }
    expectType(`${prefix}.default_vcpus`, vcpus, 'number');
    if (typeof vcpus === 'number') {
      // As Kata: below 0 means every core of the host; a fraction (Kata keeps vCPUs as a float) counts as
      // the next whole vCPU for queues.
      settings.vcpus = vcpus < 0 ? availableParallelism() : Math.ceil(vcpus);
    }
    // runtime-rs takes a NIC's queue pairs from network_queues, a key the Go runtime does not have. A
    // file is runtime-rs's when its [runtime] name is set (the runtime-rs handler, "virt_container", in
    // every runtime-rs configuration; runtime-rs runs no file without it). In any other file
    // network_queues is a key the Go runtime, the only one to run it, does not read.
    if (runtimeRsRunsIt) {
      const field = `${prefix}.network_queues`;
      settings.networkQueues = runtimeRsNetworkQueues(tomlInteger(field, section.network_queues), field);
    } else if (Object.hasOwn(section, 'network_queues')) {
      warnings.push(
        `[hypervisor.${name}] network_queues = ${describeGivenValue(section.network_queues)} is not used: it is a runtime-rs key, and without [runtime] name only the Go runtime runs ${source}, which gives a NIC ${knownHypervisorOfSection(name) === 'qemu' ? 'one queue pair per vCPU (default_vcpus)' : 'one queue pair'}; vcnet does the same`,
      );
    }
    expectType(`${prefix}.cold_plug_vfio`, section.cold_plug_vfio, 'string');
    expectType(`${prefix}.hot_plug_vfio`, section.hot_plug_vfio, 'string');
    expectType(`${prefix}.machine_type`, section.machine_type, 'string');
    if (typeof section.cold_plug_vfio === 'string' && section.cold_plug_vfio !== '') {
      settings.coldPlugVfio = section.cold_plug_vfio;
    }
    const sectionHypervisor = knownHypervisorOfSection(name);
    if (!runtimeRsRunsIt && (sectionHypervisor === 'qemu' || sectionHypervisor === 'clh')) {
      refuseWhatCheckPCIeConfigRefuses(section, prefix, sectionHypervisor);
    }
    if (knownHypervisorOfSection(name) === 'clh') {
      const bandwidth = cloudHypervisorBucket(section, prefix, 'bw', warnings);
      const operations = cloudHypervisorBucket(section, prefix, 'ops', warnings);
      expectType(`${prefix}.enable_iommu`, section.enable_iommu, 'boolean');
      // Kata's Go runtime reads enable_iommu for QEMU only: newClhHypervisorConfig never copies it, so a
      // Cloud Hypervisor VM (and its NICs) gets an IOMMU only from the sandbox's annotation. A NIC sent
      // with iommu to a VM booted without one would not work.
      if (section.enable_iommu === true) {
        warnings.push(
          `[hypervisor.${name}] enable_iommu = true puts no NIC behind an IOMMU: Kata's Go runtime does not read the key for Cloud Hypervisor (only the io.katacontainers.config.hypervisor.enable_iommu annotation gives its VM an IOMMU), and runtime-rs puts no NIC behind one; vcnet does the same (a library caller whose VM has an IOMMU sets NetworkConfig.nicIommu)`,
        );
      }
      if (bandwidth || operations)
        settings.cloudHypervisorRateLimiter = {
          ...(bandwidth ? { bandwidth } : {}),
          ...(operations ? { operations } : {}),
        };
    }
  }
  // Kata's default applies to a file the Go runtime read (an empty value, no section, even an empty
  // file: its default hypervisor configuration has it), never where no file was read.
  if (!runtimeRsRunsIt) {
    settings.coldPlugVfio ??= COLD_PLUG_DISABLED;
  }
  if (warnings.length > 0) settings.warnings = warnings;
  return settings;
}

const KATA_SETTINGS_KEYS: readonly (keyof KataNetworkSettings)[] = [
  'model',
  'disableNewNetns',
  'rateLimit',
  'vhostNet',
  'vcpus',
  'danConfigDirectory',
  'cloudHypervisorRateLimiter',
  'cloudHypervisorIommu',
  'runtimeRs',
  'networkQueues',
  'coldPlugVfio',
  'hypervisor',
  'file',
  'warnings',
];

/** The hypervisors whose network rules networkConfigFromKata knows (Kata's names). */
export type KataHypervisor = 'qemu' | 'clh' | 'firecracker';

const KATA_HYPERVISORS: readonly KataHypervisor[] = ['qemu', 'clh', 'firecracker'];

/**
 * runtime-rs named Cloud Hypervisor's section [hypervisor.cloud-hypervisor] until Kata 3.30 (kata-types
 * HYPERVISOR_NAME_CH). Every alias is a name only runtime-rs reads: a file without [runtime] name (the Go
 * runtime's) that has one is refused (refuseRuntimeRsSectionName).
 */
const SECTION_ALIASES: Readonly<Record<string, KataHypervisor>> = { 'cloud-hypervisor': 'clh' };

/** Sections Kata runs but vcnet cannot plan for, and why: planning them as QEMU's would build the wrong plumbing. */
const UNPLANNED_SECTIONS: Readonly<Record<string, string>> = {
  dragonball:
    "Dragonball is runtime-rs's built-in VMM: it runs inside the Kata shim and opens its taps by name itself, with no API vcnet could hand a NIC to",
  stratovirt: 'vcnet has no StratoVirt device configuration',
  remote: 'the remote hypervisor (peer pods) runs the VM on another host: no tap here takes its traffic',
  openvmm: 'vcnet has no OpenVMM device configuration',
  // A file written for Kata 3.9 or older would otherwise hear that Kata refuses the section, which its Kata did not.
  acrn: 'Kata 3.10 removed ACRN (only its Go runtime ran it, from configuration-acrn.toml), and vcnet has no ACRN device configuration',
};

/**
 * A section only runtime-rs names so ([hypervisor.cloud-hypervisor]) in a file without [runtime] name:
 * neither runtime runs it. The Go runtime, which runs files without name, fails on a section it does
 * not know ("invalid hypervisor section"; its name for Cloud Hypervisor is clh), and runtime-rs runs
 * no file without name ("Runtime name is missing").
 */
function refuseRuntimeRsSectionName(section: string, source: string): never {
  const own = SECTION_ALIASES[section];
  throw new InvalidInputError(
    `[hypervisor.*] section of ${source}`,
    `[hypervisor.${section}]`,
    `[hypervisor.${own}] in a file for Kata's Go runtime, or [hypervisor.${section}] in a file with [runtime] name set (runtime-rs's)`,
    `Kata runs this file with neither runtime: without [runtime] name it is the Go runtime's, which knows Cloud Hypervisor only as [hypervisor.${own}] and fails on any other section name, and runtime-rs runs no file without [runtime] name ("Runtime name is missing"). Rename the table to [hypervisor.${own}] for the Go runtime, or add name = "virt_container" and hypervisor_name = "${section}" under [runtime] for runtime-rs`,
  );
}

/** The hypervisor of a [hypervisor.*] section name vcnet plans for (its own name or an alias), else undefined. */
function knownHypervisorOfSection(section: string): KataHypervisor | undefined {
  if ((KATA_HYPERVISORS as readonly string[]).includes(section)) return section as KataHypervisor;
  return Object.hasOwn(SECTION_ALIASES, section) ? SECTION_ALIASES[section] : undefined;
}

/**
 * The hypervisor a configuration's [hypervisor.*] section names (undefined when it has none). One vcnet
 * cannot plan for (Dragonball, StratoVirt, remote, OpenVMM, the removed ACRN, or a name Kata refuses too) is refused:
 * `choose` names how the caller picks one instead (--hypervisor, options.hypervisor).
 */
export function kataHypervisorOfSection(
  section: string | undefined,
  choose: string,
  source = 'the configuration',
): KataHypervisor | undefined {
  if (section === undefined) return undefined;
  const known = knownHypervisorOfSection(section);
  if (known !== undefined) return known;
  const why = Object.hasOwn(UNPLANNED_SECTIONS, section)
    ? UNPLANNED_SECTIONS[section]
    : 'Kata refuses a section of that name too';
  throw new InvalidInputError(
    `[hypervisor.*] section of ${source}`,
    `[hypervisor.${section}]`,
    'qemu, clh (cloud-hypervisor), firecracker',
    `${why}; give ${choose} to plan the network for one of those instead`,
  );
}

/** Fields a caller sets over configuration.toml (a CLI's flags win over the file, as in vcnet attach). */
export type KataConfigOverrides = Partial<
  Pick<NetworkConfig, 'model' | 'queues' | 'vhostNet' | 'disableNewNetns' | 'namedInterfaces'>
>;

/**
 * Options of `networkConfigFromKata`: the pod namespace, the hypervisor whose rules apply, fields set over
 * the file, and a handler for settings that have no effect.
 */
export interface KataNetworkConfigOptions {
  /**
   * The pod namespace. Left out only with disable_new_netns, where the VMM runs in this process's own
   * namespace (as in Kata).
   */
  namespacePath?: string;
  /**
   * Whose rules apply; default: the settings' [hypervisor.*] section (runtime-rs's cloud-hypervisor is
   * clh; one vcnet cannot plan for, such as dragonball, is refused), else qemu.
   */
  hypervisor?: KataHypervisor;
  overrides?: KataConfigOverrides;
  /**
   * The sandbox id. With dan_conf set, a sandbox that has a DAN file (`<dan_conf>/<id>.json`) is refused:
   * Kata would take its network from that file and not scan the namespace. Without an id nothing is checked.
   */
  sandbox?: string;
  /** Told each setting that is read but has no effect (the library writes nothing itself). */
  warn?: (message: string) => void;
}

/**
 * The NetworkConfig Kata would use for these configuration.toml settings, as `vcnet attach --config`
 * builds it:
 * - QEMU: one queue pair per vCPU (default_vcpus, at most the host's cores), vhost-net unless
 *   disable_vhost_net, rx/tx_rate_limiter_max_rate as tc shaping on the host;
 * - Cloud Hypervisor and Firecracker: one queue pair, no vhost-net, and the limits go to the VMM's own
 *   token buckets (vmmRateLimiter: clh's net_rate_limiter_*, Firecracker's rx/tx_rate_limiter_max_rate),
 *   never to tc; Firecracker refuses the macvtap model (it opens its tap by name).
 * Settings that are not NetworkConfig fields (vcpus, hypervisor, warnings) are not carried over.
 */
export function networkConfigFromKata(
  settings: KataNetworkSettings,
  options: KataNetworkConfigOptions = {},
): NetworkConfig {
  requireConfigObject(settings, 'settings');
  refuseUnknownKeys(settings, 'settings', KATA_SETTINGS_KEYS);
  refuseQueuesWithoutRuntimeRs(settings);
  stringOption(settings.file, 'settings.file', 'the path of the configuration file the settings were read from');
  options = optionsArgument(options, 'options', ['namespacePath', 'hypervisor', 'overrides', 'sandbox', 'warn']);
  functionOption(options.warn, 'warn');
  stringOption(options.namespacePath, 'namespacePath', 'the path of the pod network namespace');
  stringOption(options.sandbox, 'sandbox', 'the sandbox id');
  const overrides = optionsArgument(options.overrides, 'overrides', [
    'model',
    'queues',
    'vhostNet',
    'disableNewNetns',
    'namedInterfaces',
  ]);
  const warn = options.warn ?? (() => {});
  const hypervisor =
    options.hypervisor ?? kataHypervisorOfSection(settings.hypervisor, 'options.hypervisor', settings.file) ?? 'qemu';
  if (!KATA_HYPERVISORS.includes(hypervisor)) {
    throw new InvalidInputError('hypervisor', hypervisor, KATA_HYPERVISORS.join(', '));
  }
  for (const warning of settings.warnings ?? []) warn(warning);
  refuseDanSandbox(settings.danConfigDirectory, options.sandbox);
  const model =
    overrides.model === undefined
      ? (settings.model ?? DEFAULT_INTERWORKING_MODEL)
      : parseInterworkingModel(overrides.model as string, 'model');
  const builtInLimiter = hypervisor === 'clh' || hypervisor === 'firecracker';
  if (hypervisor === 'firecracker' && model === 'macvtap') {
    throw new InvalidInputError(
      overrides.model === undefined ? 'runtime.internetworking_model' : 'model',
      'macvtap',
      'tcfilter or none with the firecracker hypervisor (it opens its tap by name, which a macvtap cannot be)',
    );
  }
  if (builtInLimiter && overrides.vhostNet === 'auto') {
    throw new InvalidInputError('vhostNet', overrides.vhostNet, `off with the ${hypervisor} hypervisor`);
  }
  if (hypervisor === 'clh' && settings.rateLimit) {
    // Named as the file names Cloud Hypervisor's section: runtime-rs's files say [hypervisor.cloud-hypervisor].
    const section =
      settings.hypervisor !== undefined && knownHypervisorOfSection(settings.hypervisor) === 'clh'
        ? settings.hypervisor
        : 'clh';
    warn(
      'rx/tx_rate_limiter_max_rate are not Cloud Hypervisor keys (Kata ignores them there): ' +
        `use net_rate_limiter_bw_max_rate in [hypervisor.${section}]`,
    );
  }
  const vmmRateLimiter =
    hypervisor === 'clh'
      ? settings.cloudHypervisorRateLimiter
      : hypervisor === 'firecracker'
        ? settings.rateLimit
        : undefined;
  if (settings.runtimeRs === true) warnRuntimeRsIgnores(settings, hypervisor, vmmRateLimiter, warn);
  const disableNewNetns = overrides.disableNewNetns ?? settings.disableNewNetns ?? false;
  // With disable_new_netns the VMM runs in this process's own (the host's) namespace, as in Kata.
  const namespacePath = options.namespacePath ?? (disableNewNetns ? OWN_NAMESPACE_PATH : undefined);
  if (namespacePath === undefined) {
    throw new InvalidInputError(
      'namespacePath',
      namespacePath,
      'the pod namespace path (only disable_new_netns goes without it)',
    );
  }
  const vcpus = settings.vcpus && settings.vcpus > 0 ? settings.vcpus : 1;
  const queues = overrides.queues ?? queuesOf(settings, hypervisor, vcpus, warn);
  // Cloud Hypervisor refuses a NIC with more queue pairs than the VM has boot vCPUs (num_queues / 2 >
  // boot_vcpus): known here only from the configuration's default_vcpus.
  if (hypervisor === 'clh' && settings.vcpus !== undefined && queues > vcpus) {
    throw new InvalidInputError(
      overrides.queues === undefined ? `hypervisor.${settings.hypervisor ?? 'clh'}.network_queues` : 'queues',
      queues,
      `at most ${vcpus} with the clh hypervisor and default_vcpus = ${vcpus}: Cloud Hypervisor refuses more queue pairs per NIC than the VM's boot vCPUs`,
    );
  }
  return validateNetworkConfig({
    namespacePath,
    model,
    namespaceCreatedByVcnet: false,
    disableNewNetns,
    queues,
    vhostNet: builtInLimiter ? 'off' : (overrides.vhostNet ?? settings.vhostNet ?? 'auto'),
    ...(settings.rateLimit && !builtInLimiter ? { rateLimit: settings.rateLimit } : {}),
    ...(vmmRateLimiter ? { vmmRateLimiter } : {}),
    ...(hypervisor === 'clh' && settings.cloudHypervisorIommu ? { nicIommu: true } : {}),
    // Only the Go runtime checks it, for QEMU and Cloud Hypervisor (their configurations carry it; runtime-rs
    // passes a physical NIC through whatever it says). Settings read from no file have none: nothing to check.
    ...((hypervisor === 'qemu' || hypervisor === 'clh') &&
    settings.runtimeRs !== true &&
    settings.coldPlugVfio !== undefined
      ? { coldPlugVfio: settings.coldPlugVfio }
      : {}),
    ...(overrides.namedInterfaces && overrides.namedInterfaces.length > 0
      ? { namedInterfaces: overrides.namedInterfaces }
      : {}),
  });
}

/** runtimeRs is true or absent; networkQueues, a runtime-rs key, only with it (the Go runtime's queues follow vcpus). */
function refuseQueuesWithoutRuntimeRs(settings: KataNetworkSettings): void {
  if (settings.runtimeRs !== undefined && settings.runtimeRs !== true) {
    throw new InvalidInputError(
      'settings.runtimeRs',
      settings.runtimeRs,
      'true (a runtime-rs file) or absent (a Go runtime file, or no file)',
    );
  }
  if (settings.networkQueues !== undefined && settings.runtimeRs !== true) {
    throw new InvalidInputError(
      'settings.networkQueues',
      settings.networkQueues,
      'absent, or set with runtimeRs: true',
      "network_queues is runtime-rs's key: set runtimeRs: true for settings of a runtime-rs file (as readKataConfiguration does for a file with [runtime] name), or leave networkQueues out, and a Go runtime file's queues follow vcpus",
    );
  }
}

/**
 * A runtime-rs file's NIC settings that runtime-rs itself leaves unused but vcnet applies as the Go runtime
 * does: runtime-rs reads rx/tx_rate_limiter_max_rate without building any limit from them, has no
 * net_rate_limiter_* keys. Applied all the same (the file's own comments promise the limit), but said,
 * since the NIC then differs from runtime-rs's.
 */
function warnRuntimeRsIgnores(
  settings: KataNetworkSettings,
  hypervisor: KataHypervisor,
  vmmRateLimiter: VmmRateLimiter | undefined,
  warn: (message: string) => void,
): void {
  const section = `[hypervisor.${settings.hypervisor ?? hypervisor}]`;
  if (hypervisor === 'clh' ? vmmRateLimiter : settings.rateLimit) {
    const keys = hypervisor === 'clh' ? 'net_rate_limiter_*' : 'rx/tx_rate_limiter_max_rate';
    warn(
      `${keys} in ${section} of a runtime-rs configuration: runtime-rs limits no NIC (it reads rx/tx_rate_limiter_max_rate but applies neither, and has no net_rate_limiter_* keys); vcnet applies the limit as Kata's Go runtime does`,
    );
  }
}

/**
 * A NIC's queue pairs from the configuration: runtime-rs's network_queues for a runtime-rs file (QEMU
 * and Cloud Hypervisor; Firecracker's NICs have one queue pair); else, as the Go runtime, one per vCPU
 * for QEMU (at most the host's cores) and one for Cloud Hypervisor and Firecracker.
 */
function queuesOf(
  settings: KataNetworkSettings,
  hypervisor: KataHypervisor,
  vcpus: number,
  warn: (message: string) => void,
): number {
  if (settings.runtimeRs === true) {
    const networkQueues = settings.networkQueues ?? 1;
    if (hypervisor !== 'firecracker') return networkQueues;
    if (networkQueues > 1) {
      warn(`network_queues = ${networkQueues} is not used with Firecracker, whose NICs have one queue pair`);
    }
    return 1;
  }
  return hypervisor === 'qemu' ? Math.min(vcpus, availableParallelism()) : 1;
}

/**
 * Kata's shipped configurations all set dan_conf, and Kata scans the namespace unless the sandbox's own
 * DAN file exists (oci.networkConfig): only then would vcnet's scan do something else than Kata.
 */
function refuseDanSandbox(directory: string | undefined, sandbox: string | undefined): void {
  if (directory === undefined || sandbox === undefined) return;
  const file = join(directory, `${sandbox}.json`);
  if (!existsSync(file)) return;
  throw new InvalidInputError(
    'runtime.dan_conf',
    directory,
    `a directory without ${sandbox}.json (${file} exists, and vcnet does not read Kata's DAN files)`,
    `Kata would configure sandbox ${sandbox}'s network from ${file} (its VFIO devices) instead of scanning the namespace, which is what vcnet does; remove the file, or leave this sandbox to Kata`,
  );
}

/**
 * parseKataConfiguration of the file at `path` with its drop-ins, as Kata reads them (katautils/config.go
 * decodeDropIns, kata-types config/drop_in.rs): the path resolved through symlinks first, then every
 * entry of config.d beside the resolved file, in file name order (byte order), whatever its name ends
 * with; an entry that is not a file is refused, as Kata fails on it.
 */
export function readKataConfiguration(path: string): KataNetworkSettings {
  let resolved: string;
  let text: string;
  try {
    resolved = realpathSync(path);
    text = readFileSync(resolved, 'utf8');
  } catch (error) {
    throw new InvalidInputError('path', path, 'a readable Kata configuration.toml', unreadableFileHint(error, path));
  }
  return { ...parseKataConfiguration(text, path, readDropIns(join(dirname(resolved), 'config.d'))), file: path };
}

function readDropIns(directory: string): KataDropIn[] {
  let names: string[];
  try {
    names = readdirSync(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new InvalidInputError(
      'path',
      directory,
      'a readable config.d directory of drop-ins (Kata fails on one it cannot read)',
      unreadableFileHint(error, directory, `, or move ${directory} out of the way: Kata reads no drop-ins without it`),
    );
  }
  names.sort((left, right) => Buffer.compare(Buffer.from(left), Buffer.from(right)));
  return names.map((name) => {
    const file = join(directory, name);
    try {
      if (!statSync(file).isFile()) throw new Error(`${file} is not a file`);
      return { source: file, text: readFileSync(file, 'utf8') };
    } catch (error) {
      throw new InvalidInputError(
        'path',
        file,
        'a readable file: Kata reads every entry of config.d as a drop-in, and fails on one it cannot read',
        unreadableFileHint(error, file, ', or move it out of config.d'),
      );
    }
  });
}
