/**
 * What a CNI runtime hands vcnet-cni: the CNI_* environment variables and the network configuration
 * on stdin, validated here before anything touches the kernel. Unknown top-level keys are allowed
 * (runtimes inject runtimeConfig, args, capabilities); inside vcnet's own objects they are refused.
 */
import { isAbsolute } from 'node:path';
import * as z from 'zod';
import { closestName } from '../arguments.js';
import { describeGivenValue, type InvalidInputError, jsonParseProblem } from '../errors.js';
import { INTERWORKING_MODELS, type InterworkingModel, parseInterworkingModel } from '../network/interworking-model.js';
import type { RateLimit } from '../network/plan/types.js';
import { MIN_BITS_PER_SECOND } from '../network/rate-limit.js';
import { namesFilesystemRoot } from '../network/state/absolute-path.js';
import { DEFAULT_CNI_STATE_DIRECTORY } from '../network/state/default-directories.js';
import { MAX_TAP_ID, parseTapId } from '../network/tap-owner.js';
import { PARSE_OPTIONS } from '../parse-options.js';
import { MAX_QUEUES, QUEUES_ACCEPTED } from '../queue-limits.js';
import { CniConfigError, CniEnvironmentError, CniError } from './errors.js';
import {
  commandAllowed,
  isSupportedCniVersion,
  normalizeResult,
  PREFERRED_CNI_VERSION,
  SUPPORTED_CNI_VERSIONS,
  type SupportedCniVersion,
} from './version.js';

/** How long ADD/DEL/CHECK wait for another vcnet-cni working on the same container (then code 11). */
export const DEFAULT_CNI_LOCK_TIMEOUT_MS = 10_000;

const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];
/** Commands about the plugin or the whole network, not one container: no CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS. */
const NETWORK_WIDE_COMMANDS: readonly CniCommand[] = ['STATUS', 'GC'];

// ---- environment ----

export interface CniEnvironment {
  command: CniCommand;
  containerId: string;
  /** Absent only for DEL, where the spec makes it optional (the namespace may be gone already). */
  namespacePath?: string;
  interfaceName: string;
  /** Directories of CNI_PATH; vcnet-cni delegates to no other plugin, so it is recorded, not used. */
  pluginPath: string[];
}

/** The spec's container id rule, capped at the length vcnet's state store accepts. */
const CONTAINER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** IFNAMSIZ less its NUL: the longest name the kernel takes, in bytes. */
const MAX_INTERFACE_NAME_BYTES = 15;
export const INTERFACE_NAME_ACCEPTED = `an interface name of 1 to ${MAX_INTERFACE_NAME_BYTES} bytes without "/", ":" or whitespace, other than "." and ".."`;

/**
 * What is wrong with CNI_IFNAME, or undefined: libcni's ValidateInterfaceName rules (the kernel's
 * own), no stricter, so any name a runtime sends to bridge reaches vcnet-cni too. They also keep the
 * name usable as one directory of the state path (no "/", never "." or "..").
 */
export function interfaceNameProblem(name: string | undefined): string | undefined {
  if (!name) return 'missing';
  if (name === '.' || name === '..')
    return `"${name}" names a directory (the state path would leave <container>/interfaces/), and the kernel refuses it as an interface name`;
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_INTERFACE_NAME_BYTES) return `${bytes} bytes, more than ${MAX_INTERFACE_NAME_BYTES}`;
  const bad = /[/:\s]/u.exec(name)?.[0];
  if (bad !== undefined) return `it contains ${JSON.stringify(bad)}`;
  return undefined;
}

