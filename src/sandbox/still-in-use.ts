/**
 * What an undo says, before it changes anything, about what still uses the sandbox: its namespace
 * reached through a process holding it (the recorded path gone or reused), a VM whose control socket
 * still answers, or devices a process (the VM) still has open. Never a refusal: detach, gc and
 * vcnet-cni DEL must finish (the CNI spec wants DEL to clean up what it can and succeed, or the
 * chain stops before the IPAM plugin frees the pod's address), but said, naming the holder. `vcnet
 * detach` and vcnet-cni DEL both say it from here.
 */
import { channels, type NoticeEvent, publish } from '../diagnostics.js';
import type { RecordedNetwork } from '../network/recorded-network.js';
import { heldDevices } from './held-devices.js';

/** Who undoes what, in the words of the notices. */
export interface UndoSubject {
  /** The notice's operation: `detach`, `DEL`. */
  operation: string;
  /** The sandbox's id (the notices' `details.sandbox`): a sandbox id, or vcnet-cni's CONTAINER/IFNAME. */
  sandbox: string;
  /** How a message names it: `sandbox ID`, `container ID`. */
  named: string;
  /** What made what is undone: `attach`, `ADD`. */
  madeBy: string;
  /** When the VM should have been stopped, ending the message about a device still open: `Stop the VM first`. */
  stopTheVm: string;
  /** The namespace path of the record. */
  namespacePath: string;
}

/**
 * Publishes one notice for each thing that still uses the sandbox. `runningVm`: the VM's control
 * socket answered (the caller connected to unplug its NICs first); its devices are not looked at then.
 */
export async function noticeStillInUse(
  recorded: RecordedNetwork,
  subject: UndoSubject,
  runningVm?: { controlSocket: string | undefined },
): Promise<void> {
  const { operation, sandbox, named } = subject;
  if (recorded.heldElsewhere) {
    const heldElsewhere = recorded.heldElsewhere;
    publish(channels.notice, () => heldElsewhereNotice(subject, heldElsewhere));
  }
  if (runningVm) {
    // Not a refusal (a VM left running by a crashed runtime must still be cleaned up), but said.
    const socket = runningVm.controlSocket;
    publish(channels.notice, () => ({
      operation,
      endpoint: '',
      message: `${named}'s VM is still running (its control socket ${socket ?? ''} answers): its NICs are unplugged first, and their taps removed even if the VM does not let them go; stop the VM before detaching`,
      details: { sandbox, ...(socket ? { socket } : {}) },
    }));
    return;
  }
  // A VM vcnet has no socket of (a VMM launched with the fds or names attach printed, a runtime's VM
  // over vcnet-cni's tap): found by what it holds, in the namespace as opened (the recorded path may
  // be gone or name another namespace now). Looked for (every process's fds in /proc) only for a
  // listener: the undo goes ahead the same either way.
  if (!channels.notice.hasSubscribers) return;
  for (const held of await heldDevices(recorded.network, recorded.namespace.entryPath)) {
    publish(channels.notice, () => {
      const by = held.pids.length > 0 ? ` by pid ${held.pids.join(', ')}` : '';
      return {
        operation,
        endpoint: held.device,
        message: `${named}'s ${held.device} is still open${by}: the VM is still running; it is ${operation === 'detach' ? 'detached' : 'removed'} anyway and the VM loses that NIC. ${subject.stopTheVm}`,
        details: { sandbox, device: held.device, ...(held.pids.length > 0 ? { pids: held.pids } : {}) },
      };
    });
  }
}

/** Says that a record's namespace path is gone (or names another namespace) while a process keeps the recorded one alive. */
function heldElsewhereNotice(
  subject: UndoSubject,
  heldElsewhere: NonNullable<RecordedNetwork['heldElsewhere']>,
): NoticeEvent {
  const { named, madeBy, namespacePath } = subject;
  const holder =
    heldElsewhere.pid === undefined
      ? `a mount still holds that namespace (${heldElsewhere.path})`
      : heldElsewhere.through !== undefined
        ? `process ${heldElsewhere.pid}, outside it, still holds ${heldElsewhere.through === 'socket' ? 'a socket made in that namespace' : 'a tap of that namespace'} open (${heldElsewhere.path}), which keeps it alive`
        : heldElsewhere.path.includes('/fd/')
          ? `process ${heldElsewhere.pid} still holds that namespace open (${heldElsewhere.path})`
          : `process ${heldElsewhere.pid} still runs in that namespace (${heldElsewhere.path})`;
  return {
    operation: subject.operation,
    endpoint: '',
    message: heldElsewhere.pathReused
      ? `${named}: its namespace path ${namespacePath} now names another namespace (left untouched), but ${holder.replace('that namespace', 'the recorded one')}: what ${madeBy} made is still there and is undone through it`
      : `${named}: its namespace path ${namespacePath} is ${heldElsewhere.pathNow === undefined ? 'gone' : `${heldElsewhere.pathNow} now, no namespace (its mount is gone)`}, but ${holder}: what ${madeBy} made is still there and is undone through it`,
    details: {
      sandbox: subject.sandbox,
      namespace: namespacePath,
      heldAt: heldElsewhere.path,
      ...(heldElsewhere.pathReused ? { pathReused: true } : {}),
      ...(heldElsewhere.pid !== undefined ? { pid: heldElsewhere.pid } : {}),
      ...(heldElsewhere.through !== undefined ? { through: heldElsewhere.through } : {}),
    },
  };
}
