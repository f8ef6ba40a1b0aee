/** Turns CLI flags into a validated NetworkConfig (flags win over configuration.toml). */
import { decimalInteger, decimalSecondsAsMs } from '../arguments.js';
import { InvalidInputError } from '../errors.js';
import { openNamespace } from '../netns/namespace.js';
import {
  ConfigurationConflictError,
  type KataConfigOverrides,
  kataHypervisorOfSection,
  type NetworkConfig,
  networkConfigFromKata,
  readKataConfiguration,
} from '../network/config.js';
import type { HypervisorKind } from '../network/hypervisor-devices.js';
import { parseInterworkingModel } from '../network/interworking-model.js';
import { validateSandboxId } from '../network/state/store.js';
import { parseTapId } from '../network/tap-owner.js';
import { MAX_QUEUES, QUEUES_ACCEPTED } from '../queue-limits.js';
import { parseHypervisor } from './hypervisor-config.js';
import { writeStderr } from './output.js';

export interface NetworkFlags {
  /** The sandbox id (attach --sandbox): a DAN file for it under dan_conf is refused. */
  sandbox?: string;
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
  /** attach --vhost-user-store: where vhost-user-net sockets are looked for (as scan's). */
  vhostUserStore?: string;
  /** attach --tap-owner/--tap-group: a uid/gid or name every tap is given. */
  tapOwner?: string;
  tapGroup?: string;
}

/** Commander collector for an option given several times. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function parseQueues(text: string): number {
  return decimalInteger('--queues', text, 1, MAX_QUEUES, QUEUES_ACCEPTED);
}

/**
 * The hypervisor: --hypervisor, else the configuration's [hypervisor.*] section (Kata runs the one its
 * configuration names; one vcnet cannot plan for is refused), else QEMU.
 */
function hypervisorOf(flag: string | undefined, section: string | undefined, configPath?: string): HypervisorKind {
  if (flag === undefined) return kataHypervisorOfSection(section, '--hypervisor', configPath) ?? 'qemu';
  const kind = parseHypervisor(flag);
  let named: string | undefined;
  try {
    named = kataHypervisorOfSection(section, '--hypervisor', configPath);
  } catch {
    named = section;
  }
  if (named !== undefined && named !== kind) {
    warn(`--hypervisor ${kind} is used, not [hypervisor.${section}] of ${configPath}: its keys are read as ${kind}'s`);
  }
  return kind;
}

function warn(message: string): void {
  writeStderr(`vcnet: warning: ${message}\n`);
}

/** The --config file read, a refusal of the file itself named as the flag (the library names it `config`). */
function readConfigFlag(path: string): ReturnType<typeof readKataConfiguration> {
  try {
    return readKataConfiguration(path);
  } catch (error) {
    // The library names its parameter (`path`, for the file, its config.d and drop-ins); a user typed --config.
    if (error instanceof InvalidInputError && error.field === 'path') throw error.underField('--config');
    throw error;
  }
}

/**
 * Refuses a bad --sandbox (or iptables' --sandbox-id) under that flag before the command runs: the
 * library's check names it `sandbox`, the positional argument's name in add-iface and the others.
 */
export function checkSandboxFlags(options: { sandbox?: unknown; sandboxId?: unknown }): void {
  for (const [flag, value] of [
    ['--sandbox', options.sandbox],
    ['--sandbox-id', options.sandboxId],
  ] as const) {
    if (value === undefined) continue;
    try {
      validateSandboxId(value as string);
    } catch (error) {
      if (error instanceof InvalidInputError) throw error.underField(flag);
      throw error;
    }
  }
}

export function networkConfigFromFlags(flags: NetworkFlags): { config: NetworkConfig; hypervisor: HypervisorKind } {
  const kata = flags.config ? readConfigFlag(flags.config) : {};
  const hypervisor = hypervisorOf(flags.hypervisor, kata.hypervisor, flags.config);
  // Given but empty is refused like any other empty value, not taken as "use the default".
  const model = flags.model !== undefined ? parseInterworkingModel(flags.model, '--model') : undefined;
  if (flags.vhostNet !== undefined && flags.vhostNet !== 'auto' && flags.vhostNet !== 'off') {
    throw new InvalidInputError('--vhost-net', flags.vhostNet, 'auto, off');
  }
  const overrides: KataConfigOverrides = {
    ...(model !== undefined ? { model } : {}),
    ...(flags.queues !== undefined ? { queues: parseQueues(flags.queues) } : {}),
    ...(flags.vhostNet !== undefined ? { vhostNet: flags.vhostNet as 'auto' | 'off' } : {}),
    ...(flags.disableNewNetns !== undefined ? { disableNewNetns: flags.disableNewNetns } : {}),
    ...(flags.interface !== undefined ? { namedInterfaces: flags.interface } : {}),
  };
  const namespacePath = flags.netns === undefined ? undefined : openNamespace(flags.netns, '--netns');
  try {
    const config = networkConfigFromKata(kata, {
      hypervisor,
      overrides,
      warn,
      ...(flags.sandbox !== undefined ? { sandbox: flags.sandbox } : {}),
      ...(namespacePath !== undefined ? { namespacePath } : {}),
    });
    // As in Kata, disable_new_netns scans no pod namespace: a --netns would be silently ignored.
    if (config.disableNewNetns && flags.netns !== undefined) {
      throw new InvalidInputError(
        '--netns',
        flags.netns,
        `no --netns with ${flags.disableNewNetns ? '--disable-new-netns' : `disable_new_netns = true (${flags.config})`}: the hypervisor then runs in vcnet's own namespace and no pod namespace is scanned, as in Kata`,
        'drop --netns to attach with disable_new_netns, or drop disable_new_netns to attach the pod namespace',
      );
    }
    if (flags.vhostUserStore === '')
      throw new InvalidInputError('--vhost-user-store', flags.vhostUserStore, 'a directory path');
    return {
      config: {
        ...config,
        ...(flags.vhostUserStore !== undefined ? { vhostUserStorePath: flags.vhostUserStore } : {}),
        ...(flags.tapOwner !== undefined ? { tapOwner: parseTapId(flags.tapOwner, '--tap-owner', 'user') } : {}),
        ...(flags.tapGroup !== undefined ? { tapGroup: parseTapId(flags.tapGroup, '--tap-group', 'group') } : {}),
      },
      hypervisor,
    };
  } catch (error) {
    if (error instanceof ConfigurationConflictError && error.fields.includes('disableNewNetns'))
      throw disableNewNetnsConflict(error, flags, model, kata.model !== undefined);
    // The library names its fields; a CLI user typed flags.
    const flag = error instanceof InvalidInputError ? flagOf(FLAG_OF_KATA_FIELD, error.field) : undefined;
    if (flag === undefined) throw error;
    throw (error as InvalidInputError).underField(flag);
  }
}