export function parseEnvironment(env: Record<string, string | undefined>): CniEnvironment {
  const command = env.CNI_COMMAND;
  if (!(CNI_COMMANDS as readonly (string | undefined)[]).includes(command)) {
    throw new CniEnvironmentError('CNI_COMMAND', command, CNI_COMMANDS.join(', '));
  }
  const cniCommand = command as CniCommand;
  const pluginPath = (env.CNI_PATH ?? '').split(':').filter((directory) => directory.length > 0);
  if (cniCommand === 'VERSION') return { command: cniCommand, containerId: '', interfaceName: '', pluginPath };
  if (NETWORK_WIDE_COMMANDS.includes(cniCommand)) {
    // GC requires CNI_PATH (for delegated plugins); vcnet-cni delegates to none, so it is not enforced.
    return { command: cniCommand, containerId: '', interfaceName: '', pluginPath };
  }

  const containerId = env.CNI_CONTAINERID;
  if (!containerId || !CONTAINER_ID_PATTERN.test(containerId)) {
    throw new CniEnvironmentError(
      'CNI_CONTAINERID',
      containerId,
      'letters, digits, "_", "." and "-", starting with a letter or digit, at most 128',
    );
  }
  const interfaceName = env.CNI_IFNAME;
  const interfaceProblem = interfaceNameProblem(interfaceName);
  if (interfaceProblem !== undefined || !interfaceName) {
    throw new CniEnvironmentError('CNI_IFNAME', interfaceName, INTERFACE_NAME_ACCEPTED, interfaceProblem);
  }
  const namespacePath = env.CNI_NETNS;
  if (namespacePath || cniCommand !== 'DEL') {
    if (!namespacePath || !isAbsolute(namespacePath)) {
      throw new CniEnvironmentError(
        'CNI_NETNS',
        namespacePath,
        'an absolute namespace path such as /var/run/netns/NAME',
      );
    }
  }
  // The spec requires CNI_PATH for ADD and CHECK; DEL goes ahead without it, since cleaning up matters more.
  if (cniCommand !== 'DEL' && pluginPath.length === 0) {
    throw new CniEnvironmentError('CNI_PATH', env.CNI_PATH, 'a list of plugin directories separated by ":"');
  }
  return {
    command: cniCommand,
    containerId,
    interfaceName,
    pluginPath,
    ...(namespacePath ? { namespacePath } : {}),
  };
}

// ---- network configuration ----

// Every check carries our own text (what the field accepts): zod's own wording ("Invalid input:
// expected object, received null", "Too big: expected number to be <=2147483647") is never shown.
const previousInterfaceSchema = z.looseObject(
  {
    name: z.string({ error: 'a string' }).min(1, { error: 'a non-empty interface name' }),
    mac: z.string({ error: 'a string' }).optional(),
    sandbox: z.string({ error: 'a string' }).optional(),
  },
  { error: 'an interface object such as {"name": "eth0", "mac": "...", "sandbox": "/var/run/netns/..."}' },
);

/** The result of the plugins before vcnet-cni; kept as given (fields of any spec version pass through). */
const previousResultSchema = z.looseObject(
  {
    cniVersion: z.string({ error: 'a string' }).optional(),
    interfaces: z.array(previousInterfaceSchema, { error: 'a list of interfaces' }).optional(),
    ips: z
      .array(
        z.looseObject(
          { address: z.string({ error: 'a CIDR string' }) },
          { error: 'an IP object such as {"address": "10.0.0.2/24"}' },
        ),
        { error: 'a list of IP objects' },
      )
      .optional(),
    routes: z
      .array(
        z.looseObject(
          { dst: z.string({ error: 'a CIDR string' }) },
          { error: 'a route object such as {"dst": "0.0.0.0/0"}' },
        ),
        { error: 'a list of route objects' },
      )
      .optional(),
    dns: z.looseObject({}, { error: 'an object' }).optional(),
  },
  { error: 'an object (the result of the previous plugin)' },
);

const bitsPerSecond = z
  .int({ error: 'a whole number of bits per second' })
  .min(0, { error: 'a whole number of bits per second (0 = no limit)' })
  // Below 8 bits htb's rate is 0 bytes per second, which the kernel refuses only at attach.
  .refine((value) => value === 0 || value >= MIN_BITS_PER_SECOND, {
    error: `0 (off) or at least ${MIN_BITS_PER_SECOND} bits per second`,
  });

