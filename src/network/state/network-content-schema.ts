/**
 * Schemas of what today's records hold inside the envelope (record-envelope.ts): the network of a
 * sandbox (config, endpoints and the plumbing steps undo replays) and the extra fields of a
 * `vcnet attach` record and of a vcnet-cni record. Kept apart from the envelope because the content
 * follows the attach engine while the envelope follows the store.
 *
 * What vcnet builds itself (the record's top level, the network, each endpoint, its plumbing and
 * each step) is a strict object: a key this version never wrote (a bit flip, `pluíbing`, an edit)
 * is refused, naming it, rather than read as a missing optional field. Every key a version 2 record
 * has held since namespace identities (0.1.0 builds) is listed, so those records still read. Kernel
 * objects, link attribute sets, a pair, `details`, the caller's config and hypervisor keep any other
 * key: they hold what the kernel or a library caller gave (config keys were not checked before
 * validateNetworkConfig refused unknown ones).
 */
import * as z from 'zod';
import { isMacAddress, MAC_ADDRESS_ACCEPTED } from '../../mac-address.js';
import {
  CLSACT_INGRESS_PARENT,
  INGRESS_HANDLE,
  TC_H_INGRESS,
  TC_H_ROOT,
  tcMinor,
} from '../../netlink/codec/tc/message.js';
import { MAX_QUEUES, QUEUES_ACCEPTED } from '../../queue-limits.js';
import { INTERWORKING_MODELS } from '../interworking-model.js';
import { ENDPOINT_TYPES } from '../network-info.js';
import { ENDPOINT_STATE_VERSION, NETWORK_STATE_VERSION } from './content-versions.js';

const name = z.string({ error: 'a name' }).min(1, { error: 'a name' });
const whole = z.int({ error: 'a whole number' }).nonnegative({ error: 'a whole number' });
const integer = z.int({ error: 'a whole number' });
const tcHandle = whole.max(0xffffffff, { error: 'a 32-bit tc handle' });
const sixteenBits = whole.max(0xffff, { error: 'a 16-bit number' });
const listOf = <T extends z.ZodType>(schema: T, what: string) => z.array(schema, { error: `a list of ${what}` });
/** An ifindex: the kernel numbers links from 1. */
const ifindex = z
  .int({ error: 'an ifindex (a whole number from 1)' })
  .min(1, { error: 'an ifindex (a whole number from 1)' });
/** A link-layer address as the codec writes it (hex bytes joined by ":"; six for Ethernet, more for others). */
const hardwareAddress = z
  .string({ error: 'a link-layer address such as 02:42:ac:11:00:02' })
  .regex(/^[0-9a-f]{2}(:[0-9a-f]{2})*$/i, { error: 'a link-layer address such as 02:42:ac:11:00:02' });
/** An Ethernet MAC: what a guest NIC, a tap and a macvtap have, and what vcnet sets on a link. */
const macAddress = z.string({ error: MAC_ADDRESS_ACCEPTED }).refine(isMacAddress, { error: MAC_ADDRESS_ACCEPTED });

// Kernel objects are checked for the fields vcnet reads back, and keep the rest as the kernel gave it.
// index: checked by the endpoint (a hot-added tap's guest link has none: 0).
const linkSchema = z.looseObject({
  index: whole,
  name,
  type: integer,
  flags: integer,
  mtu: integer,
  group: integer,
  address: hardwareAddress.optional(),
});
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
  dadState: z.enum(['tentative', 'failed']).optional(),
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
  link: z.looseObject({ name, index: ifindex }).optional(),
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
  linkLayerAddress: hardwareAddress.optional(),
  state: integer.optional(),
  flags: integer.optional(),
  protocol: whole.max(255, { error: 'an NDA_PROTOCOL value' }).optional(),
});

/** A pod link's ifindex, its identity in the namespace (records before it kept only the name). */
const podLinkIndex = ifindex.optional();
/**
 * In a record an attach journaled before making the step (its intent): the link of vcnet's made just
 * before it, whose absence (its record still `unconfirmed`) says the step was never made.
 */
const madeAfterLink = name.optional();
const linkAttributesSchema = z.looseObject({
  address: macAddress.optional(),
  mtu: whole.optional(),
  up: z.boolean().optional(),
  name: z.string().optional(),
  qdisc: z.literal('noop', { error: '"noop"' }).optional(),
  txQueueLength: whole.optional(),
  ipv6AddressGeneration: z
    .enum(['eui64', 'none', 'stable-privacy', 'random'], { error: 'eui64, none, stable-privacy or random' })
    .optional(),
});

