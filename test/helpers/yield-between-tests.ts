/**
 * Lets the test worker's event loop reach I/O after every test. Many tests run the CLI or `ip`
 * synchronously; awaiting between tests only runs microtasks, so a file of such tests can keep the
 * worker from reading vitest's own RPC replies for over a minute, and vitest then fails the whole
 * run with `Timeout calling "onTaskUpdate"` although every test passed. setImmediate runs after the
 * poll phase, so one turn of it is enough.
 */
import { afterEach } from 'vitest';

afterEach(() => new Promise<void>((resolve) => setImmediate(resolve)));
