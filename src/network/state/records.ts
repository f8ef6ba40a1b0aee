/**
 * The schemas of every record vcnet persists (zod), and the one reader that checks a record against
 * them. A corrupt, truncated, foreign or future-version file gives an error naming the file and the
 * field, and nothing is changed or deleted because of it (the operator decides).
 *
 * Kernel objects inside a record (the pod link, its addresses, routes, neighbours) are checked for the
 * fields vcnet reads and keep the rest as the kernel reported it (loose objects).
 */

import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { VcnetError } from '../../errors.js';
import type { NamespaceIdentity } from '../../netns/namespace-identity.js';
import type { GuestRoute } from '../guest.js';
import { INTERWORKING_MODELS } from '../interworking-model.js';
import type { NetworkState } from '../network.js';
import { ENDPOINT_TYPES } from '../network-info.js';
import { namespaceIdentitySchema, RECORD_VERSION } from './record-envelope.js';

/** Sandbox and CNI records share the envelope's version (record-envelope.ts: version, id, namespace identity). */
export const SANDBOX_STATE_VERSION = RECORD_VERSION;
export const NETWORK_STATE_VERSION = 1;
export const ENDPOINT_STATE_VERSION = 1;
export const CNI_STATE_VERSION = RECORD_VERSION;

const integer = z.number().int();
const handle = z.number().int().min(0).max(0xffffffff);

const linkSchema = z.looseObject({
  index: integer,
  name: z.string().min(1),
  type: integer,
  flags: integer,
  mtu: integer,
  group: integer,
  address: z.string().optional(),
  kind: z.string().optional(),
});
const addressSchema = z.looseObject({
  address: z.string().min(1),
  prefixLength: integer.min(0).max(128),
  scope: integer.optional(),
  flags: integer.optional(),
  peer: z.string().optional(),
  broadcast: z.string().optional(),
  label: z.string().optional(),
});
const routeSchema = z.looseObject({
  family: integer.optional(),
  destination: z.string().optional(),
  destinationLength: integer.optional(),
  gateway: z.string().optional(),
  table: integer.optional(),
  protocol: integer.optional(),
  scope: integer.optional(),
  type: integer.optional(),
  flags: integer.optional(),
  priority: integer.optional(),
});
const neighbourSchema = z.looseObject({
  destination: z.string().min(1),
  linkLayerAddress: z.string().optional(),
  state: integer.optional(),
  flags: integer.optional(),
});

export const plumbingStepSchema = z.discriminatedUnion('step', [
  z.object({ step: z.literal('create-link'), name: z.string().min(1), kind: z.string().min(1) }),
  z.object({ step: z.literal('add-qdisc'), link: z.string().min(1), handle, parent: handle, kind: z.string().min(1) }),
  z.object({
    step: z.literal('add-filter'),
    link: z.string().min(1),
    parent: handle,
    priority: integer.min(0).max(0xffff),
    protocol: integer.min(0).max(0xffff),
    kind: z.string().min(1),
  }),
  z.object({
    step: z.literal('change-link'),
    link: z.string().min(1),
    before: z.object({
      address: z.string().optional(),
      mtu: integer.optional(),
      up: z.boolean().optional(),
      name: z.string().optional(),
    }),
  }),
  z.object({ step: z.literal('remove-addresses'), link: z.string().min(1), addresses: z.array(addressSchema) }),
  z.object({ step: z.literal('remove-routes'), link: z.string().min(1), routes: z.array(routeSchema) }),
  z.object({ step: z.literal('remove-neighbours'), link: z.string().min(1), neighbours: z.array(neighbourSchema) }),
]);

export const endpointStateSchema = z.object({
  version: z.literal(ENDPOINT_STATE_VERSION),
  type: z.enum(ENDPOINT_TYPES),
  index: integer.min(0),
  name: z.string(),
  properties: z.looseObject({
    link: linkSchema,
    addresses: z.array(addressSchema),
    routes: z.array(routeSchema),
    neighbours: z.array(neighbourSchema),
  }),
  pair: z.looseObject({ name: z.string(), tap: z.looseObject({ name: z.string().min(1) }) }).optional(),
  plumbing: z
    .object({
      model: z.enum(['tcfilter', 'macvtap', 'none', 'existing', 'pending']),
      steps: z.array(plumbingStepSchema),
      tapName: z.string(),
      tapIndex: integer.min(0),
      tapDevicePath: z.string().optional(),
      guestHardwareAddress: z.string(),
      queues: integer.min(1),
    })
    .optional(),
  pciPath: z.string().optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});