/** The kinds of link vcnet makes: a tap (tun), a macvtap, an ifb (rate limits). */
const CREATED_LINK_KINDS = ['tun', 'macvtap', 'ifb'] as const;
/** The redirect filters' parent: an ingress qdisc, or the ingress hook of a clsact qdisc the pod link had. */
const FILTER_PARENTS: readonly number[] = [INGRESS_HANDLE, CLSACT_INGRESS_PARENT];
const QDISC_KINDS = ['ingress', 'htb'] as const;

/**
 * The qdiscs vcnet adds: an ingress qdisc is always ffff: under the ingress parent; an htb (rate
 * limits) is a root qdisc with a major handle (N:0). Anything else is not vcnet's and must not be
 * deleted as if it were.
 */
const addQdiscStep = z
  .strictObject({
    step: z.literal('add-qdisc'),
    link: name,
    index: podLinkIndex,
    madeAfter: madeAfterLink,
    handle: tcHandle,
    parent: tcHandle,
    kind: z.enum(QDISC_KINDS, { error: QDISC_KINDS.join(', ') }),
  })
  .superRefine((step, context) => {
    const ingress = step.kind === 'ingress';
    const handleFits = ingress
      ? step.handle === INGRESS_HANDLE
      : tcMinor(step.handle) === 0 && step.handle !== 0 && step.handle !== INGRESS_HANDLE;
    if (!handleFits)
      context.addIssue({
        code: 'custom',
        path: ['handle'],
        message: ingress ? `${INGRESS_HANDLE} (ffff:0, the handle of every ingress qdisc)` : 'a root handle N:0',
      });
    const parent = ingress ? TC_H_INGRESS : TC_H_ROOT;
    if (step.parent !== parent)
      context.addIssue({
        code: 'custom',
        path: ['parent'],
        message: `${parent} (${ingress ? 'the ingress parent' : 'root'}, the parent of every ${step.kind} qdisc vcnet adds)`,
      });
  });

// Each step is strict: a key this version never wrote is refused (see the top of this file).
export const plumbingStepSchema = z.discriminatedUnion(
  'step',
  [
    // index: the made link's ifindex (records journaled before it existed, and older ones, lack it).
    z.strictObject({
      step: z.literal('create-link'),
      name,
      kind: z.enum(CREATED_LINK_KINDS, { error: CREATED_LINK_KINDS.join(', ') }),
      index: podLinkIndex,
      // The index was journaled before the kernel confirmed the create (plan-detach's createdLinksNow).
      unconfirmed: z.literal(true, { error: 'true, or absent' }).optional(),
    }),
    addQdiscStep,
    z.strictObject({
      step: z.literal('add-filter'),
      link: name,
      index: podLinkIndex,
      madeAfter: madeAfterLink,
      parent: tcHandle.refine((parent) => FILTER_PARENTS.includes(parent), {
        error: `${INGRESS_HANDLE} (ffff:0, an ingress qdisc) or ${CLSACT_INGRESS_PARENT} (clsact's ingress hook)`,
      }),
      priority: sixteenBits.min(1, { error: 'a filter priority from 1 to 65535' }),
      protocol: sixteenBits,
      kind: z.literal('u32', { error: 'u32' }),
      redirectTo: z.strictObject({ link: name, index: podLinkIndex }).optional(),
    }),
    z.strictObject({
      step: z.literal('change-link'),
      link: name,
      index: podLinkIndex,
      madeAfter: madeAfterLink,
      before: linkAttributesSchema,
      set: linkAttributesSchema.optional(),
    }),
    z.strictObject({
      step: z.literal('remove-addresses'),
      link: name,
      index: podLinkIndex,
      madeAfter: madeAfterLink,
      addresses: listOf(addressSchema, 'addresses'),
    }),
    z.strictObject({
      step: z.literal('remove-routes'),
      link: name,
      index: podLinkIndex,
      madeAfter: madeAfterLink,
      routes: listOf(routeSchema, 'routes'),
    }),
    z.strictObject({
      step: z.literal('remove-neighbours'),
      link: name,
      index: podLinkIndex,
      madeAfter: madeAfterLink,
      neighbours: listOf(neighbourSchema, 'neighbours'),
    }),
  ],
  {
    error:
      'a plumbing step (create-link, add-qdisc, add-filter, change-link, remove-addresses, remove-routes, remove-neighbours)',
  },
);

