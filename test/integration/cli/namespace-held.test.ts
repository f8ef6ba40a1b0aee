/**
 * One namespace holds one sandbox's NICs: a second sandbox attaching a namespace a macvtap sandbox
 * holds (whose pod links gave their addresses to the first VM) is refused naming the first, never
 * "attached 0 endpoints"; a VM's device is never taken as a new endpoint, even when named.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { makeNamespace } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest();

function attach(id: string, netns: string, ...extra: string[]) {
  return vcnet(['attach', '--sandbox', id, '--netns', netns, '--state-dir', stateDirectory(), ...extra]);
}

describe('a namespace another sandbox holds', () => {
  it('refuses a second sandbox on a macvtap sandbox namespace, naming it, with and without --interface', () => {
    const { pod } = makePod({ interfaces: 2 });
    const first = attach('held-a', pod.path, '--model', 'macvtap');
    expect(first.status, first.stderr).toBe(0);
    const held = fingerprint(pod);
    const record = join(stateDirectory(), 'held-a', 'state.json');
    for (const extra of [[], ['--model', 'macvtap'], ['--interface', 'tap0_kata'], ['--dry-run']]) {
      const second = attach('held-b', pod.path, ...extra);
      expect(second.status, `${extra.join(' ')}: ${second.stderr}`).toBe(1);
      expect(second.stdout).not.toContain('0 endpoints');
      expect(second.stderr).toMatch(
        /a link named tap\d_kata is already in the namespace \(index \d+, macvtap, made by sandbox held-a\)/,
      );
      expect(second.stderr).toContain(
        `hint: one namespace holds one sandbox's NICs: detach sandbox held-a first (its record: ${record})`,
      );
      expect(fingerprint(pod), extra.join(' ')).toEqual(held);
      expect(existsSync(join(stateDirectory(), 'held-b', 'state.json'))).toBe(false);
    }
    const json = attach('held-b', pod.path, '--json');
    expect((JSON.parse(json.stdout) as { error: { code: string } }).error.code).toBe('VCNET_LINK_NAME_TAKEN');
    expect(vcnet(['detach', '--sandbox', 'held-a', '--state-dir', stateDirectory()]).status).toBe(0);
  });

  it('lets exactly one of concurrent attaches of one namespace have it; the others are refused naming it', async () => {
    const { pod } = makePod({ interfaces: 2 });
    const ids = ['race-0', 'race-1', 'race-2', 'race-3', 'race-4', 'race-5'];
    const results = await Promise.all(
      ids.map(
        (id) =>
          vcnetAsync([
            'attach',
            '--sandbox',
            id,
            '--netns',
            pod.path,
            '--model',
            'macvtap',
            '--state-dir',
            stateDirectory(),
          ]).done,
      ),
    );
    const winners = results.filter((result) => result.status === 0);
    expect(winners, results.map((result) => result.stderr).join('\n')).toHaveLength(1);
    expect(winners[0]!.stdout).toContain('(2 endpoints');
    const winner = ids[results.indexOf(winners[0]!)]!;
    for (const result of results.filter((entry) => entry.status !== 0)) {
      expect(result.status, result.stderr).toBe(1);
      expect(result.stderr).toContain(`made by sandbox ${winner}`);
      expect(result.stderr).not.toContain('remove it first');
    }
    expect(vcnet(['detach', '--sandbox', winner, '--state-dir', stateDirectory()]).status).toBe(0);
  });
});

describe("a VM's device in the namespace", () => {
  it('refuses it named with --interface (attach and --dry-run), and skips it without suggesting --interface', () => {
    const { pod } = makePod();
    // Named as vcnet names a VM's tap, but not in its link group (another runtime's, say).
    pod.exec('ip', ['link', 'add', 'tap3_kata', 'type', 'veth', 'peer', 'name', 'spare3']);
    pod.exec('ip', ['link', 'set', 'tap3_kata', 'up']);
    const before = fingerprint(pod);
    for (const extra of [[], ['--dry-run']]) {
      const named = attach('own-a', pod.path, '--interface', 'tap3_kata', ...extra);
      expect(named.status, named.stderr).toBe(2);
      expect(named.stderr).toContain(
        'invalid --interface: "tap3_kata" (accepted: a pod interface, not one of the devices vcnet made for a VM',
      );
      expect(fingerprint(pod)).toEqual(before);
    }
    const plain = attach('own-a', pod.path);
    expect(plain.status, plain.stderr).toBe(0);
    expect(plain.stdout).toContain('(1 endpoint,');
    expect(plain.stderr).toContain("skipped tap3_kata (kind veth): a VM's device");
    expect(plain.stderr).not.toContain('name it with --interface tap3_kata');
    expect(vcnet(['detach', '--sandbox', 'own-a', '--state-dir', stateDirectory()]).status).toBe(0);
  });

  it('warns that the VM gets no network when nothing was attached', () => {
    const pod = makeNamespace('empty');
    pod.exec('ip', ['link', 'add', 'spare0', 'type', 'veth', 'peer', 'name', 'spare1']);
    // The dry run says it too (stderr, as attach's warning), and changes nothing.
    const before = fingerprint(pod);
    for (const extra of [['--dry-run'], ['--dry-run', '--json']]) {
      const dry = attach('empty-a', pod.path, ...extra);
      expect(dry.status, dry.stderr).toBe(0);
      expect(dry.stderr, extra.join(' ')).toContain(`the VM gets no network: no link of ${pod.path} was attached`);
      expect(fingerprint(pod)).toEqual(before);
    }
    const result = attach('empty-a', pod.path);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toContain('the VM gets no network');
    expect(vcnet(['detach', '--sandbox', 'empty-a', '--state-dir', stateDirectory()]).status).toBe(0);
  });

  it('says nothing of a link without an address the user named with --interface (their choice, as with Kata add-iface)', () => {
    const bareOnly = makeNamespace('bare');
    bareOnly.exec('ip', ['link', 'add', 'bare0', 'type', 'veth', 'peer', 'name', 'bare1']);
    const dry = attach('bare-a', bareOnly.path, '--interface', 'bare0', '--dry-run');
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stderr).not.toContain('the VM gets no network');
    const bare = attach('bare-a', bareOnly.path, '--interface', 'bare0');
    expect(bare.status, bare.stderr).toBe(0);
    expect(bare.stdout).toContain('(1 endpoint,');
    expect(bare.stderr).not.toContain('the VM gets no network');
    expect(vcnet(['detach', '--sandbox', 'bare-a', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});
