/**
 * A hot-plug QEMU refused because the VM already has a device or netdev under the id vcnet gives the
 * new endpoint's NIC (net<N>, netdev-net<N>), an id no endpoint of the sandbox's record owns. vcnet
 * numbers a new endpoint above the recorded ones, so such an id is a NIC left in the VM without a
 * record: a hot-plug killed right after QEMU took it, whose half-made attach a vcnet before session
 * 20 undid on the host only (watch start, gc), or one a hand or another tool plugged under that id.
 *
 * QEMU's "Duplicate ID" alone pointed at del-iface, which refuses a name the record no longer has, and
 * every retry (a watch tries with each change) failed the same way. Taking the next free id instead
 * would hide a NIC the guest still sees, with no backend; and vcnet does not unplug a device it has
 * no record of (it cannot tell it from another tool's). So the error names the id, says whose it is
 * not, and gives the QMP commands that remove it.
 */
import { causeChain, VcnetError } from '../errors.js';
import { DUPLICATE_ID, NetworkHotplugError, QmpCommandError, qmpRemovalOf } from '../hypervisor/errors.js';
import { qemuNetdevId } from '../hypervisor/qemu.js';
import { AttachError } from '../network/model/plumbing-context.js';
import type { Network } from '../network/network.js';
import type { SandboxState } from '../network/state/records.js';

/**
 * QEMU already has a device or netdev by the id vcnet would hot-plug the NIC as (`VCNET_HOTPLUG_ID_TAKEN`);
 * `takenId` is that id. Nothing was changed.
 */
export class HotplugIdTakenError extends VcnetError {
  static override readonly errorName: string = 'HotplugIdTakenError';
  /** The id QEMU has already: the NIC's (net<N>) or its netdev's (netdev-net<N>). */
  readonly takenId: string;
  constructor(
    sandbox: string,
    link: string,
    deviceId: string,
    takenId: string,
    qmpSocket: string,
    cause: unknown,
    /** The undo on the host handed something over to another tool (the AttachError around this says what). */
    handedOver = false,
  ) {
    super(
      'VCNET_HOTPLUG_ID_TAKEN',
      `cannot hot-plug ${link} into sandbox ${sandbox}'s VM as ${deviceId}: the VM already has ${takenId === deviceId ? 'a device' : 'a netdev'} ${takenId}, which no endpoint of the sandbox records (nothing was added${handedOver ? ' to the VM' : ''})`,
      {
        value: takenId,
        hint: `it is most likely a NIC a hot-plug killed part-way left in the VM, whose record was undone on the host only (vcnet builds before session 20), so del-iface does not know it. Unplug it through QMP on ${qmpSocket}: ${qmpRemovalOf(deviceId)}; then run this again (a watch tries again with the next change)`,
        cause,
      },
    );
    this.takenId = takenId;
  }
}

/**
 * `error` as HotplugIdTakenError when it is QEMU refusing the endpoint's hot-plug (rolled back: nothing
 * added) for an id of vcnet's scheme that no recorded endpoint owns; otherwise `error` itself. A
 * refusal whose undo handed a qdisc over to another tool (an AttachError with `handedOver`) stays
 * that AttachError, saying what stays, with the HotplugIdTakenError as its cause: both are said.
 */
export function explainTakenHotplugId(
  error: unknown,
  context: { sandbox: string; link: string; state: SandboxState; network: Network; handedOver?: boolean },
): unknown {
  if (error instanceof AttachError && error.rolledBack && error.handedOver.length > 0) {
    const explained = explainTakenHotplugId(error.cause, { ...context, handedOver: true });
    if (explained === error.cause) return error;
    return new AttachError(
      String(error.value),
      explained as Error,
      true,
      undefined,
      error.handedOver,
      error.alsoUndone,
    );
  }
  const qmpSocket = context.state.hypervisor?.kind === 'qemu' ? context.state.hypervisor.controlSocket : undefined;
  if (!qmpSocket) return error;
  // Only the refusal itself: one wrapped (a RollbackIncompleteError) has more to say, what it left.
  const hotplug = error;
  if (!(hotplug instanceof NetworkHotplugError) || !hotplug.rolledBack) return error;
  const refusal = causeChain(hotplug).find((link): link is QmpCommandError => link instanceof QmpCommandError);
  const taken = refusal ? DUPLICATE_ID.exec(refusal.description)?.[1] : undefined;
  const { deviceId } = hotplug;
  if (taken === undefined || (taken !== deviceId && taken !== qemuNetdevId(deviceId))) return error;
  // An id a recorded endpoint has is that endpoint's NIC: not this case (and not expected).
  if (context.network.endpoints().some((endpoint) => endpoint.deviceId === deviceId)) return error;
  return new HotplugIdTakenError(
    context.sandbox,
    context.link,
    deviceId,
    taken,
    qmpSocket,
    error,
    context.handedOver ?? false,
  );
}
