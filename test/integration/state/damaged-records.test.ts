/**
 * Damaged, foreign and future records: detach refuses with an error naming the file and the field,
 * touches no namespace and keeps the file. Empty state directories are refused.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { replaceWithSameInode } from '../../helpers/namespace.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-damaged-');

function withoutSteps(text: string): string {
  const record = JSON.parse(text);
  for (const endpoint of record.network.endpoints) delete endpoint.plumbing.steps;
  return JSON.stringify(record);
}

/** The record with a change to its first endpoint (as the fuzzer made them). */
type RecordedEndpoint = {
  plumbing?: { steps: Array<{ step: string; handle?: number }> };
  pluíbing?: unknown;
  properties: { link: { address?: unknown } };
};
function endpointChanged(text: string, change: (endpoint: RecordedEndpoint) => void): string {
  const record = JSON.parse(text);
  change(record.network.endpoints[0]);
  return JSON.stringify(record);
}

describe('detach of a damaged record', () => {
  it('refuses each damage naming the file and the field, and changes nothing', () => {
    const a = makePod();
    const b = makePod();
    expect(vcnet(['attach', '--sandbox', 'a', '--netns', a.pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    expect(vcnet(['attach', '--sandbox', 'b', '--netns', b.pod.path, '--state-dir', stateDirectory()]).status).toBe(0);
    const statePath = join(stateDirectory(), 'a', 'state.json');
    const original = readFileSync(statePath, 'utf8');
    const attachedA = fingerprint(a.pod);
    const attachedB = fingerprint(b.pod);

    const damages: Array<[string, string, string]> = [
      ['null', 'null', 'field (top level) is null'],
      ['[]', '[]', 'field (top level) is []'],
      ['no steps', withoutSteps(original), 'field network.endpoints.0.plumbing.steps is missing'],
      ['truncated', original.slice(0, original.length / 2), 'is not valid JSON'],
      ['version 99', JSON.stringify({ ...JSON.parse(original), version: 99 }), 'field version is 99'],
      ['no namespace', JSON.stringify({ ...JSON.parse(original), namespace: undefined }), 'field namespace is missing'],
      // Each of these was read as "nothing to undo" (exit 0, record deleted, tap and filters left) or
      // crashed a comparison: the record is refused and everything stays in place.
      [
        'no plumbing',
        endpointChanged(original, (endpoint) => delete endpoint.plumbing),
        'field network.endpoints.0.plumbing is missing',
      ],
      [
        'plumbing renamed by a bit flip',
        endpointChanged(original, (endpoint) => {
          endpoint.pluíbing = endpoint.plumbing;
          delete endpoint.plumbing;
        }),
        'field network.endpoints.0.plumbing is missing',
      ],
      [
        'a pod link address that is a list',
        endpointChanged(original, (endpoint) => {
          endpoint.properties.link.address = [];
        }),
        'field network.endpoints.0.properties.link.address is []',
      ],
      // The namespace's cookie is the recorded one, so it is the recorded namespace: detach said
      // `namespaceGone` and dropped the record, leaving everything.
      [
        'inode wrong, cookie right',
        JSON.stringify({
          ...JSON.parse(original),
          namespace: { ...JSON.parse(original).namespace, ino: JSON.parse(original).namespace.ino + 1 },
        }),
        'field namespace.ino is',
      ],
      // `"steps": []` on a finished tcfilter endpoint: detach said "0 change(s) undone", dropped the
      // record and left tap0_kata, both ingress qdiscs and both filters (gc left them too).
      [
        'steps []',
        endpointChanged(original, (endpoint) => {
          endpoint.plumbing!.steps = [];
        }),
        "field network.endpoints.0.plumbing.steps is [] (expected the steps every tcfilter endpoint's attach records",
      ],
      [
        'an ingress qdisc handle other than ffff:0',
        endpointChanged(original, (endpoint) => {
          const qdisc = endpoint.plumbing?.steps.find((step) => step.step === 'add-qdisc');
          qdisc!.handle = 4294900760;
        }),
        'handle is 4294900760',
      ],
    ];
    for (const [label, text, message] of damages) {
      writeFileSync(statePath, text);
      const detached = vcnet(['detach', '--sandbox', 'a', '--state-dir', stateDirectory(), '--json']);
      expect(detached.status, label).toBe(1);
      const error = JSON.parse(detached.stdout).error;
      expect(error.code, label).toBe('VCNET_STATE_INVALID');
      expect(error.message, label).toContain(`state file ${statePath}: `);
      expect(error.message, label).toContain(message);
      if (label === 'plumbing renamed by a bit flip')
        expect(error.message).toContain('"pluíbing", which this vcnet never writes');
      // A newer vcnet's record is kept for that vcnet, never "damaged: remove it".
      if (label === 'version 99') expect(error.hint).toContain('a newer vcnet wrote this record');
      // A key this vcnet does not know may be a newer vcnet's field: keep the file, never "remove it" first.
      else if (label === 'plumbing renamed by a bit flip')
        expect(error.hint).toMatch(/^nothing was changed; keep the file/);
      // Its namespace is alive at its path (the cookie says so): removing the record and a gc there is safe.
      else if (label === 'inode wrong, cookie right') expect(error.hint).toContain('restore or remove it');
      else
        expect(error.hint, label).toContain(
          'restore it while its sandbox runs; gc drops it by itself once the namespace it still names is gone',
        );
      expect(readFileSync(statePath, 'utf8'), label).toBe(text);
      expect(fingerprint(a.pod), label).toEqual(attachedA);
      // gc leaves the namespace of a record it cannot read alone when the record still names it
      // (a truncated one too: its namespace comes first); only "no namespace" cannot say.
      if (label !== 'no namespace' && label !== 'null' && label !== '[]') {
        const collected = vcnet(['gc', '--netns', a.pod.path, '--state-dir', stateDirectory(), '--json']);
        expect(collected.status, `${label}: ${collected.stderr}`).toBe(0);
        expect(JSON.parse(collected.stdout).removed, label).toEqual([]);
        expect(fingerprint(a.pod), `gc with the record ${label}`).toEqual(attachedA);
      }
    }

    // The record of b copied into a's place: detach a must not undo b's plumbing.
    copyFileSync(join(stateDirectory(), 'b', 'state.json'), statePath);
    const foreign = vcnet(['detach', '--sandbox', 'a', '--state-dir', stateDirectory()]);
    expect(foreign.status).toBe(1);
    expect(foreign.stderr).toContain(`state file ${statePath}: field id is "b", but this is the record of "a"`);
    expect(fingerprint(b.pod)).toEqual(attachedB);
    expect(fingerprint(a.pod)).toEqual(attachedA);

    // A damaged record is not overwritten by a new attach either.
    writeFileSync(statePath, 'null');
    const again = vcnet(['attach', '--sandbox', 'a', '--netns', a.pod.path, '--state-dir', stateDirectory()]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain(`state file ${statePath}`);
    expect(readFileSync(statePath, 'utf8')).toBe('null');

    writeFileSync(statePath, original);
    expect(vcnet(['detach', '--sandbox', 'a', '--state-dir', stateDirectory()]).status).toBe(0);
    expect(vcnet(['detach', '--sandbox', 'b', '--state-dir', stateDirectory()]).status).toBe(0);
  });
});

describe('a record whose bytes are not UTF-8', () => {
  it('is refused as damaged naming the file and the offset, changing nothing; gc still reads the namespace it names', () => {
    // Its bytes were read as U+FFFD: a byte damaged inside a link name left a record read as valid.
    const { pod } = makePod();
    const state = stateDirectory();
    expect(vcnet(['attach', '--sandbox', 'a', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
    const statePath = join(state, 'a', 'state.json');
    const original = readFileSync(statePath);
    const damaged = Buffer.from(original);
    const offset = original.indexOf('"tap0_kata"') + 2;
    damaged[offset] = 0xfe;
    writeFileSync(statePath, damaged);
    const attached = fingerprint(pod);
    try {
      const detached = vcnet(['detach', '--sandbox', 'a', '--state-dir', state, '--json']);
      expect(detached.status, detached.stderr).toBe(1);
      const error = JSON.parse(detached.stdout).error;
      expect(error.code).toBe('VCNET_STATE_INVALID');
      expect(error.message).toBe(
        `state file ${statePath}: is not UTF-8 text: the byte at offset ${offset} (0xfe) is no part of a UTF-8 character`,
      );
      expect(readFileSync(statePath)).toEqual(damaged);
      expect(fingerprint(pod)).toEqual(attached);
      // gc salvages the namespace path from the text and leaves that namespace alone.
      const collected = vcnet(['gc', '--netns', pod.path, '--state-dir', state, '--json']);
      expect(collected.status, collected.stderr).toBe(0);
      expect(JSON.parse(collected.stdout).removed).toEqual([]);
      expect(fingerprint(pod)).toEqual(attached);
      const listed = vcnet(['list', '--state-dir', state, '--json']);
      expect(listed.stdout).toContain(pod.path);
    } finally {
      writeFileSync(statePath, original);
      vcnet(['detach', '--sandbox', 'a', '--state-dir', state]);
    }
  });

  it('with a byte of its namespace path damaged, list and gc name the path the namespace is at to collect it, and that collects what the record made', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const state = stateDirectory();
    expect(vcnet(['attach', '--sandbox', 'p', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
    const statePath = join(state, 'p', 'state.json');
    const original = readFileSync(statePath);
    const damaged = Buffer.from(original);
    // The envelope's namespace.path, the path a salvage reads: its last byte.
    damaged[original.indexOf(pod.path) + pod.path.length - 1] = 0xff;
    writeFileSync(statePath, damaged);
    const attached = fingerprint(pod);
    // It named the damaged path (its last character read as U+FFFD), where no namespace is.
    const collect = `and \`vcnet gc --netns ${pod.path} --state-dir ${state}\` removes what it left there`;
    const listed = vcnet(['list', '--state-dir', state, '--json']);
    expect(JSON.parse(listed.stdout)[0].hint).toContain(collect);
    // The path as the record holds it, its bad byte as `ls -b` writes it (it was U+FFFD, which told
    // nothing of it), the same in the table and its JSON, and where its namespace is.
    const storedPath = `${pod.path.slice(0, -1)}\\xff`;
    expect(JSON.parse(listed.stdout)[0]).toMatchObject({
      namespacePath: storedPath,
      namespacePathNotUtf8: true,
      namespaceHeldAt: pod.path,
    });
    const table = vcnet(['list', '--state-dir', state]).stdout.split('\n');
    expect(table[1]?.endsWith(`  ${storedPath}`), table[1]).toBe(true);
    expect(table.join('\n')).not.toContain('\uFFFD');
    const dryRun = vcnet(['gc', '--dry-run', '--state-dir', state, '--json']);
    expect(dryRun.status, dryRun.stderr).toBe(0);
    const skipped = JSON.parse(dryRun.stdout).skipped as Array<{ file: string; reason: string }>;
    expect(skipped.find((entry) => entry.file === statePath)?.reason).toContain(collect);
    expect(readFileSync(statePath)).toEqual(damaged);
    expect(fingerprint(pod)).toEqual(attached);
    // Following the hint: the record set aside, gc at the path it names removes what the attach made.
    renameSync(statePath, `${statePath}.unreadable`);
    const collected = vcnet(['gc', '--netns', pod.path, '--state-dir', state]);
    expect(collected.status, collected.stderr).toBe(0);
    expect(fingerprint(pod)).toEqual(before);
  });

  it('with a byte of its namespace path damaged, gc --netns at the namespace acts on it by device and inode: says how to settle it, and drops it once a later namespace has its inode', async () => {
    const { pod } = makePod();
    const state = stateDirectory();
    expect(vcnet(['attach', '--sandbox', 'p', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
    const statePath = join(state, 'p', 'state.json');
    const damaged = readFileSync(statePath);
    damaged[damaged.indexOf(pod.path) + pod.path.length - 1] = 0xff;
    writeFileSync(statePath, damaged);
    // Before, gc --netns matched records by their path's text: this one was out of its scope, its
    // reason without what settles it, and it was kept once its namespace was gone.
    const planned = vcnet(['gc', '--dry-run', '--netns', pod.path, '--state-dir', state, '--json']);
    expect(planned.status, planned.stderr).toBe(0);
    const skipped = JSON.parse(planned.stdout).skipped as Array<{ file: string; reason: string }>;
    expect(skipped.find((entry) => entry.file === statePath)?.reason).toContain(
      `and \`vcnet gc --netns ${pod.path} --state-dir ${state}\` removes what it left there`,
    );
    const later = await replaceWithSameInode(pod, 'later');
    if (later === undefined) {
      console.log(
        'skipped the later namespace: none made got the freed inode in 100 tries (others are making namespaces)',
      );
      return;
    }
    try {
      const collected = vcnet(['gc', '--netns', later.path, '--state-dir', state, '--json']);
      expect(collected.status, collected.stderr).toBe(0);
      const report = JSON.parse(collected.stdout);
      expect(report.removed.map((item: { kind: string; name: string }) => `${item.kind} ${item.name}`)).toEqual([
        'state p',
      ]);
      // Named as list names it: the bad byte as \xNN.
      expect(report.removed[0].namespacePath).toBe(`${pod.path.slice(0, -1)}\\xff`);
      expect(existsSync(statePath)).toBe(false);
    } finally {
      later.delete();
    }
  });

  it('once its namespace is gone, gc at that path drops it without saying no record names the path', () => {
    const { pod } = makePod();
    const state = stateDirectory();
    expect(vcnet(['attach', '--sandbox', 'g', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
    const statePath = join(state, 'g', 'state.json');
    const damaged = readFileSync(statePath);
    damaged[damaged.indexOf('"tap0_kata"') + 2] = 0xfe;
    writeFileSync(statePath, damaged);
    pod.delete();
    const collected = vcnet(['gc', '--netns', pod.path, '--state-dir', state, '--json']);
    expect(collected.status, collected.stderr).toBe(0);
    const report = JSON.parse(collected.stdout);
    expect(report.removed.map((item: { kind: string; name: string }) => `${item.kind} ${item.name}`)).toEqual([
      'state g',
    ]);
    // It also said "no namespace is at this path and no record names it: nothing to collect there".
    expect(report.absent).toEqual([]);
    expect(existsSync(statePath)).toBe(false);
  });
});

describe('detach of a record with no endpoint', () => {
  it('refuses one beside an unclaimed vcnet link, naming endpoints and the links; detaches one without', () => {
    const { pod } = makePod();
    const state = stateDirectory();
    expect(vcnet(['attach', '--sandbox', 'empty', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
    const statePath = join(state, 'empty', 'state.json');
    const record = JSON.parse(readFileSync(statePath, 'utf8'));
    record.network.endpoints = [];
    const damaged = JSON.stringify(record);
    writeFileSync(statePath, damaged);
    const attached = fingerprint(pod);
    const detached = vcnet(['detach', '--sandbox', 'empty', '--state-dir', state, '--json']);
    expect(detached.status, detached.stderr).toBe(1);
    const error = JSON.parse(detached.stdout).error;
    expect(error.code).toBe('VCNET_STATE_INVALID');
    expect(error.message).toContain(`state file ${statePath}: field network.endpoints is [] (no endpoint)`);
    expect(error.message).toContain("holds tap0_kata in vcnet's link group");
    expect(error.hint).toContain(`vcnet gc --netns ${pod.path}`);
    expect(readFileSync(statePath, 'utf8')).toBe(damaged);
    expect(fingerprint(pod)).toEqual(attached);
    // Once gc took what the record lost, a record with no endpoint is a sandbox with nothing attached.
    rmSync(join(state, 'empty'), { recursive: true });
    expect(vcnet(['gc', '--netns', pod.path, '--state-dir', state]).status).toBe(0);
    mkdirSync(join(state, 'empty'));
    writeFileSync(statePath, damaged);
    const clean = vcnet(['detach', '--sandbox', 'empty', '--state-dir', state]);
    expect(clean.status, clean.stderr).toBe(0);
    expect(existsSync(statePath)).toBe(false);
  });
});

describe('state directory', () => {
  it('removes the temporary file of a write killed before its rename, with the sandbox directory', () => {
    // What attach leaves when it is killed between writing its first record and renaming it.
    const sandbox = join(stateDirectory(), 'crash');
    mkdirSync(sandbox, { recursive: true });
    writeFileSync(join(sandbox, '.state.4242.tmp'), '{"version":');
    const detached = vcnet(['detach', '--sandbox', 'crash', '--state-dir', stateDirectory()]);
    expect(detached.status, detached.stderr).toBe(0);
    expect(detached.stdout).toContain('not attached');
    expect(existsSync(sandbox)).toBe(false);
  });

  it("refuses --state-dir '' and an empty VCNET_STATE_DIR, and writes nothing in the current directory", () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const cwd = mkdtempSync(join(tmpdir(), 'vcnet-cwd-'));
    try {
      const flag = vcnet(['attach', '--sandbox', 's', '--netns', pod.path, '--state-dir', ''], {}, { cwd });
      expect(flag.status).toBe(2);
      expect(flag.stderr).toContain('invalid --state-dir: ""');
      const environment = vcnet(['attach', '--sandbox', 's', '--netns', pod.path], { VCNET_STATE_DIR: '' }, { cwd });
      expect(environment.status).toBe(2);
      expect(environment.stderr).toContain('invalid VCNET_STATE_DIR: ""');
      const detach = vcnet(['detach', '--sandbox', 's'], { VCNET_STATE_DIR: '' }, { cwd });
      expect(detach.status).toBe(2);
      // gc too: it would otherwise look for records elsewhere than the user meant, and say nothing.
      const gc = vcnet(['gc', '--dry-run', '--netns', pod.path], { VCNET_STATE_DIR: '' }, { cwd });
      expect(gc.status).toBe(2);
      expect(gc.stderr).toContain('invalid VCNET_STATE_DIR: ""');
      expect(readdirSync(cwd)).toEqual([]);
      expect(fingerprint(pod)).toEqual(before);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('refuses an empty VCNET_STATE_REGISTRY (it fell back to /run/vcnet), and takes a relative one from the cwd', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const cwd = mkdtempSync(join(tmpdir(), 'vcnet-cwd-'));
    try {
      const empty = { VCNET_STATE_REGISTRY: '' };
      const attach = vcnet(['attach', '--sandbox', 's', '--netns', pod.path, '--state-dir', stateDirectory()], empty);
      expect(attach.status, attach.stderr).toBe(2);
      expect(attach.stderr).toContain('invalid VCNET_STATE_REGISTRY: ""');
      expect(fingerprint(pod)).toEqual(before);
      // No record and no sandbox directory (the lock directory is made under the lock, as for any attach).
      expect(readdirSync(stateDirectory()).filter((name) => name !== '.locks')).toEqual([]);
      const gc = vcnet(['gc', '--dry-run', '--netns', pod.path, '--state-dir', stateDirectory()], empty);
      expect(gc.status, gc.stderr).toBe(2);
      expect(gc.stderr).toContain('invalid VCNET_STATE_REGISTRY: ""');

      const relative = { VCNET_STATE_REGISTRY: 'registry' };
      const args = ['--sandbox', 's', '--state-dir', stateDirectory()];
      const attached = vcnet(['attach', ...args, '--netns', pod.path], relative, { cwd });
      expect(attached.status, attached.stderr).toBe(0);
      expect(readFileSync(join(cwd, 'registry'), 'utf8')).toBe(`${stateDirectory()}\n`);
      expect(vcnet(['detach', ...args], relative, { cwd }).status).toBe(0);
      expect(fingerprint(pod)).toEqual(before);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
