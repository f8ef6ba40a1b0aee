/** `vcnet detach`: undoes exactly what a sandbox's attach made, from its record. */

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { QmpClient } from '../../hypervisor/qmp.js';
import { QemuNetworkHotplugTarget } from '../../hypervisor/qmp-network-hotplug.js';
import { changeCount } from '../../network/plan/undo.js';
import { stateDirectoryFlag } from '../../network/state/default-directories.js';
import { registeredStateDirectories, registryPath } from '../../network/state/registry.js';
import { stateDirectory } from '../../network/state/store.js';
import { type DetachResult, detachSandbox } from '../../sandbox/detach.js';
import { type PlannedDetach, planSandboxDetach } from '../../sandbox/plan.js';
import { commandIn } from '../../shell-word.js';
import { describeCommand } from '../help-details.js';
import { LOCK_TIMEOUT_OPTION, parseLockTimeout } from '../options.js';
import { print, printComment, printJson, writeStderr } from '../output.js';
import { bindRecordNamespace } from './record-namespace.js';

export function registerDetach(program: Command): void {
  describeCommand(program.command('detach'), {
    summary: 'undo exactly what attach made, from the record (stop the VM first)',
    description: 'undo exactly what attach made, from the recorded state alone',
    details: [
      "Stop the VM first, as Kata does: a VM still holding a device (a tap with a queue attached, a macvtap's /dev/tapN open; or its control socket answering) is warned about, naming the device and pid, and detached anyway.",
    ],
  })
    .requiredOption('--sandbox <id>', 'sandbox id')
    .option('--state-dir <dir>', 'where sandbox state lives')
    .option(...LOCK_TIMEOUT_OPTION)
    .option('--json', 'machine-readable output')
    .option(
      '--dry-run',
      'print what detach would undo as ip/tc commands to run inside the namespace, and change nothing',
    )
    .action(
      async (options: {
        sandbox: string;
        stateDir?: string;
        json?: boolean;
        lockTimeout?: string;
        dryRun?: boolean;
      }) => {
        bindRecordNamespace(options.sandbox, stateDirectory(options.stateDir));
        // A refused VCNET_STATE_REGISTRY is bad input before anything is done, as for attach and gc:
        // read only for the note below, it was passed over, and a detach that found nothing in the
        // wrong --state-dir said so with no word of where the sandbox is recorded.
        registryPath();
        if (options.dryRun) {
          const planned = await planSandboxDetach(options.sandbox, {
            stateDirectory: stateDirectory(options.stateDir),
          });
          const recordedIn = planned.found ? [] : recordedElsewhere(options.sandbox, stateDirectory(options.stateDir));
          noteRecordedElsewhere(options.sandbox, stateDirectory(options.stateDir), recordedIn);
          printPlannedDetach(planned, recordedIn, options.json === true);
          return;
        }
        const connections: QmpClient[] = [];
        const lockTimeoutMs = parseLockTimeout(options.lockTimeout);
        const result = await detachSandbox(options.sandbox, {
          stateDirectory: stateDirectory(options.stateDir),
          ...(lockTimeoutMs !== undefined ? { lockTimeoutMs } : {}),
          // When the sandbox's VM runs, its NICs are unplugged before the plumbing goes. A busy QMP
          // is waited for before the locks (3 s, or VCNET_QMP_CONNECT_TIMEOUT when set): under them
          // only the short wait detach says.
          connectHotplug: async (state, { qmpHandshakeTimeoutMs }) => {
            const socket = state.hypervisor?.kind === 'qemu' ? state.hypervisor.controlSocket : undefined;
            if (!socket) return undefined;
            const qmp = await QmpClient.connect(socket, { timeoutMs: qmpHandshakeTimeoutMs });
            connections.push(qmp);
            return new QemuNetworkHotplugTarget(qmp, { timeoutMs: 10_000 });
          },
        }).finally(() => Promise.all(connections.map((qmp) => qmp.close().catch(() => undefined))));
        // Not attached here, but recorded in another registered state directory: a wrong --state-dir.
        const recordedIn = result.found ? [] : recordedElsewhere(options.sandbox, stateDirectory(options.stateDir));
        noteRecordedElsewhere(options.sandbox, stateDirectory(options.stateDir), recordedIn);
        if (options.json) {
          printJson({
            sandbox: result.id,
            found: result.found,
            ...(recordedIn.length > 0 ? { recordedIn } : {}),
            ...(result.namespaceGone ? { namespaceGone: result.namespaceGone } : {}),
            ...(result.fromEarlierBoot ? { fromEarlierBoot: result.fromEarlierBoot } : {}),
            ...(result.namespaceHeldAt ? { namespaceHeldAt: result.namespaceHeldAt } : {}),
            ...(result.heldBy !== undefined ? { heldBy: result.heldBy } : {}),
            ...(result.namespacePathReused ? { namespacePathReused: true } : {}),
            ...(result.namespaceHeldThrough ? { namespaceHeldThrough: result.namespaceHeldThrough } : {}),
            undone: result.report?.undone ?? 0,
            alreadyGone: result.report?.alreadyGone ?? 0,
            kept: result.report?.kept ?? 0,
          });
          return;
        }
        if (!result.found) {
          print(`sandbox ${result.id} is not attached: nothing to do`);
          return;
        }
        if (result.fromEarlierBoot) {
          print(
            `sandbox ${result.id}: its record was written in an earlier boot (boot id ${result.fromEarlierBoot.bootId}; this boot is ${result.fromEarlierBoot.currentBootId}), so its namespace ${result.namespaceGone} and everything attach made went with that boot: nothing undone, nothing looked at (its inode, cookie and sockets may be new objects' now); record dropped`,
          );
          return;
        }
        if (result.namespaceGone) {
          print(
            `sandbox ${result.id}: its namespace ${result.namespaceGone} is gone, and what attach made went with it; record dropped`,
          );
          return;
        }
        const counts = [
          ...(result.report?.alreadyGone ? [`${result.report.alreadyGone} already gone`] : []),
          ...(result.report?.kept ? [`${result.report.kept} kept`] : []),
        ];
        const gone = counts.length > 0 ? ` (${counts.join(', ')})` : '';
        const path = result.namespacePathReused
          ? 'its path names another namespace now, left untouched'
          : 'its path is gone';
        const through = result.namespaceHeldAt
          ? ` through ${result.namespaceHeldAt}${result.heldBy !== undefined ? ` (process ${result.heldBy} still ${heldHow(result)}; ${path})` : ` (${path}; a mount still holds it)`}`
          : '';
        print(`detached sandbox ${result.id}: ${result.report?.undone ?? 0} change(s) undone${gone}${through}`);
      },
    );
}

