/**
 * Preloaded (node --import) into a vcnet process by crash tests: sets the executor's test seam so the
 * attach pauses (and prints a line on stderr) at a chosen point, and the test can kill -9 it there.
 * Production code knows nothing of it.
 *
 *   VCNET_TEST_PAUSE_AFTER_TAP=<tap>:<ms>    right after the tap named was created
 *   VCNET_TEST_PAUSE_AT_STEP=<position>:<ms> before the step at that position (0-based, whole process)
 *                                            (a pause ends early at SIGUSR2: a test that changed the
 *                                            namespace there lets the attach go on at once)
 *   VCNET_TEST_LOSE_ANSWERS=<send>[+]        the answers to the send-th netlink send that carries a
 *                                            change (from 1; dumps not counted) are lost (ENOBUFS), as
 *                                            after a receive buffer overrun; with `+`, those of every
 *                                            send after it too, dumps included
 */
import { isGetRequest } from '../../dist/netlink/protocol.js';
import { setNetlinkRepliesTestHook } from '../../dist/netlink/transport.js';
import { setApplyTestHook } from '../../dist/network/plan/apply.js';

const [tapName, tapPause] = (process.env.VCNET_TEST_PAUSE_AFTER_TAP ?? '').split(':');
const [stepText, stepPause] = (process.env.VCNET_TEST_PAUSE_AT_STEP ?? '').split(':');
const sleep = (milliseconds) =>
  new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      process.off('SIGUSR2', done);
      resolve();
    };
    const timer = setTimeout(done, milliseconds);
    process.on('SIGUSR2', done);
  });

let created = false;
let position = -1;
// Only when asked: with the hook set, the executor sends each step on its own (so that a pause lands
// between steps), which would change the batches the lost answers are meant to hit.
const pausing = Boolean(tapName) || (stepText !== undefined && stepText !== '');
setApplyTestHook(
  !pausing
    ? undefined
    : async (step) => {
        position++;
        if (stepText !== undefined && stepText !== '' && position === Number(stepText)) {
          process.stderr.write(`vcnet: fault injection: paused at step ${position} (${step.change.op})\n`);
          await sleep(Number(stepPause));
        }
        if (!tapName) return;
        if (step.change.op === 'create-tap' && step.change.link.name === tapName) {
          created = true;
          return;
        }
        if (!created) return;
        created = false;
        process.stderr.write(`vcnet: fault injection: paused after creating ${tapName}\n`);
        await sleep(Number(tapPause));
      },
);

const lose = /^(\d+)(\+?)$/.exec(process.env.VCNET_TEST_LOSE_ANSWERS ?? '');
if (lose) {
  const at = Number(lose[1]);
  const onwards = lose[2] === '+';
  let sends = 0;
  setNetlinkRepliesTestHook((requests) => {
    if (!requests.every((request) => isGetRequest(request.type))) sends++;
    const losing = onwards ? sends >= at : sends === at && !requests.every((request) => isGetRequest(request.type));
    return losing ? { errno: 'ENOBUFS' } : undefined;
  });
}
