/**
 * Words and comments for the POSIX shell that `vcnet attach|detach --dry-run` output is piped to.
 * Link names, address labels and congestion control names come from the pod namespace, whose owner
 * picks them, and the kernel allows `;`, `|`, `$`, quotes and backquotes in them: unquoted they would
 * run as commands.
 */
import { statSync } from 'node:fs';

/** Characters no POSIX shell gives a meaning to in a word (a word made only of these needs no quotes). */
const PLAIN_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/**
 * Characters a terminal acts on (ESC, BEL, C1 CSI...), as escapedControlCharacters sees them, less the
 * newline: a kernel link name never holds one, and `$(...)` would drop it at the end of a word.
 */
const TERMINAL_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]+/g;

/** `text`'s UTF-8 bytes as printf's octal escapes (`\033`), which dash's and bash's printf both read. */
function printfOctal(text: string): string {
  return [...Buffer.from(text, 'utf8')].map((byte) => `\\${byte.toString(8).padStart(3, '0')}`).join('');
}

/**
 * `word` as the shell reads it back unchanged: as it is when plain, else single-quoted (`'` as `'\''`).
 * Control characters leave the quotes as `"$(printf '\033')"`, so that a dry run shown on a terminal
 * rather than piped to `sh` does not hand the terminal a tenant's escape codes.
 */