/** How the process named by a detach's heldBy keeps the namespace: in it, an nsfs fd, a socket or a tap. */
function heldHow(result: DetachResult): string {
  if (result.namespaceHeldThrough === 'socket') return 'holds a socket made in it';
  if (result.namespaceHeldThrough === 'tap') return 'holds a tap of it';
  return result.namespaceHeldAt?.includes('/fd/') ? 'holds it open' : 'runs in the namespace';
}

/** Registered state directories other than `used` that hold a record of sandbox `id`. */
function recordedElsewhere(id: string, used: string): string[] {
  let directories: string[];
  try {
    directories = registeredStateDirectories();
  } catch {
    return []; // an unreadable registry only loses the note
  }
  return directories.filter(
    (directory) => resolve(directory) !== resolve(used) && existsSync(join(directory, id, 'state.json')),
  );
}

/** Says on stderr where sandbox `id` is recorded when detach found nothing in `used` (exit stays 0). */
function noteRecordedElsewhere(id: string, used: string, recordedIn: readonly string[]): void {
  for (const directory of recordedIn)
    writeStderr(
      `vcnet: note: sandbox ${id} is not recorded in ${used}, but in ${directory}: \`vcnet detach --sandbox ${id}${stateDirectoryFlag(directory)}\` detaches it\n`,
    );
}

function printPlannedDetach(planned: PlannedDetach, recordedIn: readonly string[], json: boolean): void {
  if (json) {
    // alreadyGone and kept are counts, as in detach --json; what they count is listed beside them.
    const { id, alreadyGone, kept, neverMade, found, ...plan } = planned;
    printJson({
      sandbox: id,
      dryRun: true,
      found,
      ...(recordedIn.length > 0 ? { recordedIn } : {}),
      ...plan,
      alreadyGone: alreadyGone.length,
      kept: kept.length,
      neverMade: neverMade.length,
      alreadyGoneObjects: alreadyGone,
      keptObjects: kept,
      neverMadeObjects: neverMade,
    });
    return;
  }
  if (!planned.found) {
    printComment(`sandbox ${planned.id} is not attached: detach would do nothing`);
    return;
  }
  if (planned.fromEarlierBoot) {
    printComment(
      `sandbox ${planned.id}: its record was written in an earlier boot (boot id ${planned.fromEarlierBoot.bootId}; this boot is ${planned.fromEarlierBoot.currentBootId}), so it names nothing that exists; detach would only drop the record`,
    );
    return;
  }
  if (planned.namespaceGone) {
    printComment(
      `sandbox ${planned.id}: its namespace ${planned.namespaceGone} is gone; detach would only drop the record`,
    );
    return;
  }
  printComment(`vcnet detach --dry-run: sandbox ${planned.id}, namespace ${planned.namespacePath}`);
  if (planned.namespaceHeldAt)
    printComment(
      `that path ${planned.namespacePathReused ? 'names another namespace now (not touched)' : 'is gone'}, but the recorded namespace is still held: ${
        planned.namespaceHeldThrough === undefined
          ? `reach it with \`${commandIn(planned.namespaceHeldAt, 'sh -e', 'by-path')}\``
          : `only by the ${planned.namespaceHeldThrough} ${planned.namespaceHeldAt} (a process outside it holds it open), which nsenter cannot enter: \`vcnet detach\` enters it through that ${planned.namespaceHeldThrough}`
      }`,
    );
  print('# run inside the namespace, e.g.: ... | ip netns exec NAME sh -e  (or nsenter --net=PATH sh -e)');
  if (planned.hotplugSocket) printComment(`first, the VM's NICs would be unplugged through ${planned.hotplugSocket}`);
  for (const notice of planned.notices) printComment(`notice: ${notice.message}`);
  for (const gone of planned.alreadyGone) printComment(`already gone: ${gone}`);
  for (const kept of planned.kept) printComment(`kept: ${kept}`);
  // Recorded ahead by an attach cut short: detach passes them over as it does (not undone, not counted).
  for (const unmade of planned.neverMade) printComment(`never made, not undone: ${unmade}`);
  // Counted as the real detach counts them (`N change(s) undone`): a group delete is each of its links.
  printComment(`${planned.steps.reduce((count, step) => count + changeCount(step.change), 0)} change(s)`);
  for (const step of planned.steps) print(step.command);
}