/** tapOwner/tapGroup: a number in range or a name, one text for every way a value misses. */
const tapId = (accepted: string) =>
  z
    .union(
      [
        z.int({ error: accepted }).min(0, { error: accepted }).max(MAX_TAP_ID, { error: accepted }),
        z.string({ error: accepted }),
      ],
      { error: accepted },
    )
    .optional();

/** The spec's network name rule. */
const NETWORK_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/**
 * Not "/" (ADD would record into /<container> and STATUS make /.locks), and no NUL byte (which Node
 * refuses in its own words when the directory is made).
 */
function usableStateDirectory(path: string): boolean {
  return !path.includes('\0') && !namesFilesystemRoot(path);
}

const configSchema = z.looseObject(
  {
    cniVersion: z.string({ error: 'a CNI version string' }),
    name: z
      .string({ error: 'a string' })
      .regex(NETWORK_NAME_PATTERN, { error: 'letters, digits, "_", "." and "-", starting with a letter or digit' }),
    type: z.string({ error: 'a string' }).min(1, { error: 'the plugin name (vcnet-cni)' }),
    model: z.enum(INTERWORKING_MODELS, { error: `one of ${INTERWORKING_MODELS.join(', ')}` }).default('default'),
    queues: z
      .int({ error: QUEUES_ACCEPTED })
      .min(1, { error: QUEUES_ACCEPTED })
      .max(MAX_QUEUES, { error: QUEUES_ACCEPTED })
      .default(1),
    tapOwner: tapId(`a uid (0 to ${MAX_TAP_ID}) or a user name`),
    tapGroup: tapId(`a gid (0 to ${MAX_TAP_ID}) or a group name`),
    stateDir: z
      .string({ error: 'an absolute directory path' })
      .refine(isAbsolute, { error: 'an absolute directory path' })
      .refine((path) => !isAbsolute(path) || usableStateDirectory(path), {
        error: 'an absolute directory path other than "/", without NUL bytes',
      })
      .default(DEFAULT_CNI_STATE_DIRECTORY),
    rateLimit: z
      .strictObject({ rx: bitsPerSecond.optional(), tx: bitsPerSecond.optional() }, { error: 'an object {rx, tx}' })
      .optional(),
    lockTimeoutMs: z
      .int({ error: 'a whole number of milliseconds' })
      .min(0, { error: 'a whole number of milliseconds' })
      .max(600_000, { error: 'at most 600000 milliseconds' })
      .default(DEFAULT_CNI_LOCK_TIMEOUT_MS),
    prevResult: previousResultSchema.optional(),
  },
  { error: 'a JSON object (the network configuration)' },
);

/** Top-level keys the CNI spec defines (and GC's, which libcni adds): never taken for a misspelt option. */
const CNI_SPEC_KEYS = new Set([
  'cniVersion',
  'name',
  'type',
  'args',
  'ipMasq',
  'ipam',
  'dns',
  'capabilities',
  'runtimeConfig',
  'prevResult',
  'cni.dev/valid-attachments',
  'cni.dev/attachments',
]);

/**
 * A warning for each top-level key that is not one vcnet-cni reads but is a near miss of one
 * ("modle", "StateDir"): unknown keys are allowed (runtimes and other tools add theirs), so such a
 * typo would otherwise leave the option at its default without a word.
 */
export function misspeltConfigKeys(raw: Record<string, unknown>): string[] {
  const known = Object.keys(configSchema.shape).filter((key) => !CNI_SPEC_KEYS.has(key));
  const warnings: string[] = [];
  for (const key of Object.keys(raw)) {
    if (known.includes(key) || CNI_SPEC_KEYS.has(key)) continue;
    const meant = closestName(key, known);
    if (meant !== undefined) {
      warnings.push(
        `network config key ${JSON.stringify(key)} is not one vcnet-cni reads, so it is ignored: did you mean ${JSON.stringify(meant)}?`,
      );
    }
  }
  return warnings;
}

