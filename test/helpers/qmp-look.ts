/**
 * A test's look at a running QEMU through QMP while vcnet uses QMP too. QEMU serves one QMP client
 * at a time: a second connection gets no greeting until the first closes, so a test's look waits
 * while add-iface plugs, and add-iface's connect waits while the test looks. Each look therefore
 * connects, asks and closes; a handshake that finds QMP held is tried again until the caller's
 * deadline rather than failing the test after a short connect bound (a loaded machine stretches
 * every session).
 */
import { QmpConnectionError } from '../../src/hypervisor/errors.js';
import { QmpClient } from '../../src/hypervisor/qmp.js';

/** One session: connect (waiting up to `handshakeTimeoutMs` for the greeting), ask, close. */
export async function lookThroughQmp<T>(
  qmpPath: string,
  ask: (qmp: QmpClient) => Promise<T>,
  handshakeTimeoutMs = 30_000,
): Promise<T> {
  const qmp = await QmpClient.connect(qmpPath, { timeoutMs: handshakeTimeoutMs });
  try {
    return await ask(qmp);
  } finally {
    await qmp.close();
  }
}

/** QEMU's `info network` (its netdevs and the NIC each feeds), in one session. */
export function qemuInfoNetwork(qmpPath: string, handshakeTimeoutMs?: number): Promise<string> {
  return lookThroughQmp(
    qmpPath,
    (qmp) => qmp.execute<string>('human-monitor-command', { 'command-line': 'info network' }),
    handshakeTimeoutMs,
  );
}

/**
 * Looks at `info network` until `condition` holds, a session at a time, for up to `timeoutMs`
 * (default 60 s). A handshake that times out (QMP held by vcnet past `handshakeTimeoutMs`, default
 * 30 s) is tried again; the failure names `what`, the last `info network` and the last QMP error.
 */
export async function untilInfoNetwork(
  qmpPath: string,
  condition: (network: string) => boolean,
  what: string,
  { timeoutMs = 60_000, handshakeTimeoutMs = 30_000 }: { timeoutMs?: number; handshakeTimeoutMs?: number } = {},
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let network = '';
  let lastError: Error | undefined;
  for (;;) {
    try {
      network = await qemuInfoNetwork(qmpPath, handshakeTimeoutMs);
      if (condition(network)) return network;
    } catch (error) {
      if (!(error instanceof QmpConnectionError)) throw error;
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}; last info network: ${JSON.stringify(network)}${
          lastError ? `; last QMP error: ${lastError.message}` : ''
        }`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
