/**
 * detach with a --state-dir that does not hold the sandbox is not an error (exit 0, "not attached"),
 * but when a registered state directory holds a record of that id, a note on stderr (and
 * `recordedIn` in --json) names it: the sandbox's plumbing is still there.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-wrong-dir-');

it('detach with the wrong --state-dir says, on stderr and in --json, where the sandbox is recorded', () => {
  const { pod } = makePod();
  const right = join(stateDirectory(), 'right');
  const wrong = join(stateDirectory(), 'wrong');
  mkdirSync(wrong, { mode: 0o700 });
  expect(vcnet(['attach', '--sandbox', 'wd', '--netns', pod.path, '--state-dir', right]).status).toBe(0);

  const text = vcnet(['detach', '--sandbox', 'wd', '--state-dir', wrong]);
  expect(text.status, text.stderr).toBe(0);
  expect(text.stdout).toContain('sandbox wd is not attached: nothing to do');
  expect(text.stderr).toContain(
    `vcnet: note: sandbox wd is not recorded in ${wrong}, but in ${right}: \`vcnet detach --sandbox wd --state-dir ${right}\` detaches it`,
  );
  const json = vcnet(['detach', '--sandbox', 'wd', '--state-dir', wrong, '--json']);
  expect(json.status, json.stderr).toBe(0);
  expect(JSON.parse(json.stdout)).toMatchObject({ sandbox: 'wd', found: false, recordedIn: [right] });
  expect(pod.exec('ip', ['link', 'show'])).toContain('tap0_kata');
  // Its dry run says the same.
  const planned = vcnet(['detach', '--sandbox', 'wd', '--state-dir', wrong, '--dry-run', '--json']);
  expect(planned.status, planned.stderr).toBe(0);
  expect(JSON.parse(planned.stdout)).toMatchObject({ sandbox: 'wd', dryRun: true, found: false, recordedIn: [right] });
  expect(planned.stderr).toContain(`vcnet: note: sandbox wd is not recorded in ${wrong}, but in ${right}`);
  // An empty VCNET_STATE_REGISTRY is refused (exit 2), as attach and gc refuse it, before anything is
  // done: it hid where the sandbox is recorded ("found": false and no note).
  for (const dryRun of [[], ['--dry-run']]) {
    const refused = vcnet(['detach', '--sandbox', 'wd', '--state-dir', right, ...dryRun, '--json'], {
      VCNET_STATE_REGISTRY: '',
    });
    expect(refused.status, refused.stderr).toBe(2);
    expect(JSON.parse(refused.stdout).error).toMatchObject({ code: 'VCNET_INVALID_INPUT', value: '' });
    expect(refused.stderr).toContain('VCNET_STATE_REGISTRY');
    expect(pod.exec('ip', ['link', 'show'])).toContain('tap0_kata');
  }

  // Where it is recorded, detach works and says nothing more; then nothing is recorded anywhere.
  expect(vcnet(['detach', '--sandbox', 'wd', '--state-dir', right]).status).toBe(0);
  const after = vcnet(['detach', '--sandbox', 'wd', '--state-dir', wrong, '--json']);
  expect(after.stderr).not.toContain('note:');
  expect(JSON.parse(after.stdout).recordedIn).toBeUndefined();
});