export type PreviousResult = z.infer<typeof previousResultSchema>;
export type CniInterface = z.infer<typeof previousInterfaceSchema>;

export interface CniConfig {
  cniVersion: SupportedCniVersion;
  name: string;
  type: string;
  model: InterworkingModel;
  queues: number;
  /** The uid/gid every tap gets (default: the plugin's euid/egid, 0 as the runtime runs it). */
  tapOwner?: number;
  tapGroup?: number;
  stateDirectory: string;
  rateLimit?: RateLimit;
  lockTimeoutMs: number;
  prevResult?: PreviousResult;
}

/**
 * How deep a network config may nest. A runtime's is a few levels deep (prevResult's interfaces,
 * runtimeConfig's port mappings); JSON.parse takes any depth, but JSON.stringify, which writes ADD's
 * result (prevResult passed through), overflows the stack at a few thousand: ADD then failed with
 * "Maximum call stack size exceeded" (code 999) after it had attached, leaving the tap and its record.
 */
export const MAX_CONFIG_DEPTH = 100;

/** The path to the first value nested deeper than MAX_CONFIG_DEPTH, or undefined (walked without recursion). */
function tooDeepPath(root: unknown): PropertyKey[] | undefined {
  const pending: Array<{ value: unknown; path: PropertyKey[] }> = [{ value: root, path: [] }];
  while (pending.length > 0) {
    const { value, path } = pending.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (path.length >= MAX_CONFIG_DEPTH) return path;
    for (const [key, inner] of Object.entries(value)) {
      pending.push({ value: inner, path: [...path, Array.isArray(value) ? Number(key) : key] });
    }
  }
  return undefined;
}

/** stdin as a JSON object, at any depth (DEL reads only its stateDir and lockTimeoutMs). */
function parseConfigObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CniError(
      'VCNET_CNI_DECODE',
      `network config on stdin is not valid JSON: ${jsonParseProblem(text, error)}`,
      {
        value: text.slice(0, 200),
        hint: 'the runtime passes the network configuration as JSON on stdin',
      },
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CniError('VCNET_CNI_DECODE', 'network config on stdin is not an object', {
      value,
      hint: 'the runtime passes the network configuration as a JSON object on stdin',
    });
  }
  return value as Record<string, unknown>;
}

