/**
 * Who may open a tap by name. The kernel lets a process without CAP_NET_ADMIN attach a queue to an
 * existing tap (TUNSETIFF, each queue of a multi-queue tap alike) only when it is the tap's owner
 * (if one is set) and in its group (if one is set): tun_not_capable. So a tap with neither is open
 * to every uid in the namespace. vcnet never makes one: by default both are set, as Kata sets them
 * (owner and group 0), to the euid and egid of the process that makes the tap: 0 for a runtime
 * running as root, and still the caller's own ids when vcnet runs with CAP_NET_ADMIN under another
 * uid. A VMM running as another user gets the tap with tapOwner and/or tapGroup.
 */
import { readFileSync } from 'node:fs';
import { InvalidInputError } from '../errors.js';

/** The largest id taken: the native shim passes ids as int32 (and (uid_t)-1 would mean "no owner"). */
export const MAX_TAP_ID = 0x7fffffff;
const MAX_ID = MAX_TAP_ID;

/**
 * The owner and group a tap gets. The kernel lets a process in only when it matches every one that is
 * set (its euid the owner, and its egid or a supplementary group the group): so with neither given
 * both are this process's, and a caller who gives one gets exactly that one (an owner alone admits
 * that uid whatever its groups).
 */
export function tapOwnershipFields(config: { tapOwner?: number; tapGroup?: number }): {
  tapOwner?: number;
  tapGroup?: number;
} {
  if (config.tapOwner === undefined && config.tapGroup === undefined) {
    return { tapOwner: process.geteuid?.() ?? 0, tapGroup: process.getegid?.() ?? 0 };
  }
  return {
    ...(config.tapOwner !== undefined ? { tapOwner: config.tapOwner } : {}),
    ...(config.tapGroup !== undefined ? { tapGroup: config.tapGroup } : {}),
  };
}

/** Checks a numeric owner or group a library caller gave. */
export function checkTapId(value: unknown, field: string): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > MAX_ID) {
    throw new InvalidInputError(
      field,
      value,
      `a numeric ${field.endsWith('Group') ? 'gid' : 'uid'} from 0 to ${MAX_ID}`,
    );
  }
}

/**
 * A uid (or gid) from a number or a name. Names are looked up in /etc/passwd (or /etc/group) only:
 * a name that only NSS (LDAP, systemd-userdb) knows must be given as its number.
 */
export function parseTapId(text: string, field: string, kind: 'user' | 'group', databasePath?: string): number {
  const accepted = `a ${kind === 'user' ? 'uid' : 'gid'} (0 to ${MAX_ID}) or a ${kind} name in ${databasePath ?? databaseOf(kind)}`;
  if (/^\d+$/.test(text)) {
    const id = Number(text);
    if (id > MAX_ID) throw new InvalidInputError(field, text, accepted);
    return id;
  }
  if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/.test(text)) throw new InvalidInputError(field, text, accepted);
  const id = lookUpId(text, databasePath ?? databaseOf(kind));
  if (id === undefined) {
    throw new InvalidInputError(
      field,
      text,
      accepted,
      `no ${kind} ${text} in ${databasePath ?? databaseOf(kind)}: give its number instead`,
    );
  }
  return id;
}

function databaseOf(kind: 'user' | 'group'): string {
  return kind === 'user' ? '/etc/passwd' : '/etc/group';
}

/** The third field of the line whose first field is `name` (the passwd and group formats agree). */
function lookUpId(name: string, path: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields[0] !== name || fields.length < 3) continue;
    const id = Number(fields[2]);
    if (Number.isInteger(id) && id >= 0 && id <= MAX_ID) return id;
  }
  return undefined;
}
