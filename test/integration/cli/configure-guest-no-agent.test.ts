/**
 * configureGuest of a sandbox whose record names no agent: the library's error names its own option
 * (agentSocket) and says what to do in the library's words; `vcnet configure-guest` names its flag
 * (--agent) and the command that records one. A library caller never reads of a flag it cannot pass.
 */
import { expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { configureGuest } from '../../../src/sandbox/configure-guest.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { failureOf, fingerprint, makePod, tcfilterConfig } from '../../helpers/pod.js';

const stateDirectoryOfTest = stateDirectoryPerTest('vcnet-no-agent-');

it('names agentSocket to a library caller and --agent to a CLI user when no agent is recorded', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod();
  const before = fingerprint(pod);
  await attachSandbox('noagent', tcfilterConfig(pod), { stateDirectory });
  try {
    const error = await failureOf(configureGuest('noagent', { stateDirectory }));
    expect(error).toBeInstanceOf(InvalidInputError);
    const refused = error as InvalidInputError;
    expect(refused.field).toBe('agentSocket');
    expect(refused.message).toContain('invalid agentSocket');
    expect(refused.hint).toContain('agentSocket');
    // No CLI flag and no command line in what a library caller reads.
    expect(`${refused.message} ${refused.hint}`).not.toMatch(/--[a-z]|vcnet attach/);

    const cli = vcnet(['configure-guest', '--sandbox', 'noagent', '--state-dir', stateDirectory, '--json']);
    expect(cli.status).toBe(2);
    const reported = JSON.parse(cli.stdout) as { error: { message: string; hint: string } };
    expect(reported.error.message).toContain('invalid --agent');
    expect(reported.error.hint).toContain('--agent');
    expect(reported.error.hint).toContain('vcnet attach');
    expect(`${reported.error.message} ${reported.error.hint}`).not.toContain('agentSocket');
  } finally {
    await detachSandbox('noagent', { stateDirectory });
  }
  expect(fingerprint(pod)).toEqual(before);
});
