/**
 * A record names its namespace by identity: a path that now names another namespace is refused and
 * nothing is changed there; a later namespace that got a gone one's inode is not the record's (its
 * cookie tells); FIFOs, files and directories are refused without blocking; a pinned path is
 * recorded in place of /proc/PID/ns/net.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetlinkHandle } from '../../../src/netlink/handle.js';
import { createNamespace, deleteNamespace } from '../../../src/netns/namespace.js';
import {
  identityOfNamespaceAt,
  NamespaceChangedError,
  NamespaceGoneError,
  openNamespaceForRecord,
  openNetworkNamespace,
  openRecordedNamespace,
} from '../../../src/netns/namespace-identity.js';
import { fileIdentity, isSameFile, processIds } from '../../../src/netns/processes.js';
import { attachByPlan } from '../../../src/network/model/plumbing-context.js';
import { VCNET_LINK_GROUP } from '../../../src/network/plan/plan-attach.js';
import { createdLinks } from '../../../src/network/state/network-content-schema.js';
import { recordsHoldingLink, recordsOfNamespace } from '../../../src/network/state/owners.js';
import { CLI, vcnet } from '../../helpers/cli.js';
import { cleanupNamespaces, makeNamespace, namespaceView, replaceWithSameInode } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

let work: string;
const processes: ChildProcess[] = [];
const extraNamespaces: string[] = [];

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'vcnet-identity-'));
});

afterEach(() => {
  for (const child of processes.splice(0)) child.kill('SIGKILL');
  for (const path of extraNamespaces.splice(0)) deleteNamespace(path);
  cleanupNamespaces();
  rmSync(work, { recursive: true, force: true });
});

/** A process in a namespace of its own that no /var/run/netns entry pins. */
async function unpinnedNamespaceProcess(): Promise<ChildProcess> {
  const child = spawn('unshare', ['--net', 'sh', '-c', 'echo ready; exec sleep 120'], { stdio: 'pipe' });
  processes.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('error', reject);
  });
  return child;
}

describe('the processes /proc lists', () => {
  it('include a new process in a namespace of its own, whose ns/net is that namespace and not ours', async () => {
    const child = await unpinnedNamespaceProcess();
    const ids = processIds();
    expect(ids).toContain(process.pid);
    expect(ids).toContain(child.pid);
    expect(ids.every((id) => Number.isInteger(id) && id > 0)).toBe(true);
    const theirs = fileIdentity(`/proc/${child.pid}/ns/net`);
    expect(theirs).toBeDefined();
    expect(isSameFile(`/proc/${child.pid}/ns/net`, theirs!)).toBe(true);
    expect(isSameFile('/proc/self/ns/net', theirs!)).toBe(false);
    expect(fileIdentity(join(work, 'missing'))).toBeUndefined();
    expect(isSameFile(join(work, 'missing'), theirs!)).toBe(false);
  });
});

