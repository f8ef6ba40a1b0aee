/**
 * The commands `vcnet gc` quotes for what it leaves (a veth moved into vcnet's link group, an htb of
 * a rate limit's shape that no record claims) enter the namespace one way: `ip -n NAME` and `tc -n
 * NAME` where iproute2 reaches it by NAME, `nsenter --net=PATH` for both otherwise. iproute2 opens
 * NAME in the directory it was built with (/var/run/netns upstream, /run/netns in Debian's), so NAME
 * is used only when /run/netns/NAME and /var/run/netns/NAME are both the very file gc was given. Each
 * command is pasted into bash, in a throwaway namespace standing in for the host's (a bare `ip`
 * there touches nothing real), and must do what gc says it does in the pod's namespace. Where
 * /var/run is a directory of its own, which this host's is not, a private mount namespace stands in
 * for such a host: a tmpfs over /var there, with NAME in it bound to another namespace (or the pod's,
 * with /run/netns/NAME bound to another); the host's /var and /run are never touched.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../../helpers/cleanup.js';
import { CLI } from '../../helpers/cli.js';
import { makeNamespace, type TestNamespace } from '../../helpers/namespace.js';

const skipReason = process.getuid?.() !== 0 ? 'gc and mount namespaces need root' : undefined;
if (skipReason) console.log(`skipping the gc quoted-command tests: ${skipReason}`);

const cleanup = cleanupAfterEach();

/** Names a tenant may give: the shell must not split or expand them. */
const GROUPED = "g$0'x";
const SHAPED = 'h;1';

/** A veth pair in `namespace`: GROUPED in vcnet's group, SHAPED under an htb of vcnet's rate-limit shape. */
function leaveForGc(namespace: TestNamespace): void {
  namespace.exec('ip', ['link', 'add', GROUPED, 'type', 'veth', 'peer', 'name', SHAPED]);
  namespace.exec('ip', ['link', 'set', GROUPED, 'group', '0x7663']);
  namespace.exec('tc', ['qdisc', 'add', 'dev', SHAPED, 'root', 'handle', '1:', 'htb', 'default', '2']);
  for (const [parent, classId] of [
    ['1:', '1:1'],
    ['1:1', '1:2'],
  ])
    namespace.exec('tc', [
      ...['class', 'add', 'dev', SHAPED, 'parent', parent!, 'classid', classId!],
      ...['htb', 'rate', '10mbit', 'ceil', '10mbit'],
    ]);
}

/** The link group as ip -j gives it: 30307 is vcnet's 0x7663. */
const groupOf = (namespace: TestNamespace) =>
  namespace.ipJson<Array<{ group: string }>>('-d', 'link', 'show', 'dev', GROUPED)[0]?.group;
const rootQdiscOf = (namespace: TestNamespace) =>
  namespace.tcJson<Array<{ kind: string }>>('qdisc', 'show', 'dev', SHAPED, 'root')[0]?.kind;

/**
 * Runs `program` with `args` in a private mount namespace where /var is a tmpfs and /var/run a
 * directory of its own, holding only netns/NAME bound to `varRunTarget` (a /run/netns path), and,
 * with `runOverlay`, /run/netns/NAME bound to that other /run/netns path: NAME in iproute2's two
 * directories is then two namespaces.
 */
function inSplitRun(
  name: string,
  varRunTarget: string,
  runOverlay: string | undefined,
  program: string[],
): ReturnType<typeof spawnSync> {
  const script = [
    'set -e',
    'mount -t tmpfs vcnet-test-var /var',
    'mkdir -p /var/run/netns',
    `touch "/var/run/netns/$1"`,
    `mount --bind "$2" "/var/run/netns/$1"`,
    ...(runOverlay === undefined ? [] : [`mount --bind "$3" "/run/netns/$1"`]),
    'shift 3',
    'exec "$@"',
  ].join('\n');
  return spawnSync(
    'unshare',
    [
      ...['--mount', '--propagation', 'private', 'bash', '-c', script, 'bash'],
      ...[name, varRunTarget, runOverlay ?? '', ...program],
    ],
    { encoding: 'utf8' },
  );
}

interface GcReport {
  leftAlone: Array<{ kind: string; name: string; detail: string }>;
  failures: unknown[];
}

