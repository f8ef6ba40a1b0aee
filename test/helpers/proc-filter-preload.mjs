/**
 * Preloaded (node --import) into a vcnet process by the tests without CAP_SYS_PTRACE: the listing
 * of /proc it gets shows only some processes, so a test can make a machine where the only processes
 * it may not look into are the kernel's threads (and, if asked, its own ancestors), whatever else
 * runs on the shared test machine. Production code knows nothing of it.
 *
 *   VCNET_TEST_PROC_SHOWS=kernel-threads            itself and the kernel threads
 *   VCNET_TEST_PROC_SHOWS=kernel-threads,ancestors  and its parent, its parent's parent... to pid 1
 *
 * Kernel threads are told here as kthreadd (pid 2) and its children (ppid 2), not by PF_KTHREAD as
 * vcnet tells them: the test's idea of them does not share vcnet's code. It holds in the initial pid
 * namespace, where the tests run.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const shows = (process.env.VCNET_TEST_PROC_SHOWS ?? 'kernel-threads').split(',');
const readdir = fs.readdirSync;
const readFile = fs.readFileSync;

/** The parent pid from /proc/PID/stat (the field after the command name's last ')'). */
function parentOf(pid) {
  try {
    const stat = readFile(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

const ancestors = new Set();
if (shows.includes('ancestors'))
  for (let pid = process.ppid; pid > 0 && !ancestors.has(pid); pid = parentOf(pid) ?? 0) ancestors.add(pid);

function shown(name) {
  if (!/^\d+$/.test(name)) return true;
  const pid = Number(name);
  if (pid === process.pid || ancestors.has(pid)) return true;
  return shows.includes('kernel-threads') && (pid === 2 || parentOf(pid) === 2);
}

fs.readdirSync = function readdirSync(path, ...rest) {
  const names = readdir.call(this, path, ...rest);
  return path === '/proc' && rest.length === 0 ? names.filter(shown) : names;
};
// The bundled program imports readdirSync from node:fs: its binding follows the change.
syncBuiltinESMExports();