describe('opening a namespace path', () => {
  it('refuses a FIFO, a regular file, a directory and a missing path, naming it, without blocking', () => {
    const fifo = join(work, 'fifo');
    spawnSync('mkfifo', [fifo]);
    const file = join(work, 'file');
    writeFileSync(file, 'not a namespace');
    const directory = join(work, 'dir');
    mkdirSync(directory);
    const cases: Array<[string, RegExp]> = [
      [fifo, /: a FIFO, not a network namespace \(accepted: the path of a network namespace/],
      [file, /: a regular file, not a network namespace/],
      [directory, /: a directory, not a network namespace/],
      [
        join(work, 'missing'),
        /: no such file \(accepted: the path of a network namespace, such as \/var\/run\/netns\/NAME or \/proc\/PID\/ns\/net\)/,
      ],
      ['/proc/self/ns/mnt', /: a namespace of another type, not a network namespace/],
    ];
    // A namespace's path with a "/" after it: the kernel answers ENOTDIR, which is no "no such file".
    const pod = makeNamespace('slash');
    const trailing = (path: string) =>
      new RegExp(
        `: ${path.replaceAll('/', '\\/')} is a file, not a directory, so the path with a "/" after it names nothing: leave out the trailing "/" \\(accepted:`,
      );
    cases.push(
      [`${pod.path}/`, trailing(pod.path)],
      [`${pod.path}//`, trailing(pod.path)],
      [`${file}/`, trailing(file)],
    );
    cases.push([`${pod.path}/x`, /: no such file/], [`${directory}/`, /: a directory, not a network namespace/]);
    for (const [path, message] of cases) {
      // Through the CLI with a deadline: a blocking open of the FIFO would be killed, not refused.
      const result = spawnSync(
        process.execPath,
        [CLI, 'attach', '--sandbox', 'x', '--netns', path, '--state-dir', join(work, 'state')],
        { encoding: 'utf8', timeout: 20_000 },
      );
      expect(result.signal).toBeNull();
      expect(result.status).toBe(2);
      expect(result.stderr).toContain(`vcnet: --netns ${JSON.stringify(path)}: `);
      expect(result.stderr).toMatch(message);
      expect(() => openNetworkNamespace(path).close()).toThrow(message);
    }
    expect(existsSync(join(work, 'state', 'x'))).toBe(false);
  });

  it('records the pinned /var/run/netns path when given /proc/PID/ns/net of the same namespace', async () => {
    const pod = makeNamespace('pin');
    const child = spawn('ip', ['netns', 'exec', pod.name, 'sh', '-c', 'echo ready; exec sleep 120'], { stdio: 'pipe' });
    processes.push(child);
    await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
    const opened = openNamespaceForRecord(`/proc/${child.pid}/ns/net`);
    try {
      expect(opened.identity.path).toBe(pod.path);
      expect(opened.identity.cookie).toMatch(/^\d+$/);
    } finally {
      opened.close();
    }
    // A namespace nobody pinned keeps the path it was given.
    const unpinned = await unpinnedNamespaceProcess();
    const alone = openNamespaceForRecord(`/proc/${unpinned.pid}/ns/net`);
    expect(alone.identity.path).toBe(`/proc/${unpinned.pid}/ns/net`);
    alone.close();
  });
});

describe('the namespace a tap is made in', () => {
  it("is the handle's, even when its path names another namespace since the handle was opened", async () => {
    const first = makeNamespace('tapns');
    const second = makeNamespace('tapns2');
    const handle = NetlinkHandle.open(first.path);
    try {
      // The path is re-bound to the second namespace; the handle's socket still talks to the first.
      execFileSync('umount', [first.path]);
      execFileSync('mount', ['--bind', second.path, first.path]);
      const made = await attachByPlan(
        { handle, namespacePath: first.path, queues: 1, keepFds: false, vhostNet: 'off', qdiscs: [] },
        { model: 'none', tapName: 'tapns0', mtu: 1500 },
      );
      // Made where the handle's requests go (its MTU and state were set there by netlink too)...
      const tap = await handle.linkByName('tapns0');
      expect(tap.index).toBe(made.tapIndex);
      expect(tap.mtu).toBe(1500);
      // ...and not in the namespace the path names now.
      expect(second.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname)).not.toContain(
        'tapns0',
      );
    } finally {
      handle.close(); // the first namespace goes with its last reference
    }
  });
});