const PLUMBING_MODELS = ['tcfilter', 'macvtap', 'none', 'existing', 'pending'] as const;
const plumbingFields = {
  steps: z.array(plumbingStepSchema, { error: 'the list of plumbing steps undo replays' }),
  // /dev/tapN, or a VFIO group's device (under VCNET_DEV_ROOT in tests).
  tapDevicePath: z
    .string({ error: 'an absolute device path' })
    .startsWith('/', { error: 'an absolute device path' })
    .optional(),
  queues: z
    .int({ error: QUEUES_ACCEPTED })
    .min(1, { error: QUEUES_ACCEPTED })
    .max(MAX_QUEUES, { error: QUEUES_ACCEPTED }),
};
type MadeModel = 'tcfilter' | 'macvtap' | 'none';
type StepRecord = z.infer<typeof plumbingStepSchema>;
/**
 * The steps a finished endpoint of each model always has (plan/plan-attach.ts): the device it makes
 * (put in vcnet's group first), and for tcfilter the tap's ingress qdisc and the two redirects, for
 * macvtap the pod link's MAC. Without them detach would undo nothing and drop the record, leaking
 * all of it. An attach under way journals `pending`, not the model, so it is never held to this.
 */
const REQUIRED_STEPS: Record<
  MadeModel,
  ReadonlyArray<{ what: string; count: number; is: (step: StepRecord) => boolean }>
> = {
  tcfilter: [
    {
      what: 'a create-link of kind tun (the tap)',
      count: 1,
      is: (step) => step.step === 'create-link' && step.kind === 'tun',
    },
    {
      what: "an add-qdisc of kind ingress (the tap's)",
      count: 1,
      is: (step) => step.step === 'add-qdisc' && step.kind === 'ingress',
    },
    { what: 'two add-filter steps (the redirects both ways)', count: 2, is: (step) => step.step === 'add-filter' },
  ],
  macvtap: [
    {
      what: 'a create-link of kind macvtap',
      count: 1,
      is: (step) => step.step === 'create-link' && step.kind === 'macvtap',
    },
    { what: "a change-link (the pod link's MAC)", count: 1, is: (step) => step.step === 'change-link' },
  ],
  none: [
    {
      what: 'a create-link of kind tun (the tap)',
      count: 1,
      is: (step) => step.step === 'create-link' && step.kind === 'tun',
    },
  ],
};

/** tcfilter, macvtap and none make the device the VM uses: it has a name, an ifindex and a MAC. */
const madeDevicePlumbing = (model: MadeModel) =>
  z.strictObject({
    model: z.literal(model),
    ...plumbingFields,
    tapName: name,
    tapIndex: ifindex,
    guestHardwareAddress: macAddress,
    // An undo the kernel refused in part (Endpoint.keepLeft): the steps are what is left, any of them.
    partial: z.literal(true, { error: 'true, or absent' }).optional(),
  });

/** The REQUIRED_STEPS a finished endpoint's plumbing lacks (none for `existing`, `pending` or a partial undo). */
function missingSteps(plumbing: { model: string; steps: readonly StepRecord[]; partial?: true }) {
  if (plumbing.partial || !(plumbing.model in REQUIRED_STEPS)) return [];
  return REQUIRED_STEPS[plumbing.model as MadeModel].filter(
    (required) => plumbing.steps.filter(required.is).length < required.count,
  );
}
/**
 * `existing`: a device the VM uses as it is (a physical NIC, vhost-user, an existing macvtap): no tap
 * name or index for some, and the pod link's MAC when it has one. `pending`: an attach cut short,
 * whose device is not known yet (attach writes "", 0 and "").
 */
const unmadeDevicePlumbing = (model: 'existing' | 'pending') =>
  z.strictObject({
    model: z.literal(model),
    ...plumbingFields,
    tapName: z.string({ error: 'the tap name' }),
    tapIndex: whole,
    guestHardwareAddress: z.union([z.literal(''), hardwareAddress], {
      error: `${MAC_ADDRESS_ACCEPTED}, or ""`,
    }),
    // An undo of an attach cut short that the kernel refused in part (Endpoint.keepLeft) writes it too.
    partial: z.literal(true, { error: 'true, or absent' }).optional(),
  });