export const networkConfigSchema = z.looseObject({
  namespacePath: z.string().min(1),
  model: z.enum(INTERWORKING_MODELS.filter((model) => model !== 'default') as ['macvtap', 'tcfilter', 'none']),
  namespaceCreatedByVcnet: z.boolean(),
  disableNewNetns: z.boolean(),
  queues: integer.min(1).max(256),
  vhostNet: z.enum(['auto', 'off']),
});

export const networkStateSchema = z.object({
  version: z.literal(NETWORK_STATE_VERSION),
  config: networkConfigSchema,
  endpoints: z.array(endpointStateSchema),
});

export interface HypervisorRecord {
  kind: 'qemu' | 'clh' | 'firecracker';
  controlSocket?: string;
}

/** The record of a sandbox attached by the CLI or the library. */
export interface SandboxState {
  version: typeof SANDBOX_STATE_VERSION;
  id: string;
  /** The pod namespace by path and identity: later commands act on it only if it is still that one. */
  namespace: NamespaceIdentity;
  createdAt: string;
  network: NetworkState;
  hypervisor?: HypervisorRecord;
  agentSocket?: string;
  /** Routes given with update-routes, which replace the ones derived from the namespace. */
  guestRoutes?: GuestRoute[];
}

export const sandboxStateSchema = z.looseObject({
  version: z.literal(SANDBOX_STATE_VERSION),
  id: z.string().min(1),
  namespace: namespaceIdentitySchema,
  createdAt: z.string(),
  network: networkStateSchema,
  hypervisor: z
    .object({ kind: z.enum(['qemu', 'clh', 'firecracker']), controlSocket: z.string().optional() })
    .optional(),
  agentSocket: z.string().optional(),
  guestRoutes: z.array(z.looseObject({ dest: z.string(), device: z.string() })).optional(),
});

/** Any JSON object (records read without a schema). */
export const anyObject = z.looseObject({});

export const cniAttachmentStateSchema = z.looseObject({
  version: z.literal(CNI_STATE_VERSION),
  id: z.string().min(1),
  namespace: namespaceIdentitySchema,
  interfaceName: z.string().min(1),
  networkName: z.string(),
  createdAt: z.string(),
  device: z.object({ name: z.string().min(1), mac: z.string(), kind: z.enum(['tap', 'macvtap']) }).optional(),
  network: networkStateSchema,
});

/** A record on disk that cannot be used as it is: names the file, the field and what is wrong. */
export class StateRecordError extends VcnetError {
  readonly path: string;
  readonly field: string;
  constructor(path: string, field: string, problem: string, hint?: string) {
    super('VCNET_STATE_INVALID', `state file ${path}: ${field ? `${field}: ` : ''}${problem}`, {
      value: { path, field },
      hint:
        hint ??
        'the file was truncated, edited, or written by another program; vcnet changed nothing: repair or move it, then run `vcnet gc`',
    });
    this.path = path;
    this.field = field;
  }
}

function fieldOf(path: readonly PropertyKey[]): string {
  return path
    .map((key, position) => (typeof key === 'number' ? `[${key}]` : `${position === 0 ? '' : '.'}${String(key)}`))
    .join('');
}

/**
 * Checks parsed JSON against a record schema. The version is looked at first, so a record from a
 * newer vcnet says so instead of listing every field it does not know.
 */
export function checkRecord<T>(
  path: string,
  value: unknown,
  schema: z.ZodType,
  version: number,
  options: { versionless?: boolean } = {},
): T {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new StateRecordError(
      path,
      '',
      `not a vcnet record (a JSON ${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value})`,
    );
  }
  const found = (value as { version?: unknown }).version;
  if (options.versionless) return value as T;
  if (typeof found !== 'number') {
    throw new StateRecordError(
      path,
      'version',
      `missing (got ${JSON.stringify(found) ?? 'nothing'}): not a vcnet record`,
    );
  }
  if (found !== version) {
    throw new StateRecordError(
      path,
      'version',
      `${found} is not ${version}, the version this vcnet reads`,
      found > version
        ? 'the record was written by a newer vcnet: use that version to detach it'
        : 'the record was written by an older vcnet that this one cannot read',
    );
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new StateRecordError(path, fieldOf(issue.path), issue.message);
  }
  return value as T;
}

/** Reads and checks a record file; undefined when it does not exist. Never changes the file. */
export function readRecord<T>(
  path: string,
  schema: z.ZodType,
  version: number,
  options: { versionless?: boolean } = {},
): T | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new StateRecordError(
      path,
      '',
      `not valid JSON (${text.length === 0 ? 'empty file' : (error as Error).message})`,
    );
  }
  return checkRecord<T>(path, parsed, schema, version, options);
}

export const SANDBOX_RECORD = { schema: sandboxStateSchema, version: SANDBOX_STATE_VERSION };
export const CNI_RECORD = { schema: cniAttachmentStateSchema, version: CNI_STATE_VERSION };