describe('a recorded namespace', () => {
  /**
   * Attaches sandbox `id` in a fresh pod, then keeps its namespace alive with a process while its name
   * goes and a new namespace is mounted at the same path, with the names the record lists.
   */
  async function attachedThenPathReused(
    id: string,
    options: { attachArgs?: string[]; between?: (pod: ReturnType<typeof makeNamespace>) => void } = {},
  ) {
    const { pod } = makePod();
    const untouched = fingerprint(pod);
    const stateDir = join(work, 'state');
    const attached = vcnet([
      'attach',
      '--sandbox',
      id,
      '--netns',
      pod.path,
      '--state-dir',
      stateDir,
      ...(options.attachArgs ?? []),
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    options.between?.(pod);
    const statePath = join(stateDir, id, 'state.json');
    const record = readFileSync(statePath, 'utf8');
    const holder = spawn('ip', ['netns', 'exec', pod.name, 'sh', '-c', 'echo ready; exec sleep 120'], {
      stdio: 'pipe',
    });
    processes.push(holder);
    await new Promise<void>((resolve) => holder.stdout?.once('data', () => resolve()));
    pod.delete();
    const replacement = namespaceView(pod.name, createNamespace(pod.name));
    extraNamespaces.push(replacement.path);
    const node = makeNamespace('node2');
    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', replacement.name]);
    replacement.exec('ip', ['link', 'set', 'eth0', 'up']);
    replacement.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth0']);
    replacement.exec('ip', ['tuntap', 'add', 'tap0_kata', 'mode', 'tap']);
    replacement.exec('tc', ['qdisc', 'add', 'dev', 'eth0', 'ingress']);
    return { pod, untouched, stateDir, statePath, record, holder, replacement, before: fingerprint(replacement) };
  }

  /** The namespace process `pid` runs in, as a TestNamespace (nsenter). */
  function namespaceOf(pid: number) {
    const exec = (command: string, args: string[]) =>
      execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, command, ...args], { encoding: 'utf8' });
    return {
      exec,
      ipJson: <T>(...args: string[]) => JSON.parse(exec('ip', ['-j', ...args]) || '[]') as T,
      tcJson: <T>(...args: string[]) => JSON.parse(exec('tc', ['-j', ...args]) || '[]') as T,
    } as unknown as ReturnType<typeof makeNamespace>;
  }

  it('whose path now names another namespace is not acted on there: detach undoes it through what still holds it', async () => {
    const { pod, untouched, stateDir, statePath, holder, replacement, before } = await attachedThenPathReused('sb');
    const held = `/proc/${holder.pid}/ns/net`;

    const mounts = () => readFileSync('/proc/self/mountinfo', 'utf8').split(`/netns/${pod.name} `).length;
    const mountsBefore = mounts();
    const planned = vcnet(['detach', '--sandbox', 'sb', '--state-dir', stateDir, '--dry-run', '--json']);
    expect(planned.status, planned.stderr).toBe(0);
    expect(JSON.parse(planned.stdout)).toMatchObject({ namespaceHeldAt: held, namespacePathReused: true });

    const detached = vcnet(['detach', '--sandbox', 'sb', '--state-dir', stateDir]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(detached.stdout).toContain(
      `through ${held} (process ${holder.pid} still runs in the namespace; its path names another namespace now, left untouched)`,
    );
    expect(detached.stderr).toContain(`its namespace path ${pod.path} now names another namespace (left untouched)`);
    // Nothing at the path, no mount stacked on it; the recorded namespace is as before attach.
    expect(fingerprint(replacement)).toEqual(before);
    expect(mounts()).toBe(mountsBefore);
    expect(fingerprint(namespaceOf(holder.pid!))).toEqual(untouched);
    expect(existsSync(statePath)).toBe(false);
  });

  // macvtap's detach quotes commands that put the pod's address back primary (plan-detach.ts
  // secondaryComebacks). Pasted, they must act where detach acted, through the holder: the recorded
  // path names another pod's namespace now.
  it('whose path now names another namespace: the commands detach quotes act in the recorded one, not there', async () => {
    const { stateDir, holder, replacement, before } = await attachedThenPathReused('sb3', {
      attachArgs: ['--model', 'macvtap'],
      between: (pod) => pod.exec('ip', ['addr', 'add', '10.200.0.50/24', 'dev', 'eth0']),
    });
    const recorded = namespaceOf(holder.pid!);
    const replacementPromote = () => replacement.exec('sysctl', ['-n', 'net.ipv4.conf.eth0.promote_secondaries']);
    const replacementPromoteBefore = replacementPromote();
    const detached = vcnet(['detach', '--sandbox', 'sb3', '--state-dir', stateDir]);
    expect(detached.status, detached.stderr).toBe(0);
    const notice = detached.stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => String((JSON.parse(line) as { msg: unknown }).msg))
      .find((message) => message.includes('comes back secondary'));
    expect(notice, detached.stderr).toBeDefined();
    const command = /`([^`]+)`/.exec(notice!)?.[1];
    expect(command, notice).toBeDefined();
    const pasted = spawnSync('sh', ['-c', command!], { encoding: 'utf8' });
    expect(pasted.status, `${command}: ${pasted.stderr}`).toBe(0);
    const addresses = recorded
      .ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number; family: string; secondary?: boolean }> }>>(
        'addr',
        'show',
        'dev',
        'eth0',
      )[0]!
      .addr_info.filter((info) => info.family === 'inet')
      .map((info) => `${info.local}/${info.prefixlen}${info.secondary ? ' secondary' : ''}`);
    expect(addresses).toEqual(['10.200.0.2/24', '10.200.0.50/24 secondary']);
    expect(fingerprint(replacement)).toEqual(before);
    expect(replacementPromote()).toBe(replacementPromoteBefore);
  });

  /**
   * add-iface reaches the recorded namespace through its holder too: the ip command its refusal
   * quotes must act there, not on a link of that name in the namespace now at the recorded path.
   * An eth7 in each (the recorded one's with eth0's MAC when `sameMacAsEth0`), add-iface of `request`
   * refused, and the command `quoted` finds in its message run with `appended` after it.
   */
  async function pasteAddIfaceRefusal(
    sandbox: string,
    options: { sameMacAsEth0?: boolean; request: object; quoted: RegExp; appended?: string },
  ) {
    const { stateDir, holder, replacement } = await attachedThenPathReused(sandbox, {
      between: (pod) => {
        const mac = options.sameMacAsEth0
          ? ['address', pod.ipJson<Array<{ address: string }>>('link', 'show', 'eth0')[0]!.address]
          : [];
        pod.exec('ip', ['link', 'add', 'eth7', ...mac, 'type', 'veth', 'peer', 'name', 'eth7-peer']);
        pod.exec('ip', ['link', 'set', 'eth7', 'up']);
        pod.exec('ip', ['addr', 'add', '10.207.0.2/24', 'dev', 'eth7']);
      },
    });
    const recorded = namespaceOf(holder.pid!);
    replacement.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7-peer']);
    const replacementBefore = fingerprint(replacement);
    const request = join(work, `${sandbox}-eth7.json`);
    writeFileSync(request, JSON.stringify(options.request));
    const refused = vcnet(['add-iface', sandbox, request, '--state-dir', stateDir]);
    expect(refused.status, refused.stderr).not.toBe(0);
    const command = options.quoted.exec(refused.stderr)?.[1];
    expect(command, refused.stderr).toBeDefined();
    const pasted = spawnSync('sh', ['-c', `${command}${options.appended ?? ''}`], { encoding: 'utf8' });
    expect(pasted.status, `${command}: ${pasted.stderr}`).toBe(0);
    return { recorded, replacement, replacementBefore };
  }

  it('whose path now names another namespace: the command add-iface refusal quotes acts in the recorded one', async () => {
    const { recorded, replacement, replacementBefore } = await pasteAddIfaceRefusal('sb4', {
      request: { name: 'eth7', mtu: 1600 },
      quoted: /`([^`]+ link set eth7 mtu 1600)`/,
    });
    expect(recorded.ipJson<Array<{ mtu: number }>>('link', 'show', 'eth7')[0]!.mtu).toBe(1600);
    expect(fingerprint(replacement)).toEqual(replacementBefore);
  });

  it('whose path now names another namespace: the command the same-MAC refusal quotes acts in the recorded one', async () => {
    const { recorded, replacement, replacementBefore } = await pasteAddIfaceRefusal('sb5', {
      sameMacAsEth0: true,
      request: { name: 'eth7' },
      quoted: /`([^`]+ link set eth7 address) MAC`/,
      appended: ' 02:5e:00:00:00:07',
    });
    expect(recorded.ipJson<Array<{ address: string }>>('link', 'show', 'eth7')[0]!.address).toBe('02:5e:00:00:00:07');
    expect(fingerprint(replacement)).toEqual(replacementBefore);
  });

  it('whose path now names another namespace is refused by watch; gone, and dropped, once nothing holds it', async () => {
    const { pod, stateDir, statePath, record, holder, replacement, before } = await attachedThenPathReused('sb2');
    // watch checks the identity before it watches anything (it would otherwise plumb the new one).
    const watch = spawnSync(process.execPath, [CLI, 'watch', '--sandbox', 'sb2', '--state-dir', stateDir], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(watch.status, watch.stderr).toBe(1);
    expect(watch.stderr).toContain(`${pod.path} is no longer the namespace recorded in ${statePath}`);
    expect(watch.stderr).not.toContain('mount it back');
    expect(fingerprint(replacement)).toEqual(before);
    expect(readFileSync(statePath, 'utf8')).toBe(record);

    const parsed = JSON.parse(record);
    expect(() => openRecordedNamespace(parsed.namespace, statePath)).toThrow(NamespaceChangedError);
    // When the holder is found but cannot be opened, the hint says to run again, never to mount it back.
    const refused = new NamespaceChangedError(parsed.namespace, { dev: 1, ino: 2 }, statePath, '/proc/1/ns/net');
    expect(refused.hint).toContain('run the command again');
    expect(refused.hint).not.toContain('mount it back');

    // Once nothing holds it, the recorded namespace is gone, with all attach made in it: detach
    // drops the record (as when the path itself is gone) and still changes nothing at the path.
    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));
    const gone = vcnet(['detach', '--sandbox', 'sb2', '--state-dir', stateDir]);
    expect(gone.status, gone.stderr).toBe(0);
    expect(gone.stdout).toContain('is gone');
    expect(existsSync(statePath)).toBe(false);
    expect(fingerprint(replacement)).toEqual(before);
  });

  it('whose namespace is gone and whose inode a later namespace got holds no link there: attach and its dry run name no holder', async (context) => {
    const { pod } = makePod();
    const stateDir = join(work, 'state');
    const attached = vcnet(['attach', '--sandbox', 'gone-pod', '--netns', pod.path, '--state-dir', stateDir]);
    expect(attached.status, attached.stderr).toBe(0);
    const record = JSON.parse(readFileSync(join(stateDir, 'gone-pod', 'state.json'), 'utf8')) as {
      namespace: { ino: number };
      network: Parameters<typeof createdLinks>[0];
    };
    const [tap] = createdLinks(record.network);
    const reused = await replaceWithSameInode(pod);
    if (!reused) {
      console.log("skipped: no new namespace got the gone pod namespace's inode");
      return context.skip();
    }
    // A tap of vcnet's link group that no record knows (its sandbox's record lost), named as gone-pod's was.
    reused.exec('ip', ['tuntap', 'add', 'tap0_kata', 'mode', 'tap']);
    reused.exec('ip', ['link', 'set', 'tap0_kata', 'group', String(VCNET_LINK_GROUP)]);
    for (const dryRun of [[], ['--dry-run']]) {
      const refused = vcnet([
        'attach',
        '--sandbox',
        'next',
        '--netns',
        reused.path,
        '--state-dir',
        stateDir,
        ...dryRun,
      ]);
      expect(refused.status, refused.stderr).not.toBe(0);
      expect(refused.stderr).toContain('no vcnet record knows it');
      expect(refused.stderr).not.toContain('gone-pod');
    }
    // The record names the gone namespace (its cookie), not the one that has its device and inode now.
    const identity = identityOfNamespaceAt(reused.path);
    expect(identity.ino).toBe(record.namespace.ino);
    expect(recordsOfNamespace(identity, [stateDir])).toEqual([]);
    expect(recordsHoldingLink(identity, tap!, [stateDir])).toEqual([]);
    // Without a cookie to compare (a kernel before 5.14), device and inode are all there is.
    const { cookie: _, ...withoutCookie } = identity;
    expect(recordsHoldingLink(withoutCookie, tap!, [stateDir])).toEqual([expect.objectContaining({ id: 'gone-pod' })]);
  });

  it('whose namespace is gone and a later one with its inode is at its path: list says gone, detach drops the record and touches nothing there', async (context) => {
    const { pod } = makePod();
    const stateDir = join(work, 'state');
    const attached = vcnet(['attach', '--sandbox', 'reborn', '--netns', pod.path, '--state-dir', stateDir]);
    expect(attached.status, attached.stderr).toBe(0);
    const statePath = join(stateDir, 'reborn', 'state.json');
    const recorded = JSON.parse(readFileSync(statePath, 'utf8')).namespace as { ino: number; cookie: string };
    const reused = await replaceWithSameInode(pod);
    if (!reused) {
      console.log("skipped: no new namespace got the gone pod namespace's inode");
      return context.skip();
    }
    // The later namespace at the very path the record names (a pod re-created under the same name).
    writeFileSync(pod.path, '');
    execFileSync('mount', ['--bind', reused.path, pod.path]);
    try {
      const now = identityOfNamespaceAt(pod.path);
      expect(now.ino).toBe(recorded.ino);
      expect(now.cookie).not.toBe(recorded.cookie);
      const before = fingerprint(reused);

      const listed = vcnet(['list', '--state-dir', stateDir, '--json']);
      expect(listed.status, listed.stderr).toBe(0);
      const [row] = JSON.parse(listed.stdout) as Array<{ state: string; detail: string }>;
      expect(row).toMatchObject({ state: 'namespace-gone' });
      expect(row!.detail).toContain(`cookie ${now.cookie}`);

      const planned = vcnet(['detach', '--sandbox', 'reborn', '--state-dir', stateDir, '--dry-run', '--json']);
      expect(planned.status, planned.stderr).toBe(0);
      expect(JSON.parse(planned.stdout)).toMatchObject({ namespaceGone: pod.path });
      const detached = vcnet(['detach', '--sandbox', 'reborn', '--state-dir', stateDir]);
      expect(detached.status, detached.stderr).toBe(0);
      expect(detached.stdout).toContain('is gone');
      expect(existsSync(statePath)).toBe(false);
      expect(fingerprint(reused)).toEqual(before);
    } finally {
      spawnSync('umount', [pod.path]);
      rmSync(pod.path, { force: true });
    }
  });

  it('whose namespace is gone and a later one with its inode is held only by a mount outside /var/run/netns: list, detach and gc all say gone, gc drops the record', async (context) => {
    const { pod } = makePod();
    const stateDir = join(work, 'state');
    const registry = { VCNET_STATE_REGISTRY: join(work, 'registry') };
    const attached = vcnet(['attach', '--sandbox', 'away', '--netns', pod.path, '--state-dir', stateDir], registry);
    expect(attached.status, attached.stderr).toBe(0);
    const statePath = join(stateDir, 'away', 'state.json');
    const recorded = JSON.parse(readFileSync(statePath, 'utf8')).namespace as { ino: number; cookie: string };
    const reused = await replaceWithSameInode(pod);
    if (!reused) {
      console.log("skipped: no new namespace got the gone pod namespace's inode");
      return context.skip();
    }
    // The later namespace kept by a bind mount alone, as Docker's /var/run/docker/netns/* or rootless
    // podman's /run/user/UID/netns/* keep theirs: no /var/run/netns entry, no process in it.
    const mounted = join(work, 'later-netns');
    writeFileSync(mounted, '');
    execFileSync('mount', ['--bind', reused.path, mounted]);
    reused.delete();
    try {
      const now = identityOfNamespaceAt(mounted);
      expect(now.ino).toBe(recorded.ino);
      expect(now.cookie).not.toBe(recorded.cookie);

      const listed = vcnet(['list', '--state-dir', stateDir, '--json'], registry);
      expect(listed.status, listed.stderr).toBe(0);
      const [row] = JSON.parse(listed.stdout) as Array<{ state: string; hint: string }>;
      expect(row).toMatchObject({ state: 'namespace-gone' });
      const planned = vcnet(['detach', '--sandbox', 'away', '--state-dir', stateDir, '--dry-run', '--json'], registry);
      expect(JSON.parse(planned.stdout)).toMatchObject({ namespaceGone: pod.path });

      // What list's hint says to run drops the record, as detach would.
      const gcArgs = ['gc', '--netns', pod.path, '--state-dir', stateDir, '--json'];
      const dry = vcnet([...gcArgs, '--dry-run'], registry);
      expect(dry.status, dry.stderr).toBe(0);
      expect(JSON.parse(dry.stdout).removed).toEqual([
        expect.objectContaining({
          kind: 'state',
          name: 'away',
          detail: expect.stringContaining(`cookie ${now.cookie}`),
        }),
      ]);
      const collected = vcnet(gcArgs, registry);
      expect(collected.status, collected.stderr).toBe(0);
      expect(existsSync(statePath)).toBe(false);
    } finally {
      spawnSync('umount', [mounted]);
    }
  });

  // gc left an unreadable record's inode alone whoever had it: a later namespace that got the gone
  // one's inode was withheld for good, and the record kept, though its salvaged cookie tells them apart.
  it('unreadable, whose namespace is gone and whose inode a later namespace got: gc drops it by its salvaged cookie and leaves the later namespace as it was; without a cookie, leaves that namespace alone and says why', async (context) => {
    const { pod } = makePod();
    const stateDir = join(work, 'state');
    const registry = { VCNET_STATE_REGISTRY: join(work, 'registry') };
    const attached = vcnet(['attach', '--sandbox', 'salvaged', '--netns', pod.path, '--state-dir', stateDir], registry);
    expect(attached.status, attached.stderr).toBe(0);
    const statePath = join(stateDir, 'salvaged', 'state.json');
    // Damaged as a bit flip in a key leaves it: the namespace object whole, the network not.
    const damaged = JSON.parse(readFileSync(statePath, 'utf8'));
    delete damaged.network.endpoints[0].plumbing;
    const recorded = damaged.namespace as { ino: number; cookie?: string };
    if (recorded.cookie === undefined) {
      console.log('skipped: the kernel tells no namespace cookies (before 5.14)');
      return context.skip();
    }
    const reused = await replaceWithSameInode(pod);
    if (!reused) {
      console.log("skipped: no new namespace got the gone pod namespace's inode");
      return context.skip();
    }
    // A tap of vcnet's group no record claims: only reported by a gc that no record sends there.
    reused.exec('ip', ['tuntap', 'add', 'tap0_kata', 'mode', 'tap']);
    reused.exec('ip', ['link', 'set', 'tap0_kata', 'group', String(VCNET_LINK_GROUP)]);
    const later = identityOfNamespaceAt(reused.path);
    expect(later.ino).toBe(recorded.ino);
    expect(later.cookie).not.toBe(recorded.cookie);
    const before = fingerprint(reused);
    interface Report {
      removed: Array<{ kind: string; name: string; detail?: string }>;
      skipped: Array<{ file: string; reason: string }>;
      withheld: Array<{ namespacePath: string }>;
      unclaimed: Array<{ namespacePath: string; links: string[] }>;
    }
    const plainDryRun = () => {
      const result = vcnet(['gc', '--state-dir', stateDir, '--dry-run', '--json'], registry);
      expect(result.status, result.stderr).toBe(0);
      return JSON.parse(result.stdout) as Report;
    };

    // No cookie survived: the later namespace cannot be told from the recorded one, so it is left alone.
    const { cookie: _, ...withoutCookie } = damaged.namespace;
    writeFileSync(statePath, JSON.stringify({ ...damaged, namespace: withoutCookie }, null, 2));
    const unsure = plainDryRun();
    expect(unsure.removed.filter((item) => item.kind === 'state')).toEqual([]);
    expect(unsure.withheld.map((entry) => entry.namespacePath)).toContain(reused.path);
    expect(unsure.skipped.find((entry) => entry.file === statePath)?.reason).toContain(
      `it keeps no readable cookie of its namespace, so gc cannot tell the namespace with inode ${recorded.ino} now from the recorded one and leaves it alone`,
    );

    writeFileSync(statePath, JSON.stringify(damaged, null, 2));
    const planned = plainDryRun();
    expect(planned.removed.filter((item) => item.kind === 'state')).toEqual([
      expect.objectContaining({ name: 'salvaged', detail: expect.stringContaining(`cookie ${later.cookie}`) }),
    ]);
    expect(planned.skipped.map((entry) => entry.file)).not.toContain(statePath);
    expect(planned.withheld.map((entry) => entry.namespacePath)).not.toContain(reused.path);
    expect(planned.unclaimed).toContainEqual(
      expect.objectContaining({ namespacePath: reused.path, links: ['tap0_kata'] }),
    );
    expect(existsSync(statePath)).toBe(true);

    const collected = vcnet(['gc', '--netns', pod.path, '--state-dir', stateDir, '--json'], registry);
    expect(collected.status, collected.stderr).toBe(0);
    expect(JSON.parse(collected.stdout).removed).toEqual([
      expect.objectContaining({ kind: 'state', name: 'salvaged' }),
    ]);
    expect(existsSync(statePath)).toBe(false);
    expect(fingerprint(reused)).toEqual(before);
  });

  // gc kept an unreadable record whose namespace nothing held any more (no mount, no entry, no
  // process, thread or fd) for good, though it drops a readable one of such a namespace.
  it('unreadable, whose namespace nothing holds any more: gc drops it as a readable one (in --netns only there), with or without a cookie; keeps one whose namespace a mount still holds, and one that names no inode', async () => {
    const stateDir = join(work, 'state');
    const registry = { VCNET_STATE_REGISTRY: join(work, 'registry') };
    /** A sandbox attached in a pod of its own, its record damaged as a bit flip in a key leaves it. */
    const damagedRecord = (id: string, damageNamespace: (namespace: Record<string, unknown>) => void) => {
      const { pod } = makePod();
      const attached = vcnet(['attach', '--sandbox', id, '--netns', pod.path, '--state-dir', stateDir], registry);
      expect(attached.status, attached.stderr).toBe(0);
      const file = join(stateDir, id, 'state.json');
      const record = JSON.parse(readFileSync(file, 'utf8'));
      delete record.network.endpoints[0].plumbing;
      damageNamespace(record.namespace);
      writeFileSync(file, JSON.stringify(record, null, 2));
      return { pod, file, ino: record.namespace.ino as number | undefined };
    };
    const gone = damagedRecord('gone', () => {});
    const cookieless = damagedRecord('cookieless', (namespace) => delete namespace.cookie);
    const nameless = damagedRecord('nameless', (namespace) => {
      delete namespace.ino;
      delete namespace.dev;
    });
    const mounted = damagedRecord('mounted', () => {});
    // Kept by a bind mount alone, outside /var/run/netns: only the holder search finds it.
    const mountPoint = join(work, 'held-netns');
    writeFileSync(mountPoint, '');
    execFileSync('mount', ['--bind', mounted.pod.path, mountPoint]);
    try {
      for (const { pod } of [gone, cookieless, nameless, mounted]) pod.delete();
      interface Report {
        removed: Array<{ kind: string; name: string; namespacePath: string; file: string; detail?: string }>;
        skipped: Array<{ file: string; reason: string }>;
      }
      const gc = (...args: string[]) => {
        const result = vcnet(['gc', '--state-dir', stateDir, '--json', ...args], registry);
        expect(result.status, result.stderr).toBe(0);
        return JSON.parse(result.stdout) as Report;
      };
      const dropped = (report: Report) =>
        report.removed.filter((item) => item.kind === 'state').map((item) => item.name);
      // Another namespace made meanwhile may have the cookie-less record's freed inode (the kernel
      // gives the lowest free one): then it cannot be told from the recorded one, and is left alone.
      const inodeTaken = (ino: number) =>
        [
          ...readdirSync('/var/run/netns').map((name) => join('/var/run/netns', name)),
          ...readdirSync('/proc')
            .filter((name) => /^\d+$/.test(name))
            .map((name) => `/proc/${name}/ns/net`),
        ].some((path) => {
          try {
            return statSync(path).ino === ino;
          } catch {
            return false;
          }
        });
      const unreadableReason = (report: Report, file: string) =>
        report.skipped.find((entry) => entry.file === file)?.reason;

      const scoped = gc('--netns', gone.pod.path, '--dry-run');
      expect(scoped.removed).toEqual([
        expect.objectContaining({
          kind: 'state',
          name: 'gone',
          namespacePath: gone.pod.path,
          file: gone.file,
          detail: expect.stringMatching(/^unreadable \(.*\); its namespace \(inode \d+.*\) exists nowhere/),
        }),
      ]);
      expect(unreadableReason(scoped, gone.file)).toBeUndefined();
      expect(unreadableReason(scoped, cookieless.file)).toBeDefined();

      const planned = gc('--dry-run');
      const cookielessKept = inodeTaken(cookieless.ino!);
      if (cookielessKept) console.log('the cookie-less record is kept: a later namespace got its inode');
      expect(dropped(planned).sort()).toEqual(cookielessKept ? ['gone'] : ['cookieless', 'gone']);
      // One whose namespace a mount still holds stays skipped, for what it was skipped for.
      expect(dropped(planned)).not.toContain('mounted');
      expect(unreadableReason(planned, mounted.file)).toMatch(/plumbing/);
      // One that names no inode may be about any namespace: skipped, never dropped.
      expect(dropped(planned)).not.toContain('nameless');
      expect(unreadableReason(planned, nameless.file)).toContain('which holds no network namespace now');
      for (const { file } of [gone, cookieless, nameless, mounted]) expect(existsSync(file)).toBe(true);

      expect(dropped(gc('--netns', gone.pod.path))).toEqual(['gone']);
      expect(existsSync(gone.file)).toBe(false);
      expect(existsSync(cookieless.file)).toBe(true);
      const collected = gc();
      expect(dropped(collected)).toEqual(cookielessKept ? [] : ['cookieless']);
      expect(existsSync(cookieless.file)).toBe(cookielessKept);
      expect(existsSync(mounted.file)).toBe(true);
      expect(existsSync(nameless.file)).toBe(true);

      // Once the mount goes, nothing holds that namespace: its record goes too.
      execFileSync('umount', [mountPoint]);
      expect(dropped(gc())).toContain('mounted');
      expect(existsSync(mounted.file)).toBe(false);
      expect(existsSync(nameless.file)).toBe(true);
    } finally {
      spawnSync('umount', [mountPoint]);
    }
  });

  it('is reported gone when the process whose namespace it was has exited', async () => {
    const holder = await unpinnedNamespaceProcess();
    const node = makeNamespace('node');
    node.exec('ip', ['link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(holder.pid)]);
    const path = `/proc/${holder.pid}/ns/net`;
    const stateDir = join(work, 'state');
    // eth0 has no address here: named, so it is attached anyway (address-less links are skipped otherwise).
    const attached = vcnet([
      'attach',
      '--sandbox',
      'sb',
      '--netns',
      path,
      '--state-dir',
      stateDir,
      '--model',
      'none',
      '--interface',
      'eth0',
    ]);
    expect(attached.stderr).toBe('');
    const statePath = join(stateDir, 'sb', 'state.json');
    const record = JSON.parse(readFileSync(statePath, 'utf8'));
    expect(record.namespace.path).toBe(path);
    expect(record.network.config.namespacePath).toBe(path);

    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));
    expect(() => openRecordedNamespace(record.namespace, statePath)).toThrow(NamespaceGoneError);
    const detached = vcnet(['detach', '--sandbox', 'sb', '--state-dir', stateDir]);
    expect(detached.stderr).not.toMatch(/\bE[A-Z]{3,}\b/);
  });

  it('is never the caller namespace: an empty recorded path is refused', () => {
    expect(() => openRecordedNamespace({ path: '', dev: 1, ino: 1 }, '/x/state.json')).toThrow(
      /namespace path recorded in \/x\/state.json "": empty \(accepted: /,
    );
  });
});
