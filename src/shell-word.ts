/**
 * Words and comments for the POSIX shell that `vcnet attach|detach --dry-run` output is piped to.
 * Link names, address labels and congestion control names come from the pod namespace, whose owner
 * picks them, and the kernel allows `;`, `|`, `$`, quotes and backquotes in them: unquoted they would
 * run as commands.
 */
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

/** Where `ip netns` pins named namespaces; `ip -n NAME` reaches one of them by its name. */
const NAMED_NAMESPACE = /^\/(?:var\/)?run\/netns\/([^/]+)$/;

/** How a quoted command enters a namespace: by its /var/run/netns name when it has one, or always by nsenter and its path. */
export type NamespaceEntry = 'by-name-or-path' | 'by-path';

/**
 * The `ip` command that acts in the namespace at `namespacePath`, to paste into a host shell: `ip -n
 * NAME` for a namespace pinned as /var/run/netns/NAME, else `nsenter --net=PATH ip`. A bare `ip`
 * pasted on the host acts in the host's namespace, where other sandboxes' links may live.
 */
export function ipCommandIn(namespacePath: string): string {
  return commandIn(namespacePath, 'ip');
}

/**
 * `program` run in the namespace at `namespacePath` (or in this one when undefined), to paste into a
 * host shell: `ip -n NAME` (`tc -n NAME`) for `ip` (`tc`) in a namespace pinned as
 * /var/run/netns/NAME, `ip netns exec NAME program` for another program there, else (or with `enter:
 * 'by-path'`) `nsenter --net=PATH program`.
 */
export function commandIn(
  namespacePath: string | undefined,
  program: string,
  enter: NamespaceEntry = 'by-name-or-path',
): string {
  if (namespacePath === undefined) return program;
  const name = enter === 'by-path' ? undefined : NAMED_NAMESPACE.exec(namespacePath)?.[1];
  if (name && name !== '.' && name !== '..')
    return program === 'ip' || program === 'tc'
      ? `${program} -n ${shellWord(name)}`
      : `ip netns exec ${shellWord(name)} ${program}`;
  return `nsenter --net=${shellWord(namespacePath)} ${program}`;
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
export function sysctlCommandIn(
  namespacePath: string | undefined,
  key: string,
  value: number,
  enter: NamespaceEntry = 'by-name-or-path',
): string {
  if (key.includes('='))
    return `echo ${value} | ${commandIn(namespacePath, 'tee', enter)} ${shellWord(`/proc/sys/${key}`)} >/dev/null`;
  const written = key.includes('.') ? key : key.replaceAll('/', '.');
  return `${commandIn(namespacePath, 'sysctl -q -w', enter)} ${shellWord(`${written}=${value}`)}`;
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
