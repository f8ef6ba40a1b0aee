/**
 * Preloaded (node --import) into a vcnet process by the kill -9 loop: a worker thread kills the whole
 * process with SIGKILL a chosen time after an operation starts (the `vcnet:attach` or `vcnet:detach`
 * tracing channel's start event). The worker runs beside the main thread, so the kill lands anywhere:
 * inside a synchronous stretch, between a netlink send and its ack, during a journal write, or after
 * the operation in the record's final write. Production code knows nothing of it.
 *
 *   VCNET_TEST_KILL_OPERATION=attach|detach|hotplug   which operation's start arms the timer
 *   VCNET_TEST_KILL_FROM=load                 arm it instead as this preload loads, before the
 *                                             program's own code: the kill can then also land in
 *                                             what a command does before the operation (vcnet-cni
 *                                             reading stdin, making its lock file and directories)
 *   VCNET_TEST_KILL_AFTER_US=<microseconds>   when to kill, counted from that start (absent: never)
 *   VCNET_TEST_KILL_CNI_COMMAND=ADD|DEL       only in a vcnet-cni run of that CNI_COMMAND (the other
 *                                             runs of a runtime that passes its environment to all
 *                                             plugins are left alone)
 *   VCNET_TEST_KILL_AT=asyncEnd               kill instead, on the main thread, when the operation's
 *                                             promise settles (`hotplug`: one endpoint's tap, filters,
 *                                             netdev_add and device_add done, its record still pending)
 *   VCNET_TEST_REPORT_WINDOW=1                print "vcnet: kill window <us>" at exit: start to exit,
 *                                             and "vcnet: load window <us> operation at <us>": this
 *                                             preload's load to exit, and to the operation's start
 *
 * Or deterministically, at a change rather than a time: the changes the run makes from the
 * operation's start, in order, are each netlink batch of the executor, once its answers are in (the
 * first of its steps told on the vcnet:plan:step channel; the kernel runs a batch's one send whole,
 * a kill cannot land inside it), and each call that changes a file or directory (rename, rm, unlink,
 * rmdir, mkdir, a file written or opened to write; the outermost call, not what it calls). A sysctl
 * the executor writes after a batch's netlink send (an IPv6 address generation mode put back) counts
 * as a change made before it is written: a kill there lands between the two halves of that batch.
 *   VCNET_TEST_KILL_AT_CHANGE=<n>             kill right after the n-th of them (0: at the start,
 *                                             before any); prints "vcnet: killed after change <n>:
 *                                             <what>" first
 *   VCNET_TEST_REPORT_CHANGES=1               print "vcnet: change <n>: <what>" for each, as it is made
 */
import { channel, tracingChannel } from 'node:diagnostics_channel';
import fs from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { Worker } from 'node:worker_threads';

const operation = process.env.VCNET_TEST_KILL_OPERATION ?? 'attach';
const onlyCommand = process.env.VCNET_TEST_KILL_CNI_COMMAND;
const afterMicroseconds =
  onlyCommand === undefined || onlyCommand === process.env.CNI_COMMAND
    ? process.env.VCNET_TEST_KILL_AFTER_US
    : undefined;
const fromLoad = process.env.VCNET_TEST_KILL_FROM === 'load';
const armed = new Int32Array(new SharedArrayBuffer(4));
// When it was armed (process.hrtime, one monotonic clock for every thread): the worker counts the
// delay from there, not from its own start, which comes later under load.
const armedAt = new BigInt64Array(new SharedArrayBuffer(8));
const loadedAt = process.hrtime.bigint();

if (afterMicroseconds !== undefined) {
  const killer = new Worker(
    `const { workerData } = require('node:worker_threads');
     const [armed, armedAt, nanoseconds] = workerData;
     Atomics.wait(armed, 0, 0);
     const left = Number(Atomics.load(armedAt, 0) + BigInt(nanoseconds) - process.hrtime.bigint()) / 1e6;
     if (left > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, left);
     process.kill(process.pid, 'SIGKILL');`,
    { eval: true, workerData: [armed, armedAt, Number(afterMicroseconds) * 1000] },
  );
  // Never what keeps the process alive: a run that ends before the kill just ends.
  killer.unref();
  if (fromLoad) arm(loadedAt);
}

function arm(at) {
  Atomics.store(armedAt, 0, at);
  Atomics.store(armed, 0, 1);
  Atomics.notify(armed, 0);
}