/** Parses stdin as JSON (code 6 when it is not a JSON object, or nests deeper than ADD could write back). */
export function decodeConfig(text: string): Record<string, unknown> {
  const raw = parseConfigObject(text);
  const deep = tooDeepPath(raw);
  if (deep !== undefined) {
    const shown = fieldName(deep.slice(0, 4));
    throw new CniError(
      'VCNET_CNI_DECODE',
      `network config on stdin nests deeper than ${MAX_CONFIG_DEPTH} levels (at ${shown}...)`,
      {
        value: shown,
        hint: `a network config is a few levels deep: check what the runtime or the plugins before vcnet-cni put in ${JSON.stringify(String(deep[0]))}`,
      },
    );
  }
  return raw;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let current = input;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

function fieldName(path: readonly PropertyKey[]): string {
  return path
    .map((key, position) => (typeof key === 'number' ? `[${key}]` : `${position ? '.' : ''}${String(key)}`))
    .join('');
}

const PREVIOUS_RESULT_HINT =
  "the runtime passes the previous plugin's result as prevResult: check the plugins before vcnet-cni in the conflist (their versions and output)";

/** A conflist's tapOwner/tapGroup as a number: a name is looked up as `vcnet attach --tap-owner` looks it up. */
function tapIdOf(value: number | string, field: string, kind: 'user' | 'group'): number {
  if (typeof value === 'number') return value;
  try {
    return parseTapId(value, field, kind);
  } catch (error) {
    const invalid = error as InvalidInputError;
    throw new CniConfigError(field, value, `expected ${invalid.accepted}`, invalid.hint);
  }
}

/** Validates a decoded network config: code 1 for a version vcnet-cni does not speak, 2 or 7 naming the field. */
export function parseCniConfig(raw: Record<string, unknown>): CniConfig {
  // A conflist without cniVersion: libcni passes "" (another runtime may pass none), which CNI's
  // plugins read as 0.1.0 (bridge answers with 0.1.0's "ip4" result). Said as what it is: the
  // version the user left out, not a version "" they gave.
  if (raw.cniVersion === undefined || raw.cniVersion === '') {
    throw new CniError(
      'VCNET_CNI_VERSION',
      `the conflist names no cniVersion (the runtime passed ${raw.cniVersion === '' ? '""' : 'none'}), which CNI reads as 0.1.0: vcnet-cni supports ${SUPPORTED_CNI_VERSIONS.join(', ')}`,
      {
        value: raw.cniVersion,
        hint: `add "cniVersion": "${PREFERRED_CNI_VERSION}" to the conflist (the plugins before vcnet-cni then answer in ${PREFERRED_CNI_VERSION} too, not with 0.1.0's "ip4" result); a conflist that lists only cniVersions (CNI 1.1) needs a runtime whose libcni chooses from that list, and an older one passes none: keep cniVersion beside it`,
      },
    );
  }
  if (!isSupportedCniVersion(raw.cniVersion)) {
    throw new CniError(
      'VCNET_CNI_VERSION',
      `incompatible CNI version ${describeGivenValue(raw.cniVersion)}: vcnet-cni supports ${SUPPORTED_CNI_VERSIONS.join(', ')}`,
      { value: raw.cniVersion, hint: `set "cniVersion" of the conflist to ${PREFERRED_CNI_VERSION}` },
    );
  }
  const parsed = configSchema.safeParse(raw, PARSE_OPTIONS);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0]!;
      const field = fieldName([...issue.path, key]);
      const error = new CniError(
        'VCNET_CNI_UNSUPPORTED_FIELD',
        `unsupported field in network config: ${field} = ${describeGivenValue(valueAt(raw, [...issue.path, key]))}`,
        { value: field, hint: `remove "${field}"; ${fieldName(issue.path)} accepts rx and tx (bits per second)` },
      );
      throw error;
    }
    const value = valueAt(raw, issue.path);
    throw new CniConfigError(
      fieldName(issue.path),
      value,
      value === undefined ? `missing, expected ${issue.message}` : `expected ${issue.message}`,
      // Nobody writes prevResult in a conflist: the runtime passes the result of the plugin before.
      issue.path[0] === 'prevResult' ? PREVIOUS_RESULT_HINT : undefined,
    );
  }
  const config = parsed.data;
  const previousVersion = config.prevResult?.cniVersion;
  if (previousVersion !== undefined && !isSupportedCniVersion(previousVersion)) {
    throw new CniError(
      'VCNET_CNI_VERSION',
      `incompatible CNI version of prevResult ${JSON.stringify(previousVersion)}: vcnet-cni reads ${SUPPORTED_CNI_VERSIONS.join(', ')}`,
      { value: previousVersion, hint: 'the runtime passes prevResult in the version of the conflist' },
    );
  }
  const rx = config.rateLimit?.rx || undefined;
  const tx = config.rateLimit?.tx || undefined;
  return {
    cniVersion: config.cniVersion as SupportedCniVersion,
    name: config.name,
    type: config.type,
    model: parseInterworkingModel(config.model, 'model'),
    queues: config.queues,
    ...(config.tapOwner !== undefined ? { tapOwner: tapIdOf(config.tapOwner, 'tapOwner', 'user') } : {}),
    ...(config.tapGroup !== undefined ? { tapGroup: tapIdOf(config.tapGroup, 'tapGroup', 'group') } : {}),
    stateDirectory: config.stateDir,
    lockTimeoutMs: config.lockTimeoutMs,
    ...(rx || tx
      ? { rateLimit: { ...(rx ? { rxBitsPerSecond: rx } : {}), ...(tx ? { txBitsPerSecond: tx } : {}) } }
      : {}),
    // Read in any version, kept in the 1.x shape; plugin.ts writes the result in the version asked for.
    ...(config.prevResult ? { prevResult: normalizeResult(config.prevResult) } : {}),
  };
}

