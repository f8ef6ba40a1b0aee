/**
 * macvtap: a macvtap link on top of the pod interface; the VM reads and writes its /dev/tapN queues.
 * As Kata: the macvtap (and the guest NIC) take the pod interface's MAC, the pod interface moves to a
 * random private MAC, and its addresses are removed so two stacks do not answer ARP for them.
 * Unlike Kata, detach also puts back the routes that left with the addresses, and the up/down state.
 */
import {
  AddressFamily,
  InterfaceFlag,
  NeighbourState,
  RouteProtocol,
  RouteScope,
} from '../../netlink/codec/constants.js';
import type { Link } from '../../netlink/codec/link.js';
import { VCNET_LINK_GROUP } from '../plumbing.js';
import { addHtbLimit, addIfbLimit } from '../rate-limit.js';
import { createMacvtapAtUniqueIndex, openVerifiedMacvtapQueues, verifiedMacvtapNode } from './macvtap-index.js';
import { type AttachedPlumbing, buildInTransaction, type PlumbingContext } from './plumbing-context.js';

export { macvtapDevicePath } from './macvtap-index.js';

/** Opens a macvtap's character device once per queue (its links must be up first), checked to be its own. */
export function openMacvtapQueues(index: number, queues: number): number[] {
  return openVerifiedMacvtapQueues(verifiedMacvtapNode(index), queues);
}

/** Ethernet's default transmit queue length, which a macvtap also uses as its receive ring size. */
export const DEFAULT_MACVTAP_QUEUE_LENGTH = 1000;

/**
 * Kata gives the macvtap the pod interface's txqueuelen. A macvtap sizes each queue's receive ring by
 * it, and CNI's veths have txqueuelen 0: a ring of 0 drops every frame for the VM. So a zero length
 * becomes ethernet's default.
 */
export function macvtapQueueLength(source: Pick<Link, 'txQueueLength'>): number {
  return source.txQueueLength && source.txQueueLength > 0 ? source.txQueueLength : DEFAULT_MACVTAP_QUEUE_LENGTH;
}

export function attachMacvtap(
  context: PlumbingContext,
  source: Link,
  tapName: string,
  spareHardwareAddress: string,
): Promise<AttachedPlumbing> {
  const { handle } = context;
  const originalAddress = source.address ?? '';
  return buildInTransaction(context, async (transaction, holdFds) => {
    // Addresses (not the kernel's IPv6 link-local) and the routes that would vanish with them.
    const addresses = await handle.addresses({ index: source.index });
    const routes = await handle.routes({ table: 'all', outputIndex: source.index });
    // A MAC change flushes the link's neighbours, permanent ones included: keep those to put back.
    const permanentNeighbours = (await handle.neighbours({ index: source.index })).filter(
      (neighbour) => neighbour.state === NeighbourState.PERMANENT,
    );
    const removable = addresses.filter(
      (address) => !(address.family === AddressFamily.INET6 && address.scope === RouteScope.LINK),
    );
    const routesToKeep = routes.filter(
      (route) =>
        route.protocol !== RouteProtocol.KERNEL &&
        route.table !== 255 &&
        !(route.family === AddressFamily.INET6 && route.destination?.startsWith('fe80')),
    );
    if (routesToKeep.length > 0) transaction.record({ step: 'remove-routes', link: source.name, routes: routesToKeep });
    if (permanentNeighbours.length > 0) {
      transaction.record({ step: 'remove-neighbours', link: source.name, neighbours: permanentNeighbours });
    }

    // nodes (issue 13): at a random high index, so its host-global /dev/tap<index> is its own.
    const created = await createMacvtapAtUniqueIndex(handle, {
      name: tapName,
      parentIndex: source.index,
      mtu: source.mtu,
      address: originalAddress,
      group: VCNET_LINK_GROUP,
      txQueueLength: macvtapQueueLength(source),
      data: { kind: 'macvtap', mode: 'bridge' },
    });
    transaction.record({ step: 'create-link', name: tapName, kind: 'macvtap' });
    transaction.add(
      (batch) => batch.setLink(source.index, { address: spareHardwareAddress }, `move ${source.name} to a private MAC`),
      {
        step: 'change-link',
        link: source.name,
        before: { address: originalAddress },
      },
    );
    // Undo runs backwards, so the deletion order is the reverse of the order to put them back in.
    // IPv4 is listed oldest first: delete last first, so secondaries go before their primary (deleting a
    // primary first takes its secondaries with it, or promotes one). IPv6 is listed newest first.
    const deletionOrder = [
      ...removable.filter((address) => address.family !== AddressFamily.INET6).reverse(),
      ...removable.filter((address) => address.family === AddressFamily.INET6),
    ];
    for (const address of deletionOrder) {
      transaction.add(
        (batch) =>
          batch.deleteAddress({ index: source.index, address: address.address, prefixLength: address.prefixLength }),
        { step: 'remove-addresses', link: source.name, addresses: [address] },
      );
    }
    if ((source.flags & InterfaceFlag.UP) === 0) {
      transaction.add((batch) => batch.setLink(source.index, { up: true }), {
        step: 'change-link',
        link: source.name,
        before: { up: false },
      });
    }
    await transaction.commit();

    const macvtap = await handle.linkByName(tapName);
    transaction.add((batch) => batch.setLink(macvtap.index, { up: true }, `set up ${tapName}`));
    if (context.rateLimit?.rxBitsPerSecond) addHtbLimit(transaction, macvtap, context.rateLimit.rxBitsPerSecond);
    await transaction.commit();
    if (context.rateLimit?.txBitsPerSecond) {
      await addIfbLimit(transaction, macvtap, context.rateLimit.txBitsPerSecond);
      await transaction.commit();
    }
    // Checked again before the path is handed out: the node must still be this macvtap's.
    const node = verifiedMacvtapNode(created.index);
    if (context.keepFds) holdFds(openVerifiedMacvtapQueues(node, context.queues));
    return {
      model: 'macvtap',
      tapName,
      tapIndex: macvtap.index,
      tapDevicePath: node.path,
      guestHardwareAddress: originalAddress,
    };
  });
}
