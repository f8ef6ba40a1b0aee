/**
 * Whether a VMM's control socket (QEMU's QMP, Cloud Hypervisor's API) shows the VMM gone: the file is
 * not there (ENOENT) or nobody listens on it (ECONNREFUSED). A connection that is taken, or that
 * hangs (a stopped VMM still has its listener's backlog), is no proof: the VMM may run. The
 * connection is closed at once, before QMP's greeting, so another client is never kept waiting.
 */
import { connect } from 'node:net';

/** How long a connect may take before the socket counts as there (a hung VMM). */
const PROBE_TIMEOUT_MS = 5_000;

/** One look at `socketPath`: true when it refuses or is missing. */
function refusesOnce(socketPath: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const probe = connect({ path: socketPath });
    const settle = (gone: boolean) => {
      clearTimeout(timer);
      probe.destroy();
      resolve(gone);
    };
    const timer = setTimeout(() => settle(false), PROBE_TIMEOUT_MS);
    probe.once('connect', () => settle(false));
    probe.once('error', (error: NodeJS.ErrnoException) =>
      settle(error.code === 'ENOENT' || error.code === 'ECONNREFUSED'),
    );
  });
}

/**
 * Whether the VMM behind `socketPath` is gone. With `settle`, a socket that still takes a connection
 * is looked at once more a moment later: a VMM killed closes its connections and its listener in one
 * exit, and a client that saw its connection close may connect before the listener is closed too.
 */
export async function controlSocketGone(socketPath: string, options: { settle?: boolean } = {}): Promise<boolean> {
  if (await refusesOnce(socketPath)) return true;
  if (!options.settle) return false;
  await new Promise((resolve) => setTimeout(resolve, 100));
  return refusesOnce(socketPath);
}
