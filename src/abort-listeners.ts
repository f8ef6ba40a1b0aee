/**
 * One 'abort' listener per caller's signal, shared by every wait of this copy of vcnet on it. A
 * daemon passes its one shutdown signal to each call: a listener per waiting call (a lock wait, a
 * scan, an agent or QMP request) would pass Node's limit of ten with the eleventh and print
 * MaxListenersExceededWarning. The signal's limit is the caller's, never raised here.
 */

interface SignalWaiters {
  callbacks: Set<() => void>;
  dispatch: () => void;
}

const waitersOf = new WeakMap<AbortSignal, SignalWaiters>();

/**
 * Runs `callback` once when `signal` aborts (not when it had already: check that first), until the
 * returned function is called. Callbacks run in the order they were added.
 */
export function onAbort(signal: AbortSignal, callback: () => void): () => void {
  let waiters = waitersOf.get(signal);
  if (!waiters) {
    const callbacks = new Set<() => void>();
    const dispatch = () => {
      waitersOf.delete(signal);
      for (const waiting of callbacks) {
        try {
          waiting();
        } catch (error) {
          // As an EventTarget reports a listener's error: the other waiters still run.
          queueMicrotask(() => {
            throw error;
          });
        }
      }
      callbacks.clear();
    };
    waiters = { callbacks, dispatch };
    waitersOf.set(signal, waiters);
    signal.addEventListener('abort', dispatch, { once: true });
  }
  // A wrapper of its own: one callback added twice is two waits, each removed by its own function.
  const entry = () => callback();
  const shared = waiters;
  shared.callbacks.add(entry);
  return () => {
    if (!shared.callbacks.delete(entry) || shared.callbacks.size > 0) return;
    if (waitersOf.get(signal) === shared) {
      waitersOf.delete(signal);
      signal.removeEventListener('abort', shared.dispatch);
    }
  };
}
