/**
 * A sandbox watch for a test: watchSandbox debouncing 50 ms, with what it applied and the notices
 * published meanwhile collected in order; both stopped after the test by `cleanup`, before the
 * namespaces they watch go.
 */
import { channels, type NoticeEvent } from '../../src/diagnostics.js';
import {
  type SandboxWatch,
  type SandboxWatchOptions,
  type WatchSummary,
  watchSandbox,
} from '../../src/sandbox/sandbox-watch.js';
import type { TestCleanup } from './cleanup.js';

/** The notices published on vcnet:notice from now until the test ends (of `operation` only, when given). */
export function collectNotices(cleanup: TestCleanup, operation?: string): NoticeEvent[] {
  const notices: NoticeEvent[] = [];
  const onNotice = (message: unknown) => {
    const notice = message as NoticeEvent;
    if (operation === undefined || notice.operation === operation) notices.push(notice);
  };
  channels.notice.subscribe(onNotice);
  cleanup.defer(() => channels.notice.unsubscribe(onNotice));
  return notices;
}

/** watchSandbox(`sandbox`) with `options` (a 50 ms debounce unless they say), its summaries in `applied`. */
export async function watchForTest(
  cleanup: TestCleanup,
  sandbox: string,
  options: SandboxWatchOptions & { stateDirectory: string },
): Promise<{ watching: SandboxWatch; applied: WatchSummary[] }> {
  const applied: WatchSummary[] = [];
  const watching = await watchSandbox(sandbox, {
    debounceMs: 50,
    onApplied: (summary) => applied.push(summary),
    ...options,
  });
  cleanup.defer(() => watching.stop());
  return { watching, applied };
}