const plumbingSchema = z.discriminatedUnion(
  'model',
  [
    madeDevicePlumbing('tcfilter'),
    madeDevicePlumbing('macvtap'),
    madeDevicePlumbing('none'),
    unmadeDevicePlumbing('existing'),
    unmadeDevicePlumbing('pending'),
  ],
  { error: `the endpoint's plumbing (model ${PLUMBING_MODELS.join(', ')}, and its steps)` },
);

/**
 * Every endpoint a record lists has `plumbing`: an attach lists an endpoint only while it builds it
 * (journaled as `pending` before the first change is sent), and a built one has a model's plumbing,
 * `existing` for the devices the VM uses as they are (physical, vhost-user). An endpoint without it
 * would be dropped by detach and DEL as if there were nothing to undo.
 */
const endpointStateSchema = z
  .strictObject({
    // Version 1 (before session 16's required-steps rule and `partial`): an undo the kernel refused in
    // part kept only the steps left, without saying so; such an endpoint reads as partial (below).
    version: z.literal([1, ENDPOINT_STATE_VERSION], { error: `1 or ${ENDPOINT_STATE_VERSION}` }),
    type: z.enum(ENDPOINT_TYPES, { error: ENDPOINT_TYPES.join(', ') }),
    index: whole,
    name,
    properties: z.strictObject({
      link: linkSchema,
      addresses: listOf(addressSchema, 'addresses'),
      routes: listOf(routeSchema, 'routes'),
      neighbours: listOf(neighbourSchema, 'neighbours'),
    }),
    pair: z
      .looseObject({
        name,
        tap: z.looseObject({ name, guestHardwareAddress: z.string({ error: 'a MAC address' }) }),
        model: z.enum(['tcfilter', 'macvtap', 'none'], { error: 'tcfilter, macvtap, none' }),
      })
      .optional(),
    plumbing: plumbingSchema,
    pciPath: z.string({ error: 'a PCI path' }).optional(),
    deviceMtu: whole.optional(),
    details: z.record(z.string(), z.unknown(), { error: 'an object' }).optional(),
  })
  .superRefine((endpoint, context) => {
    // Only records that know `partial` are held to the steps every finished endpoint has.
    const missing = endpoint.version === ENDPOINT_STATE_VERSION ? missingSteps(endpoint.plumbing) : [];
    if (missing.length > 0)
      context.addIssue({
        code: 'custom',
        path: ['plumbing', 'steps'],
        message: `the steps every ${endpoint.plumbing.model} endpoint's attach records; ${missing.map((required) => required.what).join(', ')} ${missing.length > 1 ? 'are' : 'is'} missing`,
      });
    // Every endpoint stands for a pod link, by its ifindex, but a tap add-iface makes (type "tap"): its
    // link is the guest NIC's description, index 0 (add-interface-request.ts).
    if (endpoint.type !== 'tap' && endpoint.properties.link.index < 1)
      context.addIssue({
        code: 'custom',
        path: ['properties', 'link', 'index'],
        message: 'an ifindex (a whole number from 1)',
      });
  })
  // A version 1 endpoint's plumbing without all of its model's steps is what a partly refused undo of
  // that version left: partial, so detach and gc finish it (and it is written back as version 2).
  .transform((endpoint) =>
    endpoint.version === 1 && missingSteps(endpoint.plumbing).length > 0
      ? { ...endpoint, plumbing: { ...endpoint.plumbing, partial: true as const } }
      : endpoint,
  );

export const networkConfigSchema = z.looseObject({
  namespacePath: z
    .string({ error: 'an absolute namespace path' })
    .min(1, { error: 'an absolute namespace path' })
    .startsWith('/', { error: 'an absolute namespace path' }),
  model: z.enum(INTERWORKING_MODELS, { error: INTERWORKING_MODELS.join(', ') }),
  namespaceCreatedByVcnet: z.boolean({ error: 'true or false' }),
  disableNewNetns: z.boolean({ error: 'true or false' }),
  queues: z
    .int({ error: QUEUES_ACCEPTED })
    .min(1, { error: QUEUES_ACCEPTED })
    .max(MAX_QUEUES, { error: QUEUES_ACCEPTED }),
  vhostNet: z.enum(['auto', 'off'], { error: 'auto, off' }),
  tapOwner: z.int({ error: 'a uid' }).min(0).max(0x7fffffff).optional(),
  tapGroup: z.int({ error: 'a gid' }).min(0).max(0x7fffffff).optional(),
});

