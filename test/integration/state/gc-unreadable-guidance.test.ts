/**
 * What `vcnet list` and `vcnet gc` tell a person about a record vcnet cannot read, checked by doing
 * what they say on real records, damaged as a disk fault or a crash leaves them:
 * - list's hint for one that still tells its namespace says gc drops it once that namespace is gone
 *   (it said "restore or remove it"), and the command it prints does drop it;
 * - gc's reason for one cut before its namespace names the sandbox and says how to settle it (set it
 *   aside, then gc collects what it left), and following it collects the sandbox's tap; its text
 *   summary says the links it did not examine also when it removed something else;
 * - a cookie-less one whose freed inode a later namespace took is kept, saying why and how to settle it.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { replaceWithSameInode } from '../../helpers/namespace.js';
import { kataLinks, makePod } from '../../helpers/pod.js';

const work = stateDirectoryPerTest('vcnet-gc-unreadable-guidance-');

interface GcJson {
  removed: Array<{ kind: string; name: string; namespacePath: string; detail?: string }>;
  skipped: Array<{ file: string; reason: string }>;
  unclaimed: Array<{ namespacePath: string; links: string[] }>;
}

interface ListJson {
  id: string;
  state: string;
  hint?: string;
  error?: { hint?: string };
}

/** The shell words of a command a hint quotes between backquotes, run as vcnet's arguments. */
function quotedCommand(hint: string, starting: string): string[] {
  const command = hint.split('`').find((part) => part.startsWith(starting));
  expect(command, hint).toBeDefined();
  return command!.split(' ').slice(1);
}

function setUp() {
  const state = join(work(), 'state');
  const env = { VCNET_STATE_REGISTRY: join(work(), 'registry') };
  const run = (args: string[]) => vcnet(args, env);
  const attach = (id: string) => {
    const { pod } = makePod();
    const attached = run(['attach', '--sandbox', id, '--netns', pod.path, '--state-dir', state]);
    expect(attached.status, attached.stderr).toBe(0);
    return { pod, file: join(state, id, 'state.json') };
  };
  const list = () => {
    const listed = run(['list', '--state-dir', state, '--json']);
    return JSON.parse(listed.stdout) as ListJson[];
  };
  const gc = (...args: string[]) => {
    const result = run(['gc', '--state-dir', state, ...args]);
    expect(result.status, result.stderr).toBe(0);
    return result;
  };
  return { state, run, attach, list, gc };
}

/** A bit flip in a key, as a disk fault leaves it: the record fails its check, its namespace still whole. */
function damageEndpoint(file: string, namespace: (namespace: Record<string, unknown>) => void = () => {}) {
  const record = JSON.parse(readFileSync(file, 'utf8'));
  delete record.network.endpoints[0].plumbing;
  namespace(record.namespace);
  writeFileSync(file, JSON.stringify(record, null, 2));
}