/** Every `…` command in the details gc gave for GROUPED and SHAPED, in that order. */
function quotedCommands(stdout: string): string[] {
  const report = JSON.parse(stdout) as GcReport;
  expect(report.failures).toEqual([]);
  return [GROUPED, SHAPED].map((name) => {
    const detail = report.leftAlone.find((item) => item.name === name)?.detail ?? '';
    const commands = [...detail.matchAll(/`([^`]*)`/g)].map((match) => match[1]!);
    expect(commands, detail).toHaveLength(1);
    return commands[0]!;
  });
}

/** `command` pasted into bash in a namespace of its own, standing in for the host's, or in `wrap`'s mount namespace. */
function paste(command: string, wrap: (program: string[]) => ReturnType<typeof spawnSync> = run): void {
  const pasted = wrap(['unshare', '--net', 'bash', '-c', command]);
  expect(pasted.status, `${command}: ${pasted.stderr}`).toBe(0);
}

function run(program: string[]): ReturnType<typeof spawnSync> {
  return spawnSync(program[0]!, program.slice(1), { encoding: 'utf8' });
}

/** Pastes gc's two commands and checks they did what they say, in `pod` and nowhere else (`decoy`). */
function pasteAndCheck(commands: string[], pod: TestNamespace, decoy?: TestNamespace, wrap?: typeof run): void {
  expect(groupOf(pod)).toBe('30307');
  expect(rootQdiscOf(pod)).toBe('htb');
  for (const command of commands) paste(command, wrap);
  expect(groupOf(pod)).toBe('default');
  expect(rootQdiscOf(pod)).not.toBe('htb');
  if (decoy) {
    expect(groupOf(decoy)).toBe('30307');
    expect(rootQdiscOf(decoy)).toBe('htb');
  }
}

describe.skipIf(skipReason)('the commands gc quotes for what it leaves', () => {
  it('enter a namespace pinned in /var/run/netns by its name, the same way for ip and tc, and work pasted into bash', () => {
    const pod = makeNamespace('pod');
    leaveForGc(pod);
    const state = cleanup.directory('vcnet-gc-quoted-');
    const gc = run([process.execPath, CLI, 'gc', '--netns', pod.path, '--state-dir', state, '--dry-run', '--json']);
    expect(gc.status, String(gc.stderr)).toBe(0);
    const commands = quotedCommands(String(gc.stdout));
    expect(commands).toEqual([
      `ip -n ${pod.name} link set dev 'g$0'\\''x' group default`,
      `tc -n ${pod.name} qdisc del dev 'h;1' root handle 1:`,
    ]);
    pasteAndCheck(commands, pod);
  });

  it('enter by nsenter and the path when /var/run/netns/NAME is another namespace than the /run/netns/NAME gc was given', () => {
    const pod = makeNamespace('pod');
    const decoy = makeNamespace('decoy');
    leaveForGc(pod);
    leaveForGc(decoy);
    const state = cleanup.directory('vcnet-gc-quoted-');
    const runPath = `/run/netns/${pod.name}`;
    const split = (program: string[]) => inSplitRun(pod.name, `/run/netns/${decoy.name}`, undefined, program);
    const gc = split([process.execPath, CLI, 'gc', '--netns', runPath, '--state-dir', state, '--dry-run', '--json']);
    expect(gc.status, String(gc.stderr)).toBe(0);
    const commands = quotedCommands(String(gc.stdout));
    expect(commands).toEqual([
      `nsenter --net=${runPath} ip link set dev 'g$0'\\''x' group default`,
      `nsenter --net=${runPath} tc qdisc del dev 'h;1' root handle 1:`,
    ]);
    pasteAndCheck(commands, pod, decoy, split);
    // The host's own view is as it was: /var/run/netns/NAME is the pod's namespace here.
    expect(run(['ip', '-n', pod.name, 'link', 'show', 'dev', GROUPED]).status).toBe(0);
  });

  it('enter by nsenter and the path when /run/netns/NAME is another namespace than the /var/run/netns/NAME gc was given', () => {
    const pod = makeNamespace('pod');
    const decoy = makeNamespace('decoy');
    leaveForGc(pod);
    leaveForGc(decoy);
    const state = cleanup.directory('vcnet-gc-quoted-');
    const varRunPath = `/var/run/netns/${pod.name}`;
    // /var/run/netns/NAME: the pod's namespace; /run/netns/NAME: the decoy's (Debian's `ip -n NAME` opens that one).
    const split = (program: string[]) =>
      inSplitRun(pod.name, `/run/netns/${pod.name}`, `/run/netns/${decoy.name}`, program);
    const gc = split([process.execPath, CLI, 'gc', '--netns', varRunPath, '--state-dir', state, '--dry-run', '--json']);
    expect(gc.status, String(gc.stderr)).toBe(0);
    const commands = quotedCommands(String(gc.stdout));
    expect(commands).toEqual([
      `nsenter --net=${varRunPath} ip link set dev 'g$0'\\''x' group default`,
      `nsenter --net=${varRunPath} tc qdisc del dev 'h;1' root handle 1:`,
    ]);
    pasteAndCheck(commands, pod, decoy, split);
  });
});
