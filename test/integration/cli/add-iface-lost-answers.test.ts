/**
 * add-iface whose netlink answers are lost (the transport's test seam: the kernel runs the send, the
 * receive fails with ENOBUFS), at each change-carrying send, and from it on (its undo's answers
 * too): it ends either as found, or with a record `vcnet gc --netns` finishes, leaving the rest of
 * the sandbox (eth0) attached.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loseAnswersAt, stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-add-lost-');

function recordedEndpoints(sandbox: string): string[] {
  const record = JSON.parse(readFileSync(join(stateDirectory(), sandbox, 'state.json'), 'utf8'));
  return record.network.endpoints.map((endpoint: { name: string }) => endpoint.name);
}

describe.skipIf(process.getuid?.() !== 0)('add-iface with lost netlink answers', () => {
  it('at each send, and from it on: as found, or a record gc finishes', async () => {
    const { pod, node } = makePod();
    const flag = ['--state-dir', stateDirectory()];
    const attached = vcnet(['attach', '--sandbox', 'la', '--netns', pod.path, ...flag]);
    expect(attached.status, attached.stderr).toBe(0);
    node.exec('ip', ['link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth1', 'netns', pod.name]);
    pod.exec('ip', ['link', 'set', 'eth1', 'up']);
    pod.exec('ip', ['addr', 'add', '10.209.0.2/24', 'dev', 'eth1']);
    const withEth0 = fingerprint(pod);
    const request = join(stateDirectory(), 'add.json');
    writeFileSync(request, JSON.stringify({ name: 'eth1' }));
    const outcomes: string[] = [];
    for (const onwards of [false, true]) {
      for (let send = 1; send <= 3; send++) {
        const what = `answers lost at send ${send}${onwards ? ' on' : ''}`;
        const added = vcnet(['add-iface', 'la', request, ...flag], loseAnswersAt(send, onwards));
        if (added.status === 0) {
          outcomes.push(`${what}: added`);
          const removed = vcnet(['del-iface', 'la', request, ...flag]);
          expect(removed.status, `${what}: ${removed.stderr}`).toBe(0);
        } else if (recordedEndpoints('la').includes('eth1')) {
          outcomes.push(`${what}: record left (${added.stderr.split('\n')[0]})`);
          const collected = vcnet(['gc', '--netns', pod.path, ...flag]);
          expect(collected.status, `${what}: ${collected.stderr}`).toBe(0);
        } else {
          outcomes.push(`${what}: failed, undone`);
        }
        expect(recordedEndpoints('la'), `${what}: ${outcomes.at(-1)}`).toEqual(['eth0']);
        expect(fingerprint(pod), what).toEqual(withEth0);
      }
    }
    console.log(outcomes.join('\n'));
    pod.exec('ip', ['link', 'del', 'eth1']);
    expect(vcnet(['detach', '--sandbox', 'la', ...flag]).status).toBe(0);
  }, 240_000);
});
