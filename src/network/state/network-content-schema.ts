/**
 * Schemas of what today's records hold inside the envelope (record-envelope.ts): the network of a
 * sandbox (config, endpoints and the plumbing steps undo replays) and the extra fields of a
 * `vcnet attach` record and of a vcnet-cni record. Kept apart from the envelope because the content
 * follows the attach engine while the envelope follows the store.
 */
import * as z from 'zod';
import { INTERWORKING_MODELS } from '../interworking-model.js';
import { ENDPOINT_TYPES } from '../network-info.js';
import { ENDPOINT_STATE_VERSION, NETWORK_STATE_VERSION } from './content-versions.js';

const name = z.string({ error: 'a name' }).min(1, { error: 'a name' });
const whole = z.int({ error: 'a whole number' }).nonnegative({ error: 'a whole number' });
const integer = z.int({ error: 'a whole number' });
const tcHandle = whole.max(0xffffffff, { error: 'a 32-bit tc handle' });
const sixteenBits = whole.max(0xffff, { error: 'a 16-bit number' });
const listOf = <T extends z.ZodType>(schema: T, what: string) => z.array(schema, { error: `a list of ${what}` });

// Kernel objects are checked for the fields vcnet reads back, and keep the rest as the kernel gave it.
const linkSchema = z.looseObject({ index: whole, name, type: integer, flags: integer, mtu: integer, group: integer });
const u32 = whole.max(0xffffffff, { error: 'a 32-bit number' });
const addressSchema = z.looseObject({
  address: name,
  prefixLength: whole.max(128, { error: 'a prefix length from 0 to 128' }),
  scope: integer.optional(),
  flags: integer.optional(),
  peer: z.string().optional(),
  broadcast: z.string().optional(),
  label: z.string().optional(),
  validUntil: whole.optional(),
  preferredUntil: whole.optional(),
  routePriority: u32.optional(),
  withoutPrefixRoute: z.boolean().optional(),
});
// Route metrics by RTAX_* number: u32 values, and a congestion control name for RTAX_CC_ALGO.
const routeMetricsSchema = z.record(
  z.string().regex(/^[1-9]\d{0,2}$/, { error: 'an RTAX_* metric number' }),
  z.union([u32, z.string()], { error: 'a 32-bit number or a name' }),
  { error: 'metrics by RTAX_* number' },
);
// A multipath next hop: on the record's link, or on another link kept by name and index.
const nextHopSchema = z.looseObject({
  gateway: z.string().optional(),
  weight: whole.min(1).max(256, { error: 'a weight from 1 to 256' }).optional(),
  flags: integer.optional(),
  realm: u32.optional(),
  link: z.looseObject({ name, index: whole }).optional(),
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
  mtu: u32.optional(),
  metrics: routeMetricsSchema.optional(),
  realm: u32.optional(),
  preference: whole.max(255, { error: 'an RTA_PREF value' }).optional(),
  expiresAt: whole.optional(),
  tos: whole.max(255, { error: 'a TOS byte' }).optional(),
  nextHops: listOf(nextHopSchema, 'next hops').optional(),
});
const neighbourSchema = z.looseObject({
  destination: name,
  linkLayerAddress: z.string().optional(),
  state: integer.optional(),
  flags: integer.optional(),
  protocol: whole.max(255, { error: 'an NDA_PROTOCOL value' }).optional(),
});

/** A pod link's ifindex, its identity in the namespace (records before it kept only the name). */
const podLinkIndex = whole.optional();
const linkAttributesSchema = z.looseObject({
  address: z.string().optional(),
  mtu: whole.optional(),
  up: z.boolean().optional(),
  name: z.string().optional(),
  qdisc: z.literal('noop', { error: '"noop"' }).optional(),
  txQueueLength: whole.optional(),
  ipv6AddressGeneration: z
    .enum(['eui64', 'none', 'stable-privacy', 'random'], { error: 'eui64, none, stable-privacy or random' })
    .optional(),
});

export const plumbingStepSchema = z.discriminatedUnion(
  'step',
  [
    // index: the made link's ifindex (records journaled before it existed, and older ones, lack it).
    z.looseObject({ step: z.literal('create-link'), name, kind: name, index: podLinkIndex }),
    z.looseObject({
      step: z.literal('add-qdisc'),
      link: name,
      index: podLinkIndex,
      handle: tcHandle,
      parent: tcHandle,
      kind: name,
    }),
    z.looseObject({
      step: z.literal('add-filter'),
      link: name,
      index: podLinkIndex,
      parent: tcHandle,
      priority: sixteenBits,
      protocol: sixteenBits,
      kind: name,
      redirectTo: z.looseObject({ link: name, index: podLinkIndex }).optional(),
    }),
    z.looseObject({
      step: z.literal('change-link'),
      link: name,
      index: podLinkIndex,
      before: linkAttributesSchema,
      set: linkAttributesSchema.optional(),
    }),
    z.looseObject({
      step: z.literal('remove-addresses'),
      link: name,
      index: podLinkIndex,
      addresses: listOf(addressSchema, 'addresses'),
    }),
    z.looseObject({
      step: z.literal('remove-routes'),
      link: name,
      index: podLinkIndex,
      routes: listOf(routeSchema, 'routes'),
    }),
    z.looseObject({
      step: z.literal('remove-neighbours'),
      link: name,
      index: podLinkIndex,
      neighbours: listOf(neighbourSchema, 'neighbours'),
    }),
  ],
  {
    error:
      'a plumbing step (create-link, add-qdisc, add-filter, change-link, remove-addresses, remove-routes, remove-neighbours)',
  },
);