const killAtChange =
  process.env.VCNET_TEST_KILL_AT_CHANGE !== undefined &&
  (onlyCommand === undefined || onlyCommand === process.env.CNI_COMMAND)
    ? Number(process.env.VCNET_TEST_KILL_AT_CHANGE)
    : undefined;
const reportChanges = process.env.VCNET_TEST_REPORT_CHANGES === '1';
let changes = 0;
// Whether the last change was a plan step: the steps of one batch are told one after the other once
// the whole batch is answered, and count as one change.
let inBatch = false;

/** One change made since the operation's start: reported, and the process killed when it is the chosen one. */
function changed(what, planStep = false) {
  if (startedAt === undefined) return;
  const sameBatch = planStep && inBatch;
  inBatch = planStep;
  if (sameBatch) return;
  changes++;
  // Written straight to fd 2: the kill follows at once, before any stream would flush.
  if (reportChanges) fs.writeSync(2, `vcnet: change ${changes}: ${what}\n`);
  if (changes === killAtChange) {
    fs.writeSync(2, `vcnet: killed after change ${changes}: ${what}\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}

if (killAtChange !== undefined || reportChanges) {
  channel('vcnet:plan:step').subscribe((event) => {
    changed(`netlink batch (${event.phase}) answered, its first step: ${event.step}`, true);
  });
  const writing = (flags) =>
    typeof flags === 'number'
      ? (flags & (fs.constants.O_WRONLY | fs.constants.O_RDWR | fs.constants.O_CREAT)) !== 0
      : typeof flags === 'string' && /[wa+]/.test(flags);
  // Calls under way: rmSync unlinks through fs.unlinkSync, and that is one change, the rmSync.
  let depth = 0;
  const wrap = (name, changes) => {
    const original = fs[name];
    fs[name] = function (...args) {
      depth++;
      let result;
      try {
        result = original.apply(this, args);
      } finally {
        depth--;
      }
      if (depth === 0 && changes(...args)) changed(`${name} ${String(args[0])}`);
      return result;
    };
  };
  for (const name of ['renameSync', 'rmSync', 'unlinkSync', 'rmdirSync', 'mkdirSync', 'writeFileSync']) {
    wrap(name, () => true);
  }
  wrap('openSync', (_path, flags) => writing(flags));
  // The programs import these by name from node:fs: their bindings follow the module object now.
  syncBuiltinESMExports();
  // The addon, loaded as the programs load it (node-gyp-build from the package root): one module
  // object, whose functions they look up at each call.
  const addon = createRequire(import.meta.url)('node-gyp-build')(new URL('../..', import.meta.url).pathname);
  const writeFileInNetns = addon.writeFileInNetns;
  if (typeof writeFileInNetns === 'function') {
    addon.writeFileInNetns = function (...args) {
      changed(`sysctl ${String(args[1])} about to be written`);
      return writeFileInNetns.apply(this, args);
    };
  }
}

let startedAt;
const ignore = () => {};
tracingChannel(`vcnet:${operation}`).subscribe({
  start() {
    if (startedAt !== undefined) return;
    startedAt = process.hrtime.bigint();
    if (!fromLoad) arm(startedAt);
    if (killAtChange === 0) {
      fs.writeSync(2, `vcnet: killed after change 0: the ${operation}'s start\n`);
      process.kill(process.pid, 'SIGKILL');
    }
  },
  end: ignore,
  asyncStart: ignore,
  asyncEnd:
    process.env.VCNET_TEST_KILL_AT === 'asyncEnd' &&
    (onlyCommand === undefined || onlyCommand === process.env.CNI_COMMAND)
      ? () => {
          process.kill(process.pid, 'SIGKILL');
        }
      : ignore,
  error: ignore,
});

if (process.env.VCNET_TEST_REPORT_WINDOW === '1') {
  process.on('exit', () => {
    if (startedAt === undefined) return;
    const exitedAt = process.hrtime.bigint();
    const microseconds = (from, to) => Number((to - from) / 1000n);
    process.stderr.write(`vcnet: kill window ${microseconds(startedAt, exitedAt)}\n`);
    process.stderr.write(
      `vcnet: load window ${microseconds(loadedAt, exitedAt)} operation at ${microseconds(loadedAt, startedAt)}\n`,
    );
  });
}
