/**
 * Many pods at once, as a node starts them, through the public CLI: twenty `vcnet attach` processes
 * run together (the models taking turns, every third pod with a rate limit), each in its own pod, all
 * with one state directory; `vcnet list` then shows twenty attached sandboxes; twenty `vcnet detach`
 * run together; then every pod is exactly as it was, the list is empty, no record is left, and
 * `vcnet gc --dry-run` finds nothing to collect in those namespaces.
 */
import { describe, expect, it } from 'vitest';
import {
  filePerTestFile,
  RATE_LIMITED_KATA_CONFIG,
  stateDirectoryPerTest,
  vcnet,
  vcnetAsync,
} from '../../helpers/cli.js';
import { MODELS, nodeSnapshot } from '../../helpers/node-snapshot.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-many-cli-');

const PODS = 20;
/** Kata's configuration with rx and tx limits, for every third pod. */
const rateLimited = filePerTestFile('configuration.toml', RATE_LIMITED_KATA_CONFIG);

describe('twenty pods attached and detached at once through the CLI, one state directory', () => {
  it('each attach and detach succeeds, and every pod, the list and the state directory are as before', async () => {
    const state = stateDirectory();
    const pods = Array.from({ length: PODS }, (_, index) => {
      const { pod } = makePod();
      return {
        pod,
        sandbox: `many${index}`,
        model: MODELS[index % MODELS.length]!,
        rateLimit: index % 3 === 0,
        before: nodeSnapshot(pod),
      };
    });
    const attached = await Promise.all(
      pods.map(
        ({ pod, sandbox, model, rateLimit }) =>
          vcnetAsync([
            ...['attach', '--sandbox', sandbox, '--netns', pod.path, '--model', model, '--state-dir', state],
            ...(rateLimit ? ['--config', rateLimited] : []),
          ]).done,
      ),
    );
    for (const [index, run] of attached.entries()) expect(run.status, `${pods[index]!.sandbox}: ${run.stderr}`).toBe(0);
    const listed = vcnet(['list', '--state-dir', state, '--json']);
    expect(listed.status, listed.stderr).toBe(0);
    const rows = JSON.parse(listed.stdout) as Array<{ id?: string; state?: string }>;
    expect(rows.map((row) => `${row.id} ${row.state}`).sort()).toEqual(
      pods.map(({ sandbox }) => `${sandbox} attached`).sort(),
    );

    const detached = await Promise.all(
      pods.map(({ sandbox }) => vcnetAsync(['detach', '--sandbox', sandbox, '--state-dir', state]).done),
    );
    for (const [index, run] of detached.entries()) expect(run.status, `${pods[index]!.sandbox}: ${run.stderr}`).toBe(0);
    for (const { pod, sandbox, before } of pods) expect(nodeSnapshot(pod), sandbox).toEqual(before);
    expect(JSON.parse(vcnet(['list', '--state-dir', state, '--json']).stdout)).toEqual([]);
    const gc = vcnet([
      ...['gc', '--dry-run', '--json', '--state-dir', state],
      ...pods.flatMap(({ pod }) => ['--netns', pod.path]),
    ]);
    expect(gc.status, gc.stderr).toBe(0);
    const report = JSON.parse(gc.stdout) as Record<string, unknown>;
    // Every list of what gc would do or found is empty (stateDirectories: what it read, not a finding).
    for (const [key, value] of Object.entries(report)) {
      if (Array.isArray(value) && key !== 'stateDirectories') expect(value, `gc --dry-run ${key}`).toEqual([]);
    }
  }, 300_000);
});