describe('an unreadable record: what list and gc say, and doing it', () => {
  it("list's hint says gc drops a record that still tells its namespace once that is gone, and its command does", () => {
    const { attach, list, run } = setUp();
    const { pod, file } = attach('flipped');
    damageEndpoint(file);

    const alive = list().find((listing) => listing.id === 'flipped');
    expect(alive?.state).toBe('unreadable');
    expect(alive?.hint).toContain('drops it once that namespace is gone');
    expect(alive?.hint).toContain('gc keeps it while its namespace');

    pod.delete();
    const gone = list().find((listing) => listing.id === 'flipped');
    expect(gone?.state).toBe('unreadable');
    expect(gone?.hint).toMatch(/its namespace \(inode \d+, as the record still tells\) is gone/);
    const dropped = run(quotedCommand(gone!.hint!, 'vcnet gc --netns '));
    expect(dropped.status, dropped.stderr).toBe(0);
    expect(dropped.stdout).toContain('flipped');
    expect(existsSync(file)).toBe(false);
  });

  it('gc names a record cut before its namespace, says how to settle it, and doing so collects its tap', () => {
    const { attach, gc, list } = setUp();
    const live = attach('live');
    const cut = attach('cut');
    const gone = attach('gone');
    writeFileSync(cut.file, readFileSync(cut.file, 'utf8').slice(0, 40)); // before "namespace"
    gone.pod.delete();
    const scope = ['--netns', live.pod.path, cut.pod.path, gone.pod.path];

    const planned = gc('--dry-run', ...scope);
    // Something else goes (the gone sandbox's record): the links gc did not look at are still said.
    expect(planned.stdout).toContain('would remove 1 item(s)');
    expect(planned.stdout).toMatch(
      /not removed: 2 vcnet link\(s\) in 2 namespace\(s\) not examined, as a record gc could not read may be theirs/,
    );
    const reason = (JSON.parse(gc('--dry-run', '--json', ...scope).stdout) as GcJson).skipped.find(
      (entry) => entry.file === cut.file,
    )?.reason;
    expect(reason).toContain('does not say which namespace it is about');
    expect(reason).toContain('restore the file if sandbox cut still runs');
    const setAside = `mv ${cut.file} ${cut.file}.unreadable`;
    expect(reason).toContain(setAside);
    expect(list().find((listing) => listing.id === 'cut')?.hint).toContain(setAside);

    // The sandbox is gone (its VM stopped): the person sets the record aside, as told.
    renameSync(cut.file, `${cut.file}.unreadable`);

    const after = JSON.parse(gc('--dry-run', '--json').stdout) as GcJson;
    expect(after.skipped).toEqual([]);
    expect(after.unclaimed).toContainEqual({ namespacePath: cut.pod.path, links: ['tap0_kata'] });
    const collected = JSON.parse(gc('--json', '--netns', cut.pod.path).stdout) as GcJson;
    expect(collected.removed.map((item) => `${item.kind} ${item.name}`)).toContain('link tap0_kata');
    expect(kataLinks(cut.pod)).toEqual([]);
    expect(kataLinks(live.pod)).toEqual(['tap0_kata']);
  });

  it('a damaged record whose boot id and creation time both tell an earlier boot is dropped as one; the boot id alone is not enough', () => {
    const { attach, gc, list } = setUp();
    const both = attach('both');
    const idOnly = attach('idonly');
    const earlierBoot = (file: string, createdAt?: string) => {
      const record = JSON.parse(readFileSync(file, 'utf8'));
      delete record.network.endpoints[0].plumbing;
      record.bootId = '00000000-0000-4000-8000-000000000000';
      if (createdAt !== undefined) record.createdAt = createdAt;
      writeFileSync(file, JSON.stringify(record, null, 2));
    };
    earlierBoot(both.file, '2001-01-01T00:00:00.000Z');
    earlierBoot(idOnly.file); // created in this boot: a damaged boot id alone may be the damage

    const planned = JSON.parse(gc('--dry-run', '--json', '--netns', both.pod.path, idOnly.pod.path).stdout) as GcJson;
    expect(planned.removed.filter((item) => item.kind === 'state').map((item) => item.name)).toEqual(['both']);
    expect(planned.removed.find((item) => item.name === 'both')?.detail).toMatch(
      /^from an earlier boot: .*\(the record cannot be read: .*its boot id and creation time, both before this boot, still tell\)$/,
    );
    expect(planned.skipped.map((entry) => entry.file)).toEqual([idOnly.file]);
    expect(list().find((listing) => listing.id === 'both')?.hint).toContain('written in an earlier boot');
    expect(list().find((listing) => listing.id === 'idonly')?.hint).not.toContain('earlier boot');

    gc('--netns', both.pod.path);
    expect(existsSync(both.file)).toBe(false);
    expect(existsSync(idOnly.file)).toBe(true);
  });

  it('gc keeps a cookie-less record whose freed inode a later namespace took, saying why and how to settle it', async () => {
    const { attach, gc } = setUp();
    const { pod, file } = attach('cookieless');
    damageEndpoint(file, (namespace) => delete namespace.cookie);
    const later = await replaceWithSameInode(pod, 'later');
    if (later === undefined) {
      console.log('skipped: no namespace made got the freed inode in 100 tries (others are making namespaces)');
      return;
    }
    const report = JSON.parse(gc('--dry-run', '--json', '--netns', pod.path).stdout) as GcJson;
    expect(report.removed).toEqual([]);
    const reason = report.skipped.find((entry) => entry.file === file)?.reason;
    expect(reason).toContain(
      'nothing else the record holds tells whether it is the recorded one or a later one either, so gc keeps the record until nothing holds that inode',
    );
    expect(reason).toContain(`mv ${file} ${file}.unreadable`);
    later.delete();
  });
});