/** CHECK needs a 0.4.0+ config, STATUS and GC a 1.1.0 one (code 1 otherwise, as libcni's skel answers). */
export function requireCommandInVersion(command: CniCommand, version: SupportedCniVersion): void {
  if (commandAllowed(command, version)) return;
  throw new CniError('VCNET_CNI_VERSION', `CNI ${command} is not part of cniVersion ${version}`, {
    value: version,
    hint: `${command} needs a conflist of cniVersion ${command === 'CHECK' ? '0.4.0' : '1.1.0'} or later`,
  });
}

// ---- DEL ----

/** What DEL needs, and nothing else: which attachment, where it is recorded, how long to wait for the lock. */
export interface DeleteTarget {
  environment: CniEnvironment;
  stateDirectory: string;
  lockTimeoutMs: number;
}

/**
 * DEL reads only the container, the interface and the state directory. Any other option, valid or
 * not, is ignored: ADD refused a bad one, and a DEL that failed on it would stop the chain before
 * the IPAM plugin frees the pod's address. Undefined when nothing can be recorded for this input
 * (no usable container id or interface name, or a stateDir ADD would have refused): DEL succeeds.
 */
export function parseDeleteTarget(input: string, env: Record<string, string | undefined>): DeleteTarget | undefined {
  const containerId = env.CNI_CONTAINERID;
  const interfaceName = env.CNI_IFNAME;
  if (!containerId || !CONTAINER_ID_PATTERN.test(containerId)) return undefined;
  if (!interfaceName || interfaceNameProblem(interfaceName) !== undefined) return undefined;
  let raw: Record<string, unknown> = {};
  try {
    raw = parseConfigObject(input);
  } catch {
    // Undecodable input: the default state directory is the only place a record can be.
  }
  const stateDir = raw.stateDir ?? DEFAULT_CNI_STATE_DIRECTORY;
  if (typeof stateDir !== 'string' || !isAbsolute(stateDir) || !usableStateDirectory(stateDir)) return undefined;
  const lockTimeout = configSchema.shape.lockTimeoutMs.safeParse(raw.lockTimeoutMs, PARSE_OPTIONS);
  const namespacePath = env.CNI_NETNS;
  return {
    environment: {
      command: 'DEL',
      containerId,
      interfaceName,
      pluginPath: (env.CNI_PATH ?? '').split(':').filter((directory) => directory.length > 0),
      ...(namespacePath ? { namespacePath } : {}),
    },
    stateDirectory: stateDir,
    lockTimeoutMs: lockTimeout.success ? lockTimeout.data : DEFAULT_CNI_LOCK_TIMEOUT_MS,
  };
}

/** ADD and CHECK need the previous plugin's result: vcnet-cni only ever follows an interface plugin. */
export function requirePreviousResult(config: CniConfig, command: CniCommand): PreviousResult {
  if (config.prevResult) return config.prevResult;
  throw new CniConfigError(
    'prevResult',
    undefined,
    `missing: vcnet-cni is a chained plugin and ${command} needs the result of the plugin before it`,
    'list vcnet-cni after an interface plugin (bridge, ptp, macvlan...) in the "plugins" of a conflist',
  );
}
