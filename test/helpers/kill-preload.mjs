/**
 * Preloaded (node --import) into a vcnet process by the kill -9 loop: a worker thread kills the whole
 * process with SIGKILL a chosen time after an operation starts (the `vcnet:attach` or `vcnet:detach`
 * tracing channel's start event). The worker runs beside the main thread, so the kill lands anywhere:
 * inside a synchronous stretch, between a netlink send and its ack, during a journal write, or after
 * the operation in the record's final write. Production code knows nothing of it.
 *
 *   VCNET_TEST_KILL_OPERATION=attach|detach|hotplug   which operation's start arms the timer
 *   VCNET_TEST_KILL_AFTER_US=<microseconds>   when to kill, counted from that start (absent: never)
 *   VCNET_TEST_KILL_AT=asyncEnd               kill instead, on the main thread, when the operation's
 *                                             promise settles (`hotplug`: one endpoint's tap, filters,
 *                                             netdev_add and device_add done, its record still pending)
 *   VCNET_TEST_REPORT_WINDOW=1                print "vcnet: kill window <us>" at exit: start to exit
 */
import { tracingChannel } from 'node:diagnostics_channel';
import { Worker } from 'node:worker_threads';

const operation = process.env.VCNET_TEST_KILL_OPERATION ?? 'attach';
const afterMicroseconds = process.env.VCNET_TEST_KILL_AFTER_US;
const armed = new Int32Array(new SharedArrayBuffer(4));

if (afterMicroseconds !== undefined) {
  const killer = new Worker(
    `const { workerData } = require('node:worker_threads');
     const [armed, milliseconds] = workerData;
     Atomics.wait(armed, 0, 0);
     if (milliseconds > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, milliseconds);
     process.kill(process.pid, 'SIGKILL');`,
    { eval: true, workerData: [armed, Number(afterMicroseconds) / 1000] },
  );
  // Never what keeps the process alive: a run that ends before the kill just ends.
  killer.unref();
}

let startedAt;
const ignore = () => {};
tracingChannel(`vcnet:${operation}`).subscribe({
  start() {
    if (startedAt !== undefined) return;
    startedAt = process.hrtime.bigint();
    Atomics.store(armed, 0, 1);
    Atomics.notify(armed, 0);
  },
  end: ignore,
  asyncStart: ignore,
  asyncEnd:
    process.env.VCNET_TEST_KILL_AT === 'asyncEnd'
      ? () => {
          process.kill(process.pid, 'SIGKILL');
        }
      : ignore,
  error: ignore,
});

if (process.env.VCNET_TEST_REPORT_WINDOW === '1') {
  process.on('exit', () => {
    if (startedAt === undefined) return;
    process.stderr.write(`vcnet: kill window ${Number((process.hrtime.bigint() - startedAt) / 1000n)}\n`);
  });
}