/**
 * disable_new_netns with a model other than none, said in the terms each value came from: a flag
 * (`--model none`, drop `--disable-new-netns`) or the configuration file's keys.
 */
function disableNewNetnsConflict(
  error: ConfigurationConflictError,
  flags: NetworkFlags,
  model: string | undefined,
  modelInFile: boolean,
): ConfigurationConflictError {
  const fromFile = (key: string) => `${key} (${flags.config})`;
  const disable = flags.disableNewNetns !== undefined ? '--disable-new-netns' : fromFile('disable_new_netns = true');
  const modelFromFile = model === undefined && modelInFile;
  const got = String(error.value);
  const modelSource =
    model !== undefined
      ? `--model ${got}`
      : modelFromFile
        ? fromFile(`internetworking_model = "${got}"`)
        : `the default model (${got})`;
  const setNone = modelFromFile ? `set internetworking_model = "none" in ${flags.config}` : 'give `--model none`';
  const undo =
    flags.disableNewNetns !== undefined
      ? 'drop `--disable-new-netns`'
      : `set disable_new_netns = false in ${flags.config}`;
  return new ConfigurationConflictError(
    `${disable} works only with the model none (got ${modelSource})`,
    error.value,
    `${setNone}, or ${undo}`,
    error.fields,
  );
}

/**
 * The flag that sets a library field; an item of a list field (namedInterfaces[0]) is the repeatable
 * flag that gave it (--interface).
 */
function flagOf(flags: Record<string, string>, field: string): string | undefined {
  const name = field.replace(/\[\d+\]$/, '');
  return Object.hasOwn(flags, name) ? flags[name] : undefined;
}

/** networkConfigFromKata's field names, as the flags that set them. */
const FLAG_OF_KATA_FIELD: Record<string, string> = {
  model: '--model',
  vhostNet: '--vhost-net',
  hypervisor: '--hypervisor',
  namespacePath: '--netns',
  queues: '--queues',
  namedInterfaces: '--interface',
};

/** The NetworkConfig fields the library names in its errors, and the flags a CLI user typed for them. */
const FLAG_OF_FIELD: Record<string, string> = { namedInterfaces: '--interface', agentSocket: '--agent' };

/** Runs `work`; an InvalidInputError naming a NetworkConfig field is reported under the flag instead. */
export async function inFlagTerms<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const flag = error instanceof InvalidInputError ? flagOf(FLAG_OF_FIELD, error.field) : undefined;
    if (flag === undefined) throw error;
    throw (error as InvalidInputError).underField(flag);
  }
}

/** --lock-timeout <seconds>: how long to wait for another vcnet command on the same sandbox. */
export function parseLockTimeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  return decimalSecondsAsMs('--lock-timeout', text, 3600, 'seconds from 0 to 3600 (fractions allowed)');
}

export const LOCK_TIMEOUT_OPTION = [
  '--lock-timeout <seconds>',
  'wait this long for another vcnet command on the same sandbox, and as long again for one in the same pod namespace (an attach, detach or vcnet-cni ADD or DEL) (default $VCNET_LOCK_TIMEOUT or 30)',
] as const;

/**
 * --json of commands whose result is JSON already (add-iface, del-iface, update-routes, watch): a
 * failure is then the one-line `{"error": ...}` object every command prints (main.ts reportError), so
 * a program can tell SANDBOX_NOT_FOUND from a refused hot-plug without parsing stderr.
 */
export const JSON_ERRORS_OPTION = [
  '--json',
  'on failure, also print the error as one JSON object on stdout (`{"error":{"code":...}}`, as the other commands do); the result is JSON either way',
] as const;
