/**
 * A state directory on a nearly full file system (a tmpfs of a few KiB, mounted in a private mount
 * namespace of its own so nothing outside sees it): each attach either succeeds with a whole record
 * that detach can use, or fails with VCNET_STATE_WRITE and leaves the pod as it was. It used to
 * write a record cut at the first full block, exit 0, and leave a pod no command could put back.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-full-');

/**
 * Runs in a private mount namespace: a tmpfs of `kib` KiB on the state directory (mode 0700: vcnet
 * refuses a state directory others can write in, and a tmpfs root is 1777 by default), an attach, a
 * check that any record left is whole JSON, and a detach. Prints one JSON line with what each did.
 */
function attachOnFullDisk(podPath: string, model: string, kib: number, fillFirst = false) {
  const full = join(stateDirectory(), 'full');
  const script = `
    set -u
    mkdir -p "$FULL" && mount -t tmpfs -o size=${kib}k,mode=0700 vcnet-test-full "$FULL" || exit 90
    ${fillFirst ? 'dd if=/dev/zero of="$FULL/filler" bs=1k 2>/dev/null' : ''}
    node "$CLI" attach --sandbox sb --netns "$POD" --state-dir "$FULL" --model ${model} --json >"$OUT/attach.out" 2>/dev/null
    echo $? >"$OUT/attach.rc"
    if [ -f "$FULL/sb/state.json" ]; then
      node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$FULL/sb/state.json" 2>/dev/null
      echo $? >"$OUT/record.parse"
    else
      echo none >"$OUT/record.parse"
    fi
    node "$CLI" detach --sandbox sb --state-dir "$FULL" >/dev/null 2>"$OUT/detach.err"
    echo $? >"$OUT/detach.rc"
  `;
  const result = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], {
    encoding: 'utf8',
    env: {
      ...process.env,
      FULL: full,
      CLI,
      POD: podPath,
      OUT: stateDirectory(),
      // The registry of state directories stays off the host's /run/vcnet.
      VCNET_STATE_REGISTRY: join(stateDirectory(), 'registry'),
    },
  });
  expect(result.status, result.stderr).toBe(0);
  const read = (name: string) => spawnSync('cat', [join(stateDirectory(), name)], { encoding: 'utf8' }).stdout.trim();
  return {
    attachStatus: Number(read('attach.rc')),
    attachOutput: read('attach.out'),
    record: read('record.parse'),
    detachStatus: Number(read('detach.rc')),
    detachError: read('detach.err'),
  };
}

describe('a state directory on a nearly full file system', () => {
  for (const model of ['tcfilter', 'macvtap'] as const) {
    it(`${model}: every attach either records all of itself or fails naming the full disk, and leaves the pod as it was`, () => {
      const seen = new Set<string>();
      for (const kib of [4, 8, 16, 24, 32, 48, 96]) {
        const { pod } = makePod({ interfaces: 3 });
        const before = fingerprint(pod);
        const outcome = attachOnFullDisk(pod.path, model, kib);
        if (outcome.attachStatus === 0) {
          seen.add('attached');
          // A whole record, which detach used to put the pod back.
          expect(outcome.record, `${kib} KiB`).toBe('0');
          expect(outcome.detachStatus, `${kib} KiB: ${outcome.detachError}`).toBe(0);
        } else {
          seen.add('refused');
          const error = JSON.parse(outcome.attachOutput).error as { code: string; message: string; hint: string };
          expect(error.code, `${kib} KiB: ${error.message}`).toBe('VCNET_STATE_WRITE');
          expect(error.hint).toContain('full');
          // Nothing recorded (the attach was undone whole), or a record that is whole JSON.
          expect(['none', '0'], `${kib} KiB`).toContain(outcome.record);
        }
        expect(fingerprint(pod), `${model} with ${kib} KiB`).toEqual(before);
        pod.delete();
      }
      // The sizes cover both outcomes, so both paths were checked.
      expect([...seen].sort()).toEqual(['attached', 'refused']);
    }, 120_000);
  }
});

describe('a state directory on a file system already full', () => {
  it('attach fails with VCNET_STATE_WRITE (the lock file is made, its pid cannot be written), the pod as it was', () => {
    const { pod } = makePod();
    const before = fingerprint(pod);
    const outcome = attachOnFullDisk(pod.path, 'tcfilter', 16, true);
    expect(outcome.attachStatus).toBe(1);
    const error = JSON.parse(outcome.attachOutput).error as { code: string; hint: string };
    expect(error.code).toBe('VCNET_STATE_WRITE');
    expect(error.hint).toContain('full');
    expect(outcome.record).toBe('none');
    expect(fingerprint(pod)).toEqual(before);
  });
});
