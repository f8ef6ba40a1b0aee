/**
 * vcnet-cni: a chained CNI plugin that gives CNI_IFNAME to a VM (a tap joined by tc filters, or a
 * macvtap). Run by a container runtime with CNI_* variables and the network config on stdin; also
 * `node dist/cni/main.js`, the launcher `vcnet install-cni` writes to /opt/cni/bin, or (in development)
 * the src/cni/vcnet-cni wrapper placed in CNI_PATH. main.ts, the program's first file, loads this
 * module and runs main().
 */
import { guardOutputStreams, OUTPUT_LOST_EXIT_CODE, stdoutLost } from '../cli/observability/output-streams.js';
import { startObservability } from '../cli/observability/start.js';
import { escapedControlCharactersInMessage } from '../terminal-text.js';
import type { OpenFileLimit } from './file-limit.js';
import { runPlugin } from './plugin.js';

async function readStandardInput(): Promise<string> {
  // A person typing `CNI_COMMAND=VERSION vcnet-cni` on a terminal gets an answer instead of a wait.
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The root span's attributes: who asked for what (the CNI_* variables a runtime sets). */
function commandAttributes(env: NodeJS.ProcessEnv): Record<string, string> {
  const attributes: Record<string, string | undefined> = {
    'vcnet.cni.command': env.CNI_COMMAND,
    'vcnet.cni.containerId': env.CNI_CONTAINERID,
    'vcnet.cni.ifname': env.CNI_IFNAME,
    'vcnet.cni.netns': env.CNI_NETNS,
  };
  return Object.fromEntries(Object.entries(attributes).filter(([, value]) => value)) as Record<string, string>;
}

/** The deciding VCNET_* code of an error reply: its details start with it (cniErrorReply). */
function decidedCodeOf(reply: { details?: unknown }): string {
  return (typeof reply.details === 'string' && /^VCNET_[A-Z0-9_]+/.exec(reply.details)?.[0]) || 'VCNET_ERROR';
}

/**
 * Writes the reply; settles whether stdout takes it or not (a file such as /dev/full fails inside
 * write(), a pipe whose reader has gone later, through the callback and 'error'): guardOutputStreams
 * records the failure instead of a stack and an exit 1.
 */
function writeReply(text: string): Promise<void> {
  return new Promise<void>((resolve) => {
    process.stdout.write(text, (error) => {
      if (error) process.stdout.emit('error', error);
      resolve();
    });
    if (stdoutLost() !== undefined) resolve();
  });
}

/** The error reply of a command that failed, once known: the line saying its reply was lost carries it. */
let failedReply: { code?: unknown; msg?: unknown; details?: unknown } | undefined;

/** "CNI code N, VCNET_X: message" of an error reply, on one line (its control characters escaped). */
function failureLine(reply: { code?: unknown; msg?: unknown; details?: unknown }): string {
  return escapedControlCharactersInMessage(
    `CNI code ${String(reply.code)}, ${decidedCodeOf(reply)}: ${String(reply.msg)}`,
  );
}

/**
 * One invocation: the reply on stdout, then the exit. `openFileLimit`: the limit main.ts read as the
 * process started, for the hint of an error that ran out of open files.
 */
export async function main(startedWith: { openFileLimit?: OpenFileLimit | undefined } = {}): Promise<void> {
  // What the command changed stays done when its reply cannot be written; one line on stderr says so.
  // A failed command's reply is the only place its error shows: the line says it (a runtime's log keeps stderr).
  guardOutputStreams((error) => {
    const lost = `vcnet-cni: the reply on stdout was lost (${error.code ?? error.message})`;
    process.stderr.write(
      failedReply === undefined
        ? `${lost}; what the command did stays done; it exits ${OUTPUT_LOST_EXIT_CODE} unless it failed\n`
        : `${lost}; the command failed (${failureLine(failedReply)}); it exits 1\n`,
    );
  });
  const observing = await startObservability(process.env);
  const input = await readStandardInput();
  const command = process.env.CNI_COMMAND ?? '';
  // One root span per invocation (vcnet.cni.add...), parenting every span the command makes.
  const outcome = await observing.inCommandSpan(
    /^[A-Z]{1,16}$/.test(command) ? `vcnet.cni.${command.toLowerCase()}` : 'vcnet.cni',
    commandAttributes(process.env),
    async (span) => {
      // Each notice once: as a log line when VCNET_LOG_LEVEL logs them, else as the plugin's own warning line.
      const result = await runPlugin(input, process.env, {
        writeNotices: !observing.logsNotices,
        openFileLimit: startedWith.openFileLimit,
      });
      if (result.exitCode !== 0) {
        try {
          failedReply = JSON.parse(result.stdout) as { code?: unknown; msg?: unknown; details?: unknown };
          span.failWith(decidedCodeOf(failedReply), String(failedReply.msg));
        } catch {
          failedReply = { msg: result.stdout };
          span.failWith('VCNET_ERROR', result.stdout);
        }
      }
      return result;
    },
  );
  // The result goes out before the spans: exporting them (bounded, and never failing) must neither
  // delay nor change what the runtime reads. A success with nothing to say (DEL) writes nothing.
  if (outcome.stdout) await writeReply(`${outcome.stdout}\n`);
  await observing.stop();
  // Exit now: the runtime waits for the exit, and no handle (an export still in flight) may keep us alive.
  // A success whose reply was lost exits 6 (as the CLI does): the runtime must not take it for a result.
  process.exit(outcome.exitCode === 0 && stdoutLost() !== undefined ? OUTPUT_LOST_EXIT_CODE : outcome.exitCode);
}
