/**
 * A live sandbox's record cut short inside (or before) its `"namespace"` object, as a full disk or a
 * crash of an older vcnet leaves it: gc must not take what the sandbox made for orphans. Cut after
 * the namespace's path, gc leaves the namespace now at that path alone (and collects elsewhere); cut
 * before it, the record cannot say which namespace it is about, and gc removes nothing anywhere.
 * Every cut is tried, byte by byte, against a real attach.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collectGarbage } from '../../../src/network/garbage-collector.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { cleanupNamespaces } from '../../helpers/namespace.js';
import { fingerprint, makePod, tcfilterConfig } from '../../helpers/pod.js';

const VCNET_GROUP = 0x7663;
let stateDir: string;

beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'vcnet-cut-record-'));
});

afterEach(() => {
  cleanupNamespaces();
  rmSync(stateDir, { recursive: true, force: true });
});

describe('gc and a live record cut short in its namespace', () => {
  it('removes nothing of the live sandbox at any cut, and nothing anywhere when the cut leaves no path', async () => {
    const { pod } = makePod();
    await attachSandbox('cut', tcfilterConfig(pod), { stateDirectory: stateDir });
    // Another namespace with a tap in vcnet's group that no record claims: an orphan gc takes
    // whenever it knows which namespace the cut record is about.
    const other = makePod().pod;
    other.exec('ip', ['tuntap', 'add', 'tap9_kata', 'mode', 'tap']);
    other.exec('ip', ['link', 'set', 'tap9_kata', 'group', String(VCNET_GROUP)]);

    const statePath = join(stateDir, 'cut', 'state.json');
    const whole = readFileSync(statePath, 'utf8');
    const namespaceStart = whole.indexOf('"namespace"');
    const namespaceEnd = whole.indexOf('}', namespaceStart) + 1;
    const pathEnd = whole.indexOf(JSON.stringify(pod.path), namespaceStart) + JSON.stringify(pod.path).length;
    expect(namespaceStart).toBeGreaterThan(0);
    const attached = fingerprint(pod);

    for (let offset = 0; offset <= namespaceEnd; offset++) {
      const cut = whole.slice(0, offset);
      writeFileSync(statePath, cut);
      const label = `cut at byte ${offset}: ${JSON.stringify(cut.slice(-30))}`;
      const real = await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path] });
      expect(real.removed, label).toEqual([]);
      expect(
        real.skipped.map((record) => record.file),
        label,
      ).toEqual([statePath]);
      const planned = await collectGarbage({
        stateDirectories: [stateDir],
        namespaces: [pod.path, other.path],
        dryRun: true,
      });
      const orphanTaken = planned.removed.some(
        (item) => item.namespacePath === other.path && item.name === 'tap9_kata',
      );
      if (offset >= pathEnd) {
        // The path says which namespace: the one there now is left alone, the other collected.
        expect(orphanTaken, label).toBe(true);
        expect(
          planned.removed.filter((item) => item.namespacePath === pod.path),
          label,
        ).toEqual([]);
      } else {
        expect(planned.removed, label).toEqual([]);
        expect(planned.withheld, label).toContainEqual({ namespacePath: other.path, links: ['tap9_kata'] });
        expect(planned.skipped[0]?.reason, label).toContain('does not say which namespace it is about');
      }
    }
    expect(fingerprint(pod)).toEqual(attached);
    expect(other.exec('ip', ['-br', 'link', 'show', 'tap9_kata'])).toContain('tap9_kata');

    // Cut after a path that holds no namespace now: which namespace it was about cannot be told.
    const nowhere = join(stateDir, 'no-such-namespace');
    writeFileSync(statePath, whole.slice(0, pathEnd).replace(JSON.stringify(pod.path), JSON.stringify(nowhere)));
    const unknown = await collectGarbage({
      stateDirectories: [stateDir],
      namespaces: [pod.path, other.path],
      dryRun: true,
    });
    expect(unknown.removed).toEqual([]);
    expect(unknown.skipped[0]?.reason).toContain(`${nowhere}, which holds no network namespace now`);

    writeFileSync(statePath, whole);
    const collected = await collectGarbage({ stateDirectories: [stateDir], namespaces: [pod.path, other.path] });
    expect(collected.removed.map((item) => `${item.kind} ${item.name}`)).toEqual(['link tap9_kata']);
    expect(fingerprint(pod)).toEqual(attached);
  }, 300_000);
});
