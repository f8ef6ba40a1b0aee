/** `vcnet watch`: follows a sandbox's namespace and passes its changes on to the VM (watchSandbox). */
import type { Command } from 'commander';
import { decimalInteger } from '../../arguments.js';
import { VcnetError } from '../../errors.js';
import { stateDirectory } from '../../network/state/store.js';
import { refusedMacvtapAdvice } from '../../network/user-namespace.js';
import { shellWord } from '../../shell-word.js';
import { describeCommand } from '../help-details.js';
import { importForCommand } from '../lazy-import.js';
import { errorLogFields } from '../observability/log-subscriber.js';
import { bindLogContext, logContext, logger } from '../observability/logger.js';
import { JSON_ERRORS_OPTION } from '../options.js';
import { writeStderr } from '../output.js';

/** How long a stopping watch may spend applying the change it had pending. */
const STOP_BOUND_MS = 10_000;

export function registerWatch(program: Command): void {
  describeCommand(program.command('watch'), {
    summary: "keep a sandbox's VM in step with its namespace (hot-plug, unplug, push changes)",
    description:
      "keep a sandbox's VM in step with its namespace: hot-plug new interfaces, unplug deleted ones, push address and route changes, until Ctrl-C, until the sandbox is detached, or until the pod is deleted with no VM left. Each change applied is one JSON line on stdout.",
    details: [
      "A change the VM could not take is tried again by itself after a growing wait, said in one line when it first fails and one when it applies, none per try (a new link that cannot be attached likewise: one warning, tried again after a growing wait and at once when that link changes, one more when it is attached). Watch runs until Ctrl-C, until the sandbox is detached (it notices within a second), or until the pod is deleted with no VM left: when the recorded namespace path is gone or names another namespace, watch says so once, with `vcnet detach` to drop the record, and ends, exit 0, letting the namespace go (its hold was the last); while the sandbox's VM still runs (its control socket accepts, or a process holds a tap), it watches on through the namespace it holds and ends once the VM is gone.",
      "Which links it attaches: one that appears after watch started, and one that had no address then (the IPv6 link-local one every up link has does not count, as for attach) once it gets one; never a link that had an address and was not attached when watch started, nor one del-iface removed since, whatever changes on it later (add-iface attaches those, and watch names them on stderr when it starts: one vcnet refuses for what it is, such as a vxlan with an address, with its refusal and what to do instead of add-iface; a link deleted and made again is new), nor a link in vcnet's link group (30307) or named like vcnet's taps.",
      "When it starts (or starts again after it was stopped or killed) it compares the record with the namespace and applies what changed while no watch ran, as if it had happened while watching: an attached pod link that is gone (CNI DEL) is unplugged and its plumbing removed; one made again under its name (another ifindex or kind: a link is its ifindex, not its name) is removed and the new link attached and hot-plugged; one renamed (same ifindex) is removed under its old name and attached again under its new one, as a rename while watching is; changed addresses, routes, MTU, flags and permanent neighbours are pushed to the guest; vcnet's tap or macvtap of an endpoint that is gone is reported as below (not made again).",
      "A MAC changed on an attached pod link (same ifindex) is not followed, while watching or at start: the guest NIC keeps the MAC it was plugged with (the record too); del-iface and add-iface plug it again with the new one. For a tcfilter endpoint, whose guest NIC has the MAC the pod link had at attach, watch warns (each watch, when it starts too, and again when the link has the guest's MAC back) and its JSON line lists it in macChanges: peers that learn the address by ARP still reach the VM (the guest answers with its own MAC), frames sent to the link's new MAC reach the VM and are dropped by its NIC.",
      "When the sandbox's VM is gone (its QMP or API socket is not there, or nobody listens on it), a deleted pod link is removed on the host side only, with a warning that says so (and its JSON line at once, even when the rest of its change waits); other changes wait for the VM (tried again). A VMM that answers and refuses, or does not answer in time, is not taken as gone.",
      "Only the record's endpoints are compared: a link that appeared meanwhile with an address counts as one there when watch started (the record does not say whether attach left it alone on purpose).",
      "An attach a watch or add-iface killed part-way left unfinished in the record is undone when watch starts (it names the link on stderr), and the link is attached as a new one: a NIC that attach had hot-plugged is unplugged from the VM first (as del-iface does; a VM whose QMP or API socket is gone or refuses has taken it with it), and while the VM keeps it (the guest does not release it, another client holds QMP) the link stays recorded as it was and watch says why (`vcnet gc` or del-iface finishes it later). A QEMU's QMP another client holds, or a Cloud Hypervisor that answers no `vmm.ping` (it answers one API request at a time: one slow or hung on another answers none), is waited for without the sandbox's lock (VCNET_QMP_CONNECT_TIMEOUT seconds, default 30) before the unplug, so other commands on the sandbox go ahead meanwhile; busy past that, watch starts anyway and leaves the link as it was, saying so.",
      "When vcnet's own tap or macvtap of an attached endpoint goes away (deleted or moved out by someone else), watch warns, naming the endpoint, and its JSON line lists it in lostDevices: the VM's NIC has no backend until del-iface and add-iface.",
      "When a tc object vcnet made for an attached endpoint is deleted by someone else (the pod link's ingress qdisc or redirect filter, the tap's redirect, an htb rate limit or a class under it), watch makes it again as the record has it (when it starts too) and warns, naming link and object; an htb class of vcnet's whose rate or ceil someone changed (`tc class change`) gets the sandbox's rate back, with a warning naming the rate it found (another rate is the sandbox's configuration, then del-iface and add-iface) (what the kernel refused for now (EBUSY, EAGAIN, ENOBUFS, EINTR, ENOMEM; transient: true in the JSON line) is tried again after a growing wait, 5 times at most, and with the next tc change: one warning when it first fails, saying how long it is tried, none per try, and one when it is made or the watch gives up; a refusal a retry cannot change (EINVAL, EOPNOTSUPP, ENOENT, ...) is said once with its hint and checked again only with the next tc change); when another tool's object holds its place now (a filter at vcnet's priority, a clsact, a root qdisc) it leaves that alone and warns once with what to do (a deleted pod link or tap is the case above, not this); vcnet's ifb of a rate limit, deleted, is not made again: watch warns that the device's redirect to it now drops that direction's frames, and del-iface and add-iface attach the link again.",
      'INT, TERM and HUP stop it after it has applied what changed during the debounce (at most 10 s; it names what it did not attach).',
      'Each change applied is one JSON line on stdout (a change that did nothing to the sandbox, such as the deletion of the tap of a link it removed, prints none, nor does one whose only news is the same failures as the line before): {time, added, removed, updated, failed: [{name, code, message, hint?, refused?}], lostDevices?, overLimit?, trafficControl?: [{endpoint, link, object, outcome, message, transient?}], macChanges?: [{endpoint, link, guestMac, podMac, message}]} (names of guest interfaces; failed: links it could not attach, tried again after a growing wait or when the link changes, except one with refused: true, a link vcnet refuses for what it is (a vxlan or bridge with an address, a tun, a macvtap in a user namespace other than the initial one): reported once and not tried again while it is there; a link deleted and made again is new)',
    ],
  })
    .requiredOption('--sandbox <id>', 'sandbox id')
    .option('--debounce <ms>', 'wait this long after the last change before applying', '200')
    .option('--state-dir <dir>', 'where sandbox state lives')
    .option(
      '--max-endpoints <n>',
      'attach no new link once the sandbox has this many endpoints (it is named on stderr and left alone; add-iface attaches it): a bound for pods whose code may make links',
    )
    .option(...JSON_ERRORS_OPTION)
    .action(async (options: { sandbox: string; debounce: string; stateDir?: string; maxEndpoints?: string }) => {
      const maxEndpoints =
        options.maxEndpoints === undefined
          ? undefined
          : decimalInteger('--max-endpoints', options.maxEndpoints, 1, 65_536, 'a whole number from 1 to 65536');
      const debounceMs = decimalInteger('--debounce', options.debounce, 0, 60_000, 'milliseconds from 0 to 60000');
      // The command's context (main.ts) gives the lines their sandbox and operation.
      const log = logger();
      // Loaded here, not at start: it brings the agent's protobuf code, which most commands never use.
      const { watchSandbox } = await importForCommand('`vcnet watch`', () => import('../../sandbox/sandbox-watch.js'));
      const watching = await watchSandbox(options.sandbox, {
        stateDirectory: stateDirectory(options.stateDir),
        debounceMs,
        ...(maxEndpoints !== undefined ? { maxEndpoints } : {}),
        onApplied: (summary) =>
          process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...summary })}\n`),
        onError: (error) =>
          log.error(
            errorLogFields(log, error),
            'could not apply a namespace change; it is tried again after a growing wait until it applies (a line when it does, none per try), and watching goes on',
          ),
      });
      // watch takes no --netns: its log lines name the namespace the record names.
      bindLogContext({ ...logContext(), netns: watching.namespacePath });
      // A service manager stops with TERM, a closed terminal sends HUP: both stop the watch the same way.
      // Listened for before "watching" is said: a signal sent as soon as a reader sees that line (on a
      // busy machine, before this process runs again) would otherwise end it by the default action.
      const stopSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
      let signalled: () => void = () => {};
      const signal = new Promise<void>((resolve) => {
        signalled = resolve;
        for (const name of stopSignals) process.once(name, resolve);
      });
      // One write: a reader that sees the first line sees the second.
      // add-iface is advised only for links it attaches: a macvtap refused here gets what works instead.
      // One vcnet refuses for what it is (a vxlan with an address) is named with its own refusal.
      const startRefusals = watching.refusals;
      const leftAlone = watching.leftAlone.filter((name) => !watching.refused.has(name) && !startRefusals.has(name));
      const refusedAtStart = watching.leftAlone.filter((name) => watching.refused.has(name));
      const refusedForWhatItIs = watching.leftAlone.filter(
        (name) => !watching.refused.has(name) && startRefusals.has(name),
      );
      writeStderr(
        `vcnet: watching sandbox ${options.sandbox} (Ctrl-C to stop)\n${
          leftAlone.length > 0
            ? `vcnet: watch leaves ${leftAlone.join(', ')} alone: ${leftAlone.length > 1 ? 'each' : 'it'} had an address and was not attached when watch started (\`vcnet add-iface ${options.sandbox} FILE\` attaches one)\n`
            : ''
        }${
          refusedAtStart.length > 0
            ? `vcnet: watch leaves ${refusedAtStart.join(', ')} alone: ${refusedMacvtapAdvice(refusedAtStart)}\n`
            : ''
        }${refusedForWhatItIs
          .map((name) => {
            const failure = startRefusals.get(name)!;
            return `vcnet: watch leaves ${name} alone, which vcnet refuses (${failure.message})${failure.hint ? `: ${failure.hint}` : ''}\n`;
          })
          .join('')}${watching.undoneAttaches
          .map(
            (name) =>
              `vcnet: watch undid the unfinished attach of ${name} (a watch or add-iface stopped part-way) and attaches it as a new link\n`,
          )
          .join('')}${watching.notUndone
          .map(
            (failure) =>
              `vcnet: watch could not undo the unfinished attach of ${failure.name} (${failure.message}); \`vcnet gc --netns ${shellWord(watching.namespacePath)} --state-dir ${shellWord(stateDirectory(options.stateDir))}\` tries again\n`,
          )
          .join('')}`,
      );
      // Node ends a process whose event loop has nothing left to wait for, however long the command
      // awaits: a watch with no poll on its event socket (and no timer due) would exit 13, "unsettled
      // top-level await", saying nothing. It fails instead, saying so, with a vcnet exit code.
      let loopEmptied: () => void = () => {};
      const emptied = new Promise<'emptied'>((resolve) => {
        loopEmptied = () => resolve('emptied');
        process.once('beforeExit', loopEmptied);
      });
      const gone = await Promise.race([signal.then(() => undefined), watching.ended, emptied]);
      for (const name of stopSignals) process.off(name, signalled);
      process.off('beforeExit', loopEmptied);
      if (gone === 'emptied') {
        await watching.stop();
        throw new VcnetError(
          'VCNET_ERROR',
          `watch of sandbox ${options.sandbox} stopped hearing of namespace changes: nothing was left to wake it (a bug in vcnet; please report it); the changes it applied are recorded`,
          {
            value: options.sandbox,
            hint: `\`vcnet watch --sandbox ${shellWord(options.sandbox)}\` starts it again; it leaves alone a link added since that has an address: \`vcnet add-iface ${shellWord(options.sandbox)} FILE\` attaches one`,
          },
        );
      }
      // What changed just before the signal is applied first (a link added during the debounce would
      // otherwise be lost: a watch started later leaves an addressed link alone), within a bound.
      let bound: NodeJS.Timeout | undefined;
      const notApplied = await Promise.race([
        watching.stop({ applyPending: gone === undefined }),
        new Promise<undefined>((resolve) => {
          bound = setTimeout(() => resolve(undefined), STOP_BOUND_MS);
        }),
      ]);
      clearTimeout(bound);
      if (notApplied === undefined) {
        // Past the bound, a change still waiting (for the sandbox's lock, or for a QMP another client
        // holds, up to VCNET_QMP_CONNECT_TIMEOUT) is given up: it has changed nothing, and its wait
        // would keep the process running.
        void watching.stop();
        writeStderr(
          `vcnet: watch ended before the last namespace change was applied (${STOP_BOUND_MS / 1000} s): \`vcnet add-iface\` attaches an interface it missed\n`,
        );
      } else if (notApplied.length > 0) {
        // add-iface is advised only for links it takes: one vcnet refused is named with why and what to do.
        const refusals = watching.refusals;
        const attachable = notApplied.filter((name) => !watching.refused.has(name) && !refusals.has(name));
        const refused = notApplied.filter((name) => watching.refused.has(name));
        for (const name of notApplied.filter((name) => !watching.refused.has(name) && refusals.has(name))) {
          const failure = refusals.get(name)!;
          writeStderr(
            `vcnet: watch ended without attaching ${name}, which vcnet refuses (${failure.message})${failure.hint ? `: ${failure.hint}` : ''}\n`,
          );
        }
        if (attachable.length > 0)
          writeStderr(
            `vcnet: watch ended without attaching ${attachable.join(', ')}: \`vcnet add-iface ${options.sandbox} FILE\` attaches ${attachable.length > 1 ? 'each' : 'it'}\n`,
          );
        if (refused.length > 0)
          writeStderr(`vcnet: watch ended without attaching ${refused.join(', ')}: ${refusedMacvtapAdvice(refused)}\n`);
      }
      // Detached while watched: the watch has nothing left to do, which is not a failure.
      // Or the pod was deleted (its namespace path gone) with no VM left: the notice said what to do.
      if (gone)
        writeStderr(
          gone.code === 'VCNET_NETNS_GONE'
            ? `vcnet: sandbox ${options.sandbox}'s namespace ${watching.namespacePath} is gone and no VM is left; watch ends\n`
            : `vcnet: sandbox ${options.sandbox} was detached; watch ends\n`,
        );
    });
}