export const endpointStateSchema = z.looseObject({
  version: z.literal(ENDPOINT_STATE_VERSION, { error: String(ENDPOINT_STATE_VERSION) }),
  type: z.enum(ENDPOINT_TYPES, { error: ENDPOINT_TYPES.join(', ') }),
  index: whole,
  name,
  properties: z.looseObject({
    link: linkSchema,
    addresses: listOf(addressSchema, 'addresses'),
    routes: listOf(routeSchema, 'routes'),
    neighbours: listOf(neighbourSchema, 'neighbours'),
  }),
  deviceMtu: whole.optional(),
  plumbing: z
    .looseObject({
      model: z.enum(['tcfilter', 'macvtap', 'none', 'existing', 'pending'], {
        error: 'tcfilter, macvtap, none, existing, pending',
      }),
      steps: z.array(plumbingStepSchema, { error: 'the list of plumbing steps undo replays' }),
      tapName: z.string({ error: 'the tap name' }),
      tapIndex: whole,
      guestHardwareAddress: z.string({ error: 'a MAC address' }),
      queues: z.int({ error: 'queues from 1 to 256' }).min(1).max(256),
    })
    .optional(),
});

export const networkConfigSchema = z.looseObject({
  namespacePath: z
    .string({ error: 'an absolute namespace path' })
    .min(1, { error: 'an absolute namespace path' })
    .startsWith('/', { error: 'an absolute namespace path' }),
  model: z.enum(INTERWORKING_MODELS, { error: INTERWORKING_MODELS.join(', ') }),
  namespaceCreatedByVcnet: z.boolean({ error: 'true or false' }),
  disableNewNetns: z.boolean({ error: 'true or false' }),
  queues: z
    .int({ error: 'an integer from 1 to 256' })
    .min(1, { error: 'an integer from 1 to 256' })
    .max(256, { error: 'an integer from 1 to 256' }),
  vhostNet: z.enum(['auto', 'off'], { error: 'auto, off' }),
  tapOwner: z.int({ error: 'a uid' }).min(0).max(0x7fffffff).optional(),
  tapGroup: z.int({ error: 'a gid' }).min(0).max(0x7fffffff).optional(),
});

export const networkStateSchema = z.looseObject({
  version: z.literal(NETWORK_STATE_VERSION, { error: String(NETWORK_STATE_VERSION) }),
  config: networkConfigSchema,
  endpoints: z.array(endpointStateSchema, { error: 'the list of attached endpoints' }),
});

/** A record's network must act on the namespace its envelope names, or the identity check means nothing. */
const samePath = (record: { namespace?: { path?: unknown }; network: { config: { namespacePath: string } } }) =>
  record.namespace?.path === record.network.config.namespacePath;
const samePathIssue = {
  error: 'the same path as namespace.path',
  path: ['network', 'config', 'namespacePath'],
};

/** What `vcnet attach` records besides the envelope. */
export const sandboxContentSchema = z
  .looseObject({
    network: networkStateSchema,
    hypervisor: z
      .looseObject({
        kind: z.enum(['qemu', 'clh', 'firecracker'], { error: 'qemu, clh, firecracker' }),
        controlSocket: z.string().optional(),
      })
      .optional(),
    agentSocket: z.string({ error: 'a socket path' }).optional(),
    nextDeviceIndex: whole.optional(),
    guestRoutes: z.array(z.looseObject({}), { error: 'a list of routes' }).optional(),
    attaching: z.literal(true, { error: 'true, or absent' }).optional(),
  })
  .refine(samePath, samePathIssue);

/** What vcnet-cni records besides the envelope (whose id is the container id). */
export const cniContentSchema = z
  .looseObject({
    interfaceName: name,
    networkName: z.string({ error: 'the CNI network name' }),
    device: z
      .looseObject({
        name,
        mac: z.string({ error: 'a MAC address' }),
        kind: z.enum(['tap', 'macvtap'], { error: 'tap, macvtap' }),
      })
      .optional(),
    network: networkStateSchema,
  })
  .refine(samePath, samePathIssue);

/**
 * The links a record's steps create: gc never deletes one of these in the record's namespace. One
 * with its ifindex recorded is claimed by that index (a rename keeps it); one without (journaled
 * before it existed, or by an older build) by its name.
 */
export function createdLinks(network: {
  endpoints: ReadonlyArray<{ plumbing?: { steps: ReadonlyArray<unknown> } }>;
}): Array<{ name: string; index?: number }> {
  return network.endpoints.flatMap((endpoint) =>
    (endpoint.plumbing?.steps ?? []).flatMap((step) => {
      const candidate = step as { step?: unknown; name?: unknown; index?: unknown };
      if (candidate.step !== 'create-link' || typeof candidate.name !== 'string') return [];
      return [
        typeof candidate.index === 'number'
          ? { name: candidate.name, index: candidate.index }
          : { name: candidate.name },
      ];
    }),
  );
}

/** The filters a record's steps add on pod links: gc never deletes one of these. */
export function addedFilters(network: {
  endpoints: ReadonlyArray<{ plumbing?: { steps: ReadonlyArray<unknown> } }>;
}): Array<{ link: string; index?: number; parent: number; priority: number }> {
  return network.endpoints.flatMap((endpoint) =>
    (endpoint.plumbing?.steps ?? []).flatMap((step) => {
      const candidate = step as {
        step?: unknown;
        link?: unknown;
        index?: unknown;
        parent?: unknown;
        priority?: unknown;
      };
      if (candidate.step !== 'add-filter' || typeof candidate.link !== 'string') return [];
      if (typeof candidate.parent !== 'number' || typeof candidate.priority !== 'number') return [];
      return [
        {
          link: candidate.link,
          ...(typeof candidate.index === 'number' ? { index: candidate.index } : {}),
          parent: candidate.parent,
          priority: candidate.priority,
        },
      ];
    }),
  );
}
