/**
 * Preloaded (node --import) into a vcnet process by crash tests: sets the executor's test seam so the
 * attach pauses right after it created the tap named in VCNET_TEST_PAUSE_AFTER_TAP=<tap>:<ms>, and
 * the test can kill -9 it there. Production code knows nothing of it.
 */
import { setApplyTestHook } from '../../dist/network/plan/apply.js';

const [tapName, milliseconds] = (process.env.VCNET_TEST_PAUSE_AFTER_TAP ?? '').split(':');
const pause = Number(milliseconds);
if (tapName && pause > 0) {
  let created = false;
  setApplyTestHook(async (step) => {
    if (step.change.op === 'create-tap' && step.change.link.name === tapName) {
      created = true;
      return;
    }
    if (!created) return;
    created = false;
    process.stderr.write(`vcnet: fault injection: paused after creating ${tapName}\n`);
    await new Promise((resolve) => setTimeout(resolve, pause));
  });
}
