/**
 * Watchers in one process start their reads (and the onChange calls after them) one per event-loop
 * turn. Watchers with the same debounce have their timers in one of Node's timer lists, whose due
 * timers run back to back: several change sets that do not wait on I/O held the loop together
 * (8 watches whose pods changed at once: 3 to 6 change sets in one 400-960 ms stall). Real timers.
 */
import { expect, it } from 'vitest';
import type { InterfaceSource } from '../../../src/network/namespace-watcher.js';
import { NamespaceWatcher } from '../../../src/network/namespace-watcher.js';
import type { NetworkInfo } from '../../../src/network/network-info.js';
import { info, link } from './fixtures.js';

/** A source whose read answers at once (as a synchronous netlink dump does). */
class Source implements InterfaceSource {
  interfaces: NetworkInfo[] = [];
  async read(): Promise<NetworkInfo[]> {
    return structuredClone(this.interfaces);
  }
  close(): void {}
}

const busy = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};

it('lets a timer due meanwhile run between two watchers changed at once', async () => {
  const order: string[] = [];
  const sources = [new Source(), new Source(), new Source()];
  const watchers = await Promise.all(
    sources.map((source, n) =>
      NamespaceWatcher.over(source, {
        debounceMs: 20,
        onChange: () => {
          order.push(`change ${n}`);
          busy(15);
        },
      }),
    ),
  );
  // A daemon's periodic timer (a 1 ms one measures event-loop delay): due while each change set runs.
  const ticking = setInterval(() => {
    if (order.at(-1) !== 'tick') order.push('tick');
  }, 1);
  try {
    for (const source of sources) source.interfaces = [info({ link: link({ index: 2, name: 'eth9' }) })];
    for (const watcher of watchers) watcher.resync();
    const deadline = Date.now() + 5_000;
    while (order.filter((entry) => entry.startsWith('change')).length < 3 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 5));
    // Each watcher's change set once. Their order is not promised: a debounce timer that fell due a
    // millisecond later (a loaded machine) runs in a later timers phase, and takes its turn at once.
    const changes = order.filter((entry) => entry !== 'tick');
    expect([...changes].sort()).toEqual(['change 0', 'change 1', 'change 2']);
    // Between one change set and the next, whichever they are, the loop ran the timer.
    const between = (n: number) =>
      order.slice(order.indexOf(changes[n] as string) + 1, order.indexOf(changes[n + 1] as string));
    expect(between(0)).toContain('tick');
    expect(between(1)).toContain('tick');
  } finally {
    clearInterval(ticking);
    for (const watcher of watchers) await watcher.stop();
  }
});
