/**
 * Preloaded (node --import) into a vcnet process by tests whose VM keeps it waiting out a fixed wait
 * of the product's that the test does not look at (a paused QEMU whose guest never releases a NIC):
 * sets the wait seam (src/test-seams.ts) so it lasts the milliseconds given instead. What the process says
 * quotes the wait it used. Production code knows nothing of it; a test that proves a wait's length or
 * its words leaves that wait alone.
 *
 *   VCNET_TEST_UNPLUG_WAIT_MS=<ms>        each unplug's wait for the guest to release the NIC
 */
import { testSeam } from '../../dist/test-seams.js';

const waits = [['unplugWait', 'VCNET_TEST_UNPLUG_WAIT_MS']];
for (const [seam, variable] of waits) {
  const text = process.env[variable];
  if (text === undefined || text === '') continue;
  const milliseconds = Number(text);
  // A typo must not quietly leave the product's wait in place (or make it NaN).
  if (!Number.isInteger(milliseconds) || milliseconds < 1) {
    throw new Error(`${variable}=${text}: expected a whole number of milliseconds, 1 or more`);
  }
  testSeam(seam).set(() => milliseconds);
}
