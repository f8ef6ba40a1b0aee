/**
 * Where nsfs files of network namespaces show in /proc, for the holder search (namespace-holders.ts):
 * the nsfs mounts of every mount namespace (/proc/PID/mountinfo) and the fds processes hold on a
 * namespace (/proc/PID/fd, told apart by their fdinfo and mountinfo). Each lists by inode and stats
 * nothing: the search checks what it needs against the identity asked about.
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { appendTo } from '../multimap.js';
import { testSeam } from '../test-seams.js';
import { type HeldDeviceFd, heldDeviceOf } from './held-device-fds.js';
import { isPermissionRefusal, lookAtFile } from './processes.js';

/**
 * Test seam (never set in production), on globalThis as gc's and apply.ts's (src/test-seams.ts):
 * called once per walk of every process's fds (the costly part of looking for a namespace's holders,
 * 50,000 fds and more on a busy node), so a test can count walks.
 */
const fdWalkSeam = testSeam<() => void>('fdWalk');

export function setFdWalkTestHook(hook: (() => void) | undefined): void {
  fdWalkSeam.set(hook);
}

const NET_NAMESPACE_LINK = /^net:\[(\d+)\]$/;

/** A mount point as /proc/PID/mountinfo writes it: space, tab, newline and backslash as octal escapes. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/**
 * nsfs mounts of network namespaces (their root is `net:[INO]`), by INO: those of vcnet's own mount
 * namespace by their mount point, those of other mount namespaces through /proc/PID/root (each
 * mount namespace read once). Not stat'ed here.
 */
export function nsfsMountsByInode(
  pids: ReadonlyArray<number | 'self'>,
  refused: (pid: number) => void,
): Map<number, string[]> {
  const found = new Map<number, string[]>();
  const seenMountNamespaces = new Set<string>();
  if (pids[0] !== 'self') {
    const own = fileIdentityKey('/proc/self/ns/mnt');
    if (own !== undefined) seenMountNamespaces.add(own);
  }
  for (const pid of pids) {
    const looked = lookAtFile(`/proc/${pid}/ns/mnt`);
    if (looked === 'refused' && pid !== 'self') refused(pid);
    if (typeof looked !== 'object') continue;
    const mountNamespace = `${looked.dev}:${looked.ino}`;
    if (seenMountNamespaces.has(mountNamespace)) continue;
    seenMountNamespaces.add(mountNamespace);
    for (const mount of mountsOf(pid, refused)) {
      if (mount.fstype !== 'nsfs') continue;
      const inode = NET_NAMESPACE_LINK.exec(mount.root)?.[1];
      if (inode === undefined) continue;
      const path = pid === 'self' ? mount.mountPoint : `/proc/${pid}/root${mount.mountPoint}`;
      appendTo(found, Number(inode), path);
    }
  }
  return found;
}

/** One line of /proc/PID/mountinfo: the fields vcnet reads. */
interface MountInfoEntry {
  /** The mount id (fdinfo's `mnt_id:`). */
  id: string;
  /** The root of the mount within its file system (an nsfs mount's is `net:[INO]`). */
  root: string;
  mountPoint: string;
  fstype: string;
}

/**
 * The mounts of a process's mount namespace, from /proc/PID/mountinfo (none when it cannot be read;
 * `refused` hears of a process whose mountinfo this one may not read).
 */
function mountsOf(pid: number | 'self', refused?: (pid: number) => void): MountInfoEntry[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
  } catch (error) {
    if (pid !== 'self' && isPermissionRefusal(error)) refused?.(pid);
    return [];
  }
  const mounts: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    // Optional fields end at a lone '-': the fstype follows it.
    const separator = fields.indexOf('-');
    if (separator <= 0 || !fields[0]) continue;
    mounts.push({
      id: fields[0],
      root: fields[3] ?? '',
      mountPoint: unescapeMountField(fields[4] ?? ''),
      fstype: fields[separator + 1] ?? '',
    });
  }
  return mounts;
}

/**
 * Every fd some process holds on a network namespace, by the namespace's inode (one walk of every
 * process's fds; nothing stat'ed). An fd opened on `/proc/PID/ns/net` reads `net:[INO]`; one opened
 * through a bind mount (`exec 3</var/run/netns/X`) reads `/` once that mount is gone (a detached
 * mount's root), as does an fd on the root of a dead FUSE or NFS mount, whose stat never returns:
 * those are told apart by their fdinfo (read without touching the file), `ino:` (since Linux 5.14)
 * and the fstype of the mount `mnt_id:` names when that mount is still listed in the process's
 * mountinfo; one on a mount listed as anything but nsfs is no namespace. Without `ino:`, only one
 * on a listed nsfs mount is kept (its inode then unknown: -1, looked at for every namespace).
 * `devices` gets the sockets and tun/tap fds the same walk reads (their namespace is asked of the
 * kernel only when no nsfs fd holds the namespace: namespacesOfHeldDevices).
 */
export function namespaceFdsByInode(
  pids: readonly number[],
  refused: (pid: number) => void,
  devices?: HeldDeviceFd[],
): Map<number, string[]> {
  fdWalkSeam.hook()?.();
  const found = new Map<number, string[]>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch (error) {
      if (isPermissionRefusal(error)) refused(pid);
      continue;
    }
    let mountTypes: Map<string, string> | undefined;
    for (const fd of fds) {
      const path = `/proc/${pid}/fd/${fd}`;
      try {
        const target = readlinkSync(path);
        const direct = NET_NAMESPACE_LINK.exec(target)?.[1];
        if (direct !== undefined) {
          appendTo(found, Number(direct), path);
          continue;
        }
        if (target !== '/') {
          const device = devices && heldDeviceOf(target);
          if (device) devices?.push({ pid, fd: Number(fd), ...device });
          continue;
        }
        const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
        const inode = /^ino:\s*(\d+)\s*$/m.exec(info)?.[1];
        const mountId = /^mnt_id:\s*(\d+)\s*$/m.exec(info)?.[1];
        mountTypes ??= mountTypesOf(pid, refused);
        const fstype = mountId === undefined ? undefined : mountTypes.get(mountId);
        if (fstype !== undefined && fstype !== 'nsfs') continue;
        if (inode !== undefined) appendTo(found, Number(inode), path);
        else if (fstype === 'nsfs') appendTo(found, -1, path);
      } catch (error) {
        // closed meanwhile, or not ours to read
        if (isPermissionRefusal(error)) refused(pid);
      }
    }
  }
  return found;
}

/** mount id → fstype, from /proc/PID/mountinfo (empty when it cannot be read). */
function mountTypesOf(pid: number, refused: (pid: number) => void): Map<string, string> {
  return new Map(mountsOf(pid, refused).map((mount) => [mount.id, mount.fstype]));
}

function fileIdentityKey(path: string): string | undefined {
  try {
    const stats = statSync(path);
    return `${stats.dev}:${stats.ino}`;
  } catch {
    return undefined;
  }
}
