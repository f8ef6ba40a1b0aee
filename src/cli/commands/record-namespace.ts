/** The namespace a sandbox's record names, for the log context of commands that take only a sandbox id. */
import { SandboxStore } from '../../network/state/store.js';
import { bindLogContext, logContext } from '../observability/logger.js';

/**
 * Commands that take a sandbox and no --netns (detach, add-iface, del-iface, update-routes): their
 * log lines name the namespace the sandbox's record names, as watch's do, not `null` (a notice of
 * detach says nothing of its namespace itself). A record that cannot be read binds nothing: the
 * command reads it again and says what is wrong.
 */
export function bindRecordNamespace(id: string, directory: string): void {
  try {
    const path = new SandboxStore(id, directory).read<{ namespace?: { path?: unknown } }>()?.namespace?.path;
    if (typeof path === 'string') bindLogContext({ ...logContext(), netns: path });
  } catch {
    // left to the command
  }
}
