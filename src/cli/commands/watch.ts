import type { Command } from 'commander';
import { InvalidInputError } from '../../errors.js';
import { stateDirectory } from '../../network/state/store.js';
import { logger } from '../observability/logger.js';

export function registerWatch(program: Command): void {
  program
    .command('watch')
    .description(
      "keep a sandbox's VM in step with its namespace: hot-plug new interfaces, unplug deleted ones, push address and route changes; a change the VM could not take is tried again by itself (until Ctrl-C, or until the sandbox is detached: watch notices within a second). Which links it attaches: one that appears after watch started, and one that had no address then once it gets one; never a link that had an address and was not attached when watch started, nor one del-iface removed since, whatever changes on it later (add-iface attaches those; a link deleted and made again is new)",
    )
    .requiredOption('--sandbox <id>', 'sandbox id')
    .option('--debounce <ms>', 'wait this long after the last change before applying', '200')
    .option('--state-dir <dir>', 'where sandbox state lives')
    .action(async (options: { sandbox: string; debounce: string; stateDir?: string }) => {
      const debounceMs = Number(options.debounce);
      if (!Number.isInteger(debounceMs) || debounceMs < 0 || debounceMs > 60_000) {
        throw new InvalidInputError('--debounce', options.debounce, 'milliseconds from 0 to 60000');
      }
      const log = logger().child({ sandbox: options.sandbox, operation: 'watch' });
      // Loaded here, not at start: it brings the agent's protobuf code, which most commands never use.
      const { watchSandbox } = await import('../../sandbox/sandbox-watch.js');
      const watching = await watchSandbox(options.sandbox, {
        stateDirectory: stateDirectory(options.stateDir),
        debounceMs,
        onApplied: (summary) =>
          process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...summary })}\n`),
        onError: (error) =>
          log.error(
            { err: error },
            'could not apply a namespace change; it is tried again shortly, and watching goes on',
          ),
      });
      process.stderr.write(`vcnet: watching sandbox ${options.sandbox} (Ctrl-C to stop)\n`);
      let signalled: () => void = () => {};
      const signal = new Promise<void>((resolve) => {
        signalled = resolve;
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      const gone = await Promise.race([signal.then(() => undefined), watching.ended]);
      process.off('SIGINT', signalled);
      process.off('SIGTERM', signalled);
      await watching.stop();
      // Detached while watched: the watch has nothing left to do, which is not a failure.
      if (gone) process.stderr.write(`vcnet: sandbox ${options.sandbox} was detached; watch ends\n`);
    });
}
