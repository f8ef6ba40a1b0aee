/**
 * vcnet trusts nothing in a state directory it did not make: a lock file or record directory that is
 * a symbolic link is refused (nothing is written through it), a state directory another user could
 * change is refused with exit 2, and a record edited to name a pod's link as vcnet's own does not get
 * that link deleted. Commands that write no record make no state directory and register none, and a
 * state directory that cannot be made is a VCNET_STATE_DIR error (exit 2) saying why.
 */
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-trust-');

/** A registry of this test's own, so that what a command registers can be looked at. */
function registryEnvironment(): Record<string, string> {
  return { VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry') };
}

function registered(): string[] {
  const path = join(stateDirectory(), 'registry');
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : [];
}

function linkNames(pod: ReturnType<typeof makePod>['pod']): string[] {
  return pod.ipJson<Array<{ ifname: string }>>('link', 'show').map((link) => link.ifname);
}

describe('a state directory with links planted in it', () => {
  it('a lock file that is a symbolic link: attach refuses it and writes nothing through it', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const root = join(stateDirectory(), 'state');
    const victim = join(stateDirectory(), 'victim');
    writeFileSync(victim, 'precious\n');
    mkdirSync(join(root, '.locks'), { recursive: true, mode: 0o700 });
    symlinkSync(victim, join(root, '.locks', 's1'));
    const attach = vcnet(
      ['attach', '--sandbox', 's1', '--netns', pod.path, '--state-dir', root],
      registryEnvironment(),
    );
    expect(attach.status, attach.stderr).toBe(1);
    expect(attach.stderr).toContain(`the lock file ${join(root, '.locks', 's1')} is a symbolic link`);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(fingerprint(pod)).toEqual(before);
  });

  it('a record directory that is a symbolic link: attach refuses it, and no record lands in its target', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const root = join(stateDirectory(), 'state');
    const target = join(stateDirectory(), 'target');
    mkdirSync(root, { mode: 0o700 });
    mkdirSync(target);
    symlinkSync(target, join(root, 's1'));
    const attach = vcnet(
      ['attach', '--sandbox', 's1', '--netns', pod.path, '--state-dir', root],
      registryEnvironment(),
    );
    expect(attach.status, attach.stderr).toBe(1);
    expect(attach.stderr).toContain(`the record directory ${join(root, 's1')} is a symbolic link`);
    expect(readdirSync(target)).toEqual([]);
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe('a state directory another user could change', () => {
  it('group/other-writable or owned by another uid: attach and detach exit 2 naming it, its owner and mode', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const root = join(stateDirectory(), 'state');
    mkdirSync(root, { mode: 0o700 });
    chmodSync(root, 0o777);
    const attach = vcnet(
      ['attach', '--sandbox', 's1', '--netns', pod.path, '--state-dir', root],
      registryEnvironment(),
    );
    expect(attach.status, attach.stderr).toBe(2);
    expect(attach.stderr).toContain(
      `cannot use ${root} as a state directory: it is writable by its group and others (owner uid 0, mode 0777)`,
    );
    expect(attach.stderr).toContain(`chown root ${root}; chmod 700 ${root}`);
    expect(fingerprint(pod)).toEqual(before);
    expect(readdirSync(root)).toEqual([]);

    chmodSync(root, 0o700);
    chownSync(root, 65534, 65534);
    const detach = vcnet(['detach', '--sandbox', 's1', '--state-dir', root], registryEnvironment());
    expect(detach.status, detach.stderr).toBe(2);
    expect(detach.stderr).toContain(`it is owned by uid 65534 (mode 0700), not by vcnet's effective uid 0`);
    expect(detach.stderr).not.toContain('not attached');
  });

  it('a .locks directory others can write in is refused too', () => {
    const { pod } = makePod();
    const root = join(stateDirectory(), 'state');
    mkdirSync(join(root, '.locks'), { recursive: true, mode: 0o700 });
    chmodSync(join(root, '.locks'), 0o1777);
    const attach = vcnet(
      ['attach', '--sandbox', 's1', '--netns', pod.path, '--state-dir', root],
      registryEnvironment(),
    );
    expect(attach.status, attach.stderr).toBe(2);
    expect(attach.stderr).toContain(`cannot use ${join(root, '.locks')} as a state directory`);
    expect(linkNames(pod)).not.toContain('tap0_kata');
  });
});

describe('a registry (VCNET_STATE_REGISTRY) another user could change', () => {
  it("in a directory others can write, or itself writable, another uid's or a link: attach and gc exit 2 naming it", () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const state = join(stateDirectory(), 'state');
    const shared = join(stateDirectory(), 'shared');
    mkdirSync(shared, { mode: 0o700 });
    const registry = join(shared, 'registry');
    const run = (args: string[]) => vcnet(args, { VCNET_STATE_REGISTRY: registry });
    const attach = () => run(['attach', '--sandbox', 's1', '--netns', pod.path, '--state-dir', state]);
    const refused = (result: ReturnType<typeof vcnet>, problem: string) => {
      expect(result.status, result.stderr).toBe(2);
      expect(result.stderr).toContain(
        `invalid VCNET_STATE_REGISTRY: "${registry}" (accepted: a file no other user can change (${problem}`,
      );
      expect(fingerprint(pod)).toEqual(before);
      expect(existsSync(join(state, 's1'))).toBe(false);
    };
    // A directory others can write is refused unless it is sticky (below).
    for (const mode of [0o777, 0o770]) {
      chmodSync(shared, mode);
      const writers = mode === 0o770 ? 'its group' : 'its group and others';
      refused(attach(), `its directory ${shared} is writable by ${writers} (owner uid 0, mode 0${mode.toString(8)})`);
    }
    chmodSync(shared, 0o700);
    writeFileSync(registry, '', { mode: 0o666 });
    chmodSync(registry, 0o666);
    refused(attach(), `the file ${registry} is writable by its group and others (owner uid 0, mode 0666)`);
    // gc reads the registry to find every record: it refuses it too, before it looks at anything.
    refused(run(['gc', '--dry-run', '--netns', pod.path]), `the file ${registry} is writable`);
    chmodSync(registry, 0o644);
    chownSync(registry, 65534, 65534);
    refused(attach(), `the file ${registry} is owned by uid 65534 (mode 0644), not by root or vcnet's effective uid 0`);
    writeFileSync(join(shared, 'elsewhere'), '');
    rmSync(registry);
    symlinkSync(join(shared, 'elsewhere'), registry);
    refused(attach(), 'it is a symbolic link');

    // In a sticky directory (as /tmp) others cannot replace the file: one vcnet makes there works, and
    // the file's own checks still hold.
    rmSync(registry);
    chmodSync(shared, 0o1777);
    expect(attach().status).toBe(0);
    expect(readFileSync(registry, 'utf8')).toBe(`${state}\n`);
    expect(run(['detach', '--sandbox', 's1', '--state-dir', state]).status).toBe(0);
    chmodSync(registry, 0o666);
    refused(attach(), `the file ${registry} is writable by its group and others (owner uid 0, mode 0666)`);
    rmSync(registry);

    // One vcnet made (its directory 0700, the file 0644) works, and so does the same one again.
    rmSync(shared, { recursive: true });
    expect(attach().status).toBe(0);
    expect(readFileSync(registry, 'utf8')).toBe(`${state}\n`);
    expect(run(['detach', '--sandbox', 's1', '--state-dir', state]).status).toBe(0);
    expect(attach().status).toBe(0);
    expect(run(['detach', '--sandbox', 's1', '--state-dir', state]).status).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });
});

describe('an edited record', () => {
  it("naming the pod's veth as the tap vcnet created: detach leaves the veth and says why", () => {
    const { pod } = makePod();
    const root = stateDirectory();
    const attach = vcnet(
      ['attach', '--sandbox', 's1', '--netns', pod.path, '--state-dir', root],
      registryEnvironment(),
    );
    expect(attach.status, attach.stderr).toBe(0);
    const path = join(root, 's1', 'state.json');
    // Every mention of the tap becomes eth0: its create-link step, its qdisc and filter, tapName. The
    // create-link step also has the ifindex the tap got: detach finds the tap by it (and deletes it,
    // under its real name), and leaves eth0, which is not the link attach made.
    writeFileSync(path, readFileSync(path, 'utf8').replaceAll('"tap0_kata"', '"eth0"'));
    const detach = vcnet(['detach', '--sandbox', 's1', '--state-dir', root], registryEnvironment());
    expect(detach.status, detach.stderr).toBe(0);
    expect(linkNames(pod)).toContain('eth0');
    expect(linkNames(pod)).not.toContain('tap0_kata');
    expect(detach.stderr).toMatch(
      /left eth0 \(ifindex \d+, veth\) as it is: it is not the link attach made under that name/,
    );
  });
});

describe('an edited record without ifindexes (as an older build wrote it)', () => {
  it("naming the pod's veth as the tap: detach finds it by name, sees a veth, and leaves it", () => {
    const { pod } = makePod();
    const root = stateDirectory();
    const attach = vcnet(
      ['attach', '--sandbox', 's2', '--netns', pod.path, '--state-dir', root],
      registryEnvironment(),
    );
    expect(attach.status, attach.stderr).toBe(0);
    const path = join(root, 's2', 'state.json');
    const record = JSON.parse(readFileSync(path, 'utf8').replaceAll('"tap0_kata"', '"eth0"'));
    // The create-link step as an older build recorded it: no ifindex.
    const stepsOf = (value: unknown): void => {
      if (Array.isArray(value)) for (const item of value) stepsOf(item);
      else if (value && typeof value === 'object') {
        const step = value as { step?: string; index?: unknown };
        if (step.step === 'create-link') delete step.index;
        for (const child of Object.values(value)) stepsOf(child);
      }
    };
    stepsOf(record);
    writeFileSync(path, JSON.stringify(record, null, 2));
    const detach = vcnet(['detach', '--sandbox', 's2', '--state-dir', root], registryEnvironment());
    expect(detach.status, detach.stderr).toBe(0);
    expect(linkNames(pod)).toContain('eth0');
    expect(detach.stderr).toContain(
      "left eth0 as it is: the record says vcnet created it (a tun in vcnet's group 0x7663), but it is a veth in group 0x0",
    );
    // vcnet's real tap is not named by the record any more: gc finds it as an unclaimed leftover.
    expect(vcnet(['gc', '--netns', pod.path, '--state-dir', root], registryEnvironment()).status).toBe(0);
    expect(linkNames(pod)).not.toContain('tap0_kata');
  });
});

describe('commands that write no record', () => {
  it('make no state directory and register none; attach does both', () => {
    const { pod } = makePod();
    const typo = join(stateDirectory(), 'x', 'typo1');
    const interfaceFile = join(stateDirectory(), 'interface.json');
    writeFileSync(interfaceFile, '{"name":"eth0"}');
    for (const args of [
      ['list-ifaces', 's9'],
      ['list-routes', 's9'],
      ['del-iface', 's9', interfaceFile],
    ]) {
      const run = vcnet([...args, '--state-dir', typo], registryEnvironment());
      expect(run.status, run.stderr).toBe(1);
      expect(run.stderr).toContain('sandbox s9 is not attached');
    }
    const detach = vcnet(['detach', '--sandbox', 's9', '--state-dir', typo], registryEnvironment());
    expect(detach.status, detach.stderr).toBe(0);
    expect(existsSync(join(stateDirectory(), 'x'))).toBe(false);
    expect(registered()).toEqual([]);

    const attach = vcnet(
      ['attach', '--sandbox', 's1', '--netns', pod.path, '--state-dir', typo],
      registryEnvironment(),
    );
    expect(attach.status, attach.stderr).toBe(0);
    expect(registered()).toEqual([typo]);
    expect(vcnet(['detach', '--sandbox', 's1', '--state-dir', typo], registryEnvironment()).status).toBe(0);
  });
});

describe('a state directory that cannot be made', () => {
  it('under a regular file or under /proc: VCNET_STATE_DIR, exit 2, saying why; the pod is untouched', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const file = join(stateDirectory(), 'regularfile');
    writeFileSync(file, '');
    const underFile = vcnet(
      ['attach', '--sandbox', 's1', '--netns', pod.path, '--state-dir', join(file, 'sub'), '--json'],
      registryEnvironment(),
    );
    expect(underFile.status, underFile.stderr).toBe(2);
    expect(underFile.stderr).toContain(
      `cannot use ${join(file, 'sub')} as a state directory: ${file} is not a directory (ENOTDIR)`,
    );
    expect(underFile.stderr).toContain('VCNET_STATE_DIR');
    // The CLI's own setting (vcnet-cni's hint names its "stateDir"):
    expect(underFile.stderr).toContain('point --state-dir (or VCNET_STATE_DIR) at a directory');
    expect(underFile.stderr).not.toContain('"stateDir"');
    const underProc = vcnet(
      ['attach', '--sandbox', 's1', '--netns', pod.path, '--state-dir', '/proc/vcnet-no-such'],
      registryEnvironment(),
    );
    expect(underProc.status, underProc.stderr).toBe(2);
    expect(underProc.stderr).toContain('cannot use /proc/vcnet-no-such as a state directory: cannot create');
    expect(underProc.stderr).not.toContain('namespace');
    expect(fingerprint(pod)).toEqual(before);
    expect(registered()).toEqual([]);
  });
});
