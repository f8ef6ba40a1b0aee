/**
 * Error texts an embedder sees: a sandbox locked by another call of the same process names that
 * call (not "process <own pid>" and "the other vcnet command"); a lock wait of NaN is shown as NaN;
 * a link taken by another sandbox appears once in the cause chain.
 */
import { expect, it } from 'vitest';
import { causeChain, InvalidInputError } from '../../../src/errors.js';
import { LinkNameTakenError } from '../../../src/network/plan/plan-attach.js';
import { SandboxLockedError } from '../../../src/network/state/store.js';
import { attachSandbox } from '../../../src/sandbox/attach.js';
import { detachSandbox } from '../../../src/sandbox/detach.js';
import { stateDirectoryPerTest } from '../../helpers/cli.js';
import { failureOf, makePod, tcfilterConfig } from '../../helpers/pod.js';

const stateDirectoryOfTest = stateDirectoryPerTest('vcnet-held-here-');

it('a sandbox locked by another call of this process names that call', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod();
  const attaching = attachSandbox('here', tcfilterConfig(pod), { stateDirectory });
  const error = await failureOf(detachSandbox('here', { stateDirectory, lockTimeoutMs: 0 }));
  await attaching;
  expect(error).toBeInstanceOf(SandboxLockedError);
  const locked = error as SandboxLockedError;
  expect(locked.message).toContain('is being changed by another call in this process (attachSandbox)');
  expect(locked.message).not.toContain(`process ${process.pid}`);
  expect(locked.hint).toMatch(/^wait for that call to settle/);
  await detachSandbox('here', { stateDirectory });
});

it('lockTimeoutMs NaN is shown as NaN', async () => {
  const stateDirectory = stateDirectoryOfTest();
  const error = await failureOf(detachSandbox('nan', { stateDirectory, lockTimeoutMs: Number.NaN }));
  expect(error).toBeInstanceOf(InvalidInputError);
  expect((error as InvalidInputError).message).toMatch(/^invalid lockTimeoutMs: NaN \(accepted: /);
  expect(Number.isNaN((error as InvalidInputError).value)).toBe(true);
});

it("a link another sandbox made is named once in the attach error's cause chain", async () => {
  const stateDirectory = stateDirectoryOfTest();
  const { pod } = makePod();
  await attachSandbox('first', tcfilterConfig(pod), { stateDirectory });
  const error = await failureOf(attachSandbox('second', tcfilterConfig(pod), { stateDirectory }));
  const taken = causeChain(error).filter((link) => link instanceof LinkNameTakenError);
  expect(taken).toHaveLength(1);
  expect((taken[0] as LinkNameTakenError).message).toContain('made by sandbox first');
  await detachSandbox('first', { stateDirectory });
});
