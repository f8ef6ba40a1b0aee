/**
 * Letting an embedder's event loop run during long operations.
 *
 * Netlink replies are read synchronously (netlink/transport.ts) and most work between them is plain
 * JavaScript, so without these points an operation runs to its end in one event-loop turn: a daemon's
 * timers, I/O and lock waits (which poll with timers) starve, and a loop such as
 * `while (!stop) await collectGarbage()` never lets a concurrent attach's lock wait run at all.
 * Long operations yield at natural boundaries (between namespaces, between endpoints, between slices
 * of a big dump); a single-endpoint attach crosses none of them.
 */

/** How long netlink's reader keeps the event loop before it lets it run (a big dump is sliced). */
export const EVENT_LOOP_SLICE_MS = 10;

/** Resolves in the event loop's next check phase, after timers and I/O that are due have run. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