const networkStateSchema = z.strictObject({
  version: z.literal(NETWORK_STATE_VERSION, { error: String(NETWORK_STATE_VERSION) }),
  config: networkConfigSchema,
  endpoints: z.array(endpointStateSchema, { error: 'the list of attached endpoints' }),
});

/** A record's network must act on the namespace its envelope names, or the identity check means nothing. */
const samePath = (record: { namespace?: unknown; network: { config: { namespacePath: string } } }) =>
  (record.namespace as { path?: unknown } | undefined)?.path === record.network.config.namespacePath;
const samePathIssue = {
  error: 'the same path as namespace.path',
  path: ['network', 'config', 'namespacePath'],
};

/** The envelope's keys (record-envelope.ts checks them): known to the strict content schemas below. */
const envelopeKeys = {
  version: z.unknown(),
  id: z.unknown(),
  namespace: z.unknown(),
  createdAt: z.unknown(),
  bootId: z.unknown().optional(),
};

/** What `vcnet attach` records besides the envelope. */
export const sandboxContentSchema = z
  .strictObject({
    ...envelopeKeys,
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
    guestPending: z
      .array(
        z.strictObject({
          name,
          podLink: name,
          token: z.string({ error: 'a token' }).min(1, { error: 'a token' }),
          pid: z.int({ error: 'a process id' }).positive({ error: 'a process id' }),
          pidStart: z.string({ error: "the process's start time" }).optional(),
          pidNamespace: z
            .strictObject(
              { device: whole, inode: whole },
              { error: 'the device and inode of a PID namespace ({device, inode})' },
            )
            .optional(),
          since: z.string({ error: 'a time' }),
          waitsUntil: z.string({ error: 'a time' }).optional(),
          by: z.enum(['add-iface', 'watch'], { error: 'add-iface or watch' }),
        }),
        { error: 'a list of endpoints waiting for the guest' },
      )
      .optional(),
    unplugUnfinished: z
      .array(
        z.strictObject({
          name,
          podLink: name,
          deviceId: z.string({ error: 'a device id' }).min(1, { error: 'a device id' }),
          since: z.string({ error: 'a time' }),
        }),
        { error: 'a list of endpoints whose unplug did not finish' },
      )
      .optional(),
  })
  .refine(samePath, samePathIssue);

/**
 * What vcnet-cni records besides the envelope (whose id is the container id). One record is one
 * interface: ADD lists its one endpoint before it builds it, so a finished record (with `device`)
 * has exactly one, and an ADD under way (no `device` yet) none or one.
 */
export const cniContentSchema = z
  .strictObject({
    ...envelopeKeys,
    interfaceName: name,
    networkName: z.string({ error: 'the CNI network name' }),
    device: z
      .strictObject({
        name,
        mac: macAddress,
        kind: z.enum(['tap', 'macvtap'], { error: 'tap, macvtap' }),
      })
      .optional(),
    network: networkStateSchema,
  })
  .refine(samePath, samePathIssue)
  .refine(
    (record) => record.network.endpoints.length === (record.device ? 1 : Math.min(1, record.network.endpoints.length)),
    {
      error: (issue) => {
        const record = issue.input as { device?: unknown };
        return record.device
          ? 'exactly one endpoint (the interface ADD attached)'
          : 'at most one endpoint (an ADD under way lists the interface it attaches)';
      },
      path: ['network', 'endpoints'],
    },
  );

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

/** The htb root qdiscs a record's steps add (rate limits): gc never deletes one of these as a leftover. */
export function addedHtbs(network: {
  endpoints: ReadonlyArray<{ plumbing?: { steps: ReadonlyArray<unknown> } }>;
}): Array<{ link: string; index?: number; handle: number }> {
  return network.endpoints.flatMap((endpoint) =>
    (endpoint.plumbing?.steps ?? []).flatMap((step) => {
      const candidate = step as { step?: unknown; link?: unknown; index?: unknown; kind?: unknown; handle?: unknown };
      if (candidate.step !== 'add-qdisc' || candidate.kind !== 'htb' || typeof candidate.link !== 'string') return [];
      if (typeof candidate.handle !== 'number') return [];
      return [
        {
          link: candidate.link,
          ...(typeof candidate.index === 'number' ? { index: candidate.index } : {}),
          handle: candidate.handle,
        },
      ];
    }),
  );
}
