/**
 * The links the executor makes itself, each at an index chosen before it exists (so every record of
 * it names it by that identity): taps and ifbs from LINK_INDEX_BASE, a taken index tried again
 * elsewhere (TAP_INDEX_ATTEMPTS in all), the tap by ioctl with its owner and group, and its queue fds.
 */
import { randomInt } from 'node:crypto';
import { errnoOf, SystemCallError } from '../../errors.js';
import { nativeDevices } from '../../native/devices.js';
import type { NetlinkHandle } from '../../netlink/handle.js';
import { testSeam } from '../../test-seams.js';
import { tapOwnershipFields } from '../tap-owner.js';
import { LinkNameTakenError } from './plan-attach.js';
import type { Change } from './types.js';

/** Where a tap is made, and whether its queue fds stay open: the executor's context (ApplyContext). */
export interface TapContext {
  handle: NetlinkHandle;
  namespacePath: string;
  /** Keep the tap's queue fds open and return them (a hypervisor started by this process). */
  keepFds: boolean;
}

/**
 * Where vcnet makes its taps and ifbs: far above the indexes the kernel hands out by itself (it
 * counts up from 1 in each namespace), and apart from the macvtaps' 8192-73727 (macvtap-index.ts).
 */
export const LINK_INDEX_BASE = 1 << 20;
export const LINK_INDEX_RANGE = 1 << 20;
/** How many indexes a tap is tried at before the attach gives up (each taken one is someone's link). */
const TAP_INDEX_ATTEMPTS = 16;

export function randomLinkIndex(random: (max: number) => number = randomInt): number {
  const forced = linkIndexSeam.hook()?.();
  return forced ?? LINK_INDEX_BASE + random(LINK_INDEX_RANGE);
}

/**
 * Test seam (never set in production), kept on globalThis as the apply hook is: returns the index the
 * next tap or ifb is tried at (undefined: a random one), so a test can make it one that is taken.
 */
const linkIndexSeam = testSeam<() => number | undefined>('linkIndex');

export function setLinkIndexTestHook(hook: (() => number | undefined) | undefined): void {
  linkIndexSeam.set(hook);
}

/**
 * Whether a refusal is an ifb's create refused with EEXIST for an index someone else's link holds
 * (its name is free): the name of the ifb to make again at another index. Throws when the ifb has
 * been tried at TAP_INDEX_ATTEMPTS indexes, each taken.
 */
export async function ifbIndexTaken(
  handle: NetlinkHandle,
  change: Change,
  error: Error,
  attempts: Map<string, number>,
): Promise<string | undefined> {
  if (change.op !== 'create-link' || change.kind !== 'ifb' || errnoOf(error) !== 'EEXIST') return undefined;
  if (await handle.findLink({ name: change.link.name })) return undefined;
  const tried = (attempts.get(change.link.name) ?? 0) + 1;
  attempts.set(change.link.name, tried);
  if (tried < TAP_INDEX_ATTEMPTS) return change.link.name;
  throw new SystemCallError(
    `add ifb link ${change.link.name} (${TAP_INDEX_ATTEMPTS} indexes from ${LINK_INDEX_BASE} tried, each taken)`,
    Object.assign(new Error(error.message), { code: 'EEXIST' }) as NodeJS.ErrnoException,
    TAKEN_INDEXES_HINT,
  );
}

const TAKEN_INDEXES_HINT =
  "every index tried was another link's: many links at vcnet's indexes in this namespace? Run the command again (other indexes are tried), or remove the links vcnet did not make";

/**
 * Makes the tap at an index chosen (and journaled, by `beforeCreate`) before it exists. EBUSY is
 * the kernel saying the name or the index is taken: a taken name fails the attach, a taken index is
 * someone's link, and another index is tried.
 */
export async function createTapAtChosenIndex(
  context: TapContext,
  change: Extract<Change, { op: 'create-tap' }>,
  first: number | undefined,
  beforeCreate: (index: number) => void,
): Promise<{ index: number; fds: number[] }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < TAP_INDEX_ATTEMPTS; attempt++) {
    const index = attempt === 0 && first !== undefined ? first : randomLinkIndex();
    beforeCreate(index);
    try {
      return createTap(context, change, index);
    } catch (error) {
      if (!(error instanceof LinkNameTakenError)) throw error;
      const holder = await context.handle.findLink({ name: change.link.name });
      if (holder) throw new LinkNameTakenError(change.link.name, holder, error.cause);
      lastError = error;
    }
  }
  throw new SystemCallError(
    `create tap ${change.link.name} (${TAP_INDEX_ATTEMPTS} indexes from ${LINK_INDEX_BASE} tried, each taken)`,
    ((lastError as Error).cause ?? lastError) as NodeJS.ErrnoException,
    TAKEN_INDEXES_HINT,
  );
}

function createTap(context: TapContext, change: Extract<Change, { op: 'create-tap' }>, index?: number) {
  const { handle } = context;
  const ownership = tapOwnershipFields({
    ...(change.owner !== undefined ? { tapOwner: change.owner } : {}),
    ...(change.group !== undefined ? { tapGroup: change.group } : {}),
  });
  try {
    // The handle's own namespace, and its socket for the tap's index: no path lookup, no socket of its own.
    const namespaceFd = context.namespacePath ? handle.namespaceFd() : undefined;
    return nativeDevices.createTun(context.namespacePath, change.link.name, {
      ...(namespaceFd !== undefined ? { namespaceFd } : {}),
      indexSocket: handle.socket.fd,
      tap: true,
      vnetHdr: true,
      multiQueue: change.multiQueue,
      queues: change.queues,
      // Never a tap without owner and group: any uid in the namespace could then open it (tap-owner.ts).
      ...(ownership.tapOwner !== undefined ? { owner: ownership.tapOwner } : {}),
      ...(ownership.tapGroup !== undefined ? { group: ownership.tapGroup } : {}),
      // Persist so the tap outlives this process (the CLI exits before the VM starts).
      persist: true,
      keepFds: context.keepFds,
      ...(index !== undefined ? { ifindex: index } : {}),
    });
  } catch (error) {
    // The first queue is opened with IFF_TUN_EXCL: EBUSY is the kernel saying the name is taken.
    if (errnoOf(error) === 'EBUSY') {
      throw new LinkNameTakenError(change.link.name, undefined, error);
    }
    throw new SystemCallError(`create tap ${change.link.name}`, error as NodeJS.ErrnoException);
  }
}

export function closeFds(fds: number[]): void {
  for (const fd of fds) {
    try {
      nativeDevices.closeFd(fd);
    } catch {
      // already closed
    }
  }
}