export function shellWord(word: string): string {
  if (PLAIN_WORD.test(word)) return word;
  const quoted = `'${word.replaceAll("'", `'\\''`)}'`;
  return (
    quoted
      .replace(TERMINAL_CONTROL, (run) => `'"$(printf '${printfOctal(run)}')"'`)
      // The empty quotes left where a control character began or ended the word.
      .replace(/^''(?=")/, '')
      .replace(/(?<=")''$/, '')
  );
}

/** A namespace pinned as NAME in one of iproute2's directories (IPROUTE2_NAMESPACE_DIRECTORIES). */
const NAMED_NAMESPACE = /^\/(?:var\/)?run\/netns\/([^/]+)$/;

/**
 * Where `ip -n NAME`, `tc -n NAME` and `ip netns exec NAME` open NAME: iproute2's NETNS_RUN_DIR, set
 * when it is built, /var/run/netns upstream and /run/netns in Debian's (since iproute2 5.2.0-1). With
 * /var/run a link to /run they are one directory; where /var/run is a directory of its own, the
 * same NAME in the other one is another namespace, or none.
 */
const IPROUTE2_NAMESPACE_DIRECTORIES = ['/run/netns', '/var/run/netns'];

/** How a quoted command enters a namespace: by its iproute2 name when it has one, or always by nsenter and its path. */
export type NamespaceEntry = 'by-name-or-path' | 'by-path';

/** The device and inode of the file at `path` (a namespace's nsfs ones through a bind mount), or undefined. */
function fileIdentity(path: string): { dev: number; ino: number } | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch {
    // EACCES, ENOTDIR, ELOOP: not a file this process can tell apart.
    return undefined;
  }
}

/**
 * The NAME by which iproute2 reaches the namespace at `namespacePath` (`ip -n NAME`), or undefined:
 * the path must be /run/netns/NAME or /var/run/netns/NAME, and NAME in both of iproute2's
 * directories the same file as the path (device and inode, as the real filesystem has them now),
 * whichever of the two the `ip` that runs the command was built to open.
 */
export function iproute2NamespaceName(namespacePath: string): string | undefined {
  const name = NAMED_NAMESPACE.exec(namespacePath)?.[1];
  if (!name || name === '.' || name === '..') return undefined;
  const identity = fileIdentity(namespacePath);
  if (identity === undefined) return undefined;
  const isThatFile = (path: string) => {
    const other = fileIdentity(path);
    return other !== undefined && other.dev === identity.dev && other.ino === identity.ino;
  };
  return IPROUTE2_NAMESPACE_DIRECTORIES.every((directory) => isThatFile(`${directory}/${name}`)) ? name : undefined;
}

/**
 * The `ip` command that acts in the namespace at `namespacePath`, to paste into a host shell: `ip -n
 * NAME` for a namespace iproute2 reaches as NAME, else `nsenter --net=PATH ip`. A bare `ip` pasted
 * on the host acts in the host's namespace, where other sandboxes' links may live.
 */
export function ipCommandIn(namespacePath: string): string {
  return commandIn(namespacePath, 'ip');
}

/**
 * `program` run in the namespace at `namespacePath` (or in this one when undefined), to paste into a
 * host shell: `ip -n NAME` (`tc -n NAME`) for `ip` (`tc`) in a namespace iproute2 reaches as NAME
 * (iproute2NamespaceName, which looks at the filesystem), `ip netns exec NAME program` for another
 * program there, else (or with `enter: 'by-path'`) `nsenter --net=PATH program`.
 */
export function commandIn(
  namespacePath: string | undefined,
  program: string,
  enter: NamespaceEntry = 'by-name-or-path',
): string {
  return commandsIn(namespacePath, enter)(program);
}

/**
 * commandIn for several programs in one namespace, its iproute2 name looked up once (that looks at
 * the filesystem: a stat of the path and of NAME in both of iproute2's directories).
 */
export function commandsIn(
  namespacePath: string | undefined,
  enter: NamespaceEntry = 'by-name-or-path',
): (program: string) => string {
  if (namespacePath === undefined) return (program) => program;
  const name = enter === 'by-path' ? undefined : iproute2NamespaceName(namespacePath);
  if (name !== undefined)
    return (program) =>
      program === 'ip' || program === 'tc'
        ? `${program} -n ${shellWord(name)}`
        : `ip netns exec ${shellWord(name)} ${program}`;
  return (program) => `nsenter --net=${shellWord(namespacePath)} ${program}`;
}

/**
 * The command that sets the sysctl `key` (slash-separated, as under /proc/sys:
 * `net/ipv4/conf/LINK/promote_secondaries`) to `value` in the namespace at `namespacePath` (commandIn),
 * to paste into a host shell. A link name in the key may hold a dot (eth0.100), which sysctl reads as a
 * separator unless the key's first separator is a slash, or `=`, where sysctl ends the key (`a=b`:
 * "cannot stat .../conf/a"): `sysctl -q -w net.ipv4.conf.eth0.promote_secondaries=1` as operators
 * write it, the slash form for a key with a dot, and for one with `=` `echo 1 | tee /proc/sys/KEY`, run
 * in the namespace (a process there opens that namespace's /proc/sys/net; a redirect of the pasting
 * shell would open the host's).
 */
export function sysctlCommandIn(namespacePath: string | undefined, key: string, value: number): string {
  if (key.includes('='))
    return `echo ${value} | ${commandIn(namespacePath, 'tee')} ${shellWord(`/proc/sys/${key}`)} >/dev/null`;
  const written = key.includes('.') ? key : key.replaceAll('/', '.');
  return `${commandIn(namespacePath, 'sysctl -q -w')} ${shellWord(`${written}=${value}`)}`;
}

/** A namespace that only a socket made in it, or a tap of it, keeps, held by another process (/proc/PID/fd/N). */
export interface NamespaceHeldThroughDevice {
  pid: number;
  fd: number;
  kind: 'socket' | 'tap';
}

/** The word a command quoted for a namespace no path reaches (namespaceNoCommandEnters) has for the pin's path. */
export const PIN_PATH_PLACEHOLDER = 'PATH';

/**
 * Why the commands quoted for a namespace that only `held` keeps name PATH rather than a path: no
 * shell command enters a namespace through a socket or a tap (nsenter's open of the fd's
 * /proc/PID/fd/N fails, ENXIO), and nothing else reaches it; the process that holds it can pin it,
 * binding the nsfs fd the kernel gives for its socket or tap onto a file, which PATH then names.
 */
export function namespaceNoCommandEnters(held: NamespaceHeldThroughDevice): string {
  const what = held.kind === 'socket' ? 'socket' : 'tap fd';
  const ioctl = held.kind === 'socket' ? 'SIOCGSKNS' : 'TUNGETDEVNETNS';
  return `no shell command can enter the namespace now: only the ${what} /proc/${held.pid}/fd/${held.fd} of process ${held.pid} holds it, which nsenter cannot open; ${PIN_PATH_PLACEHOLDER} stands for a pin of it, which a process holding that ${what} makes (process ${held.pid}, or one that root gives a copy of it with pidfd_getfd(2)): the ioctl ${ioctl} on the ${what} gives a namespace fd, which it bind-mounts on an empty file while it holds that fd open (\`touch ${PIN_PATH_PLACEHOLDER} && mount --bind /proc/HOLDER/fd/NSFD ${PIN_PATH_PLACEHOLDER}\`, HOLDER that process and NSFD that fd)`;
}
