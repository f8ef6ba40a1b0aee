/**
 * vcnet-cni's warnings on stderr (the runtime keeps a plugin's stderr in its log; stdout is the CNI
 * result): its own (a stale record removed, an unreadable one set aside) and the library's notices
 * (vcnet:notice: pod routes the guest does not get, what detach could not put back as found), all
 * one line each in one shape, `vcnet-cni ADD of CONTAINER/IFNAME: message`, so a grep of the
 * runtime's log for vcnet-cni, the container or the interface finds them.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { channels, type NoticeEvent } from '../diagnostics.js';
import { escapedControlCharactersInMessage } from '../terminal-text.js';

/** Where a command's warning lines go: stderr, or a test's list. */
export type Warn = (line: string) => void;

/** One line on stderr, its control characters escaped (a message never spans lines of the runtime's log). */
export const warnOnStandardError: Warn = (line) => {
  process.stderr.write(`${escapedControlCharactersInMessage(line)}\n`);
};

/** What a line is about: `ADD of CONTAINER/IFNAME`, `GC of network NAME`. */
export function commandSubject(command: string, about: string): string {
  return `${command} of ${about}`;
}

/** The one shape of every warning line of vcnet-cni. */
export function warningLine(subject: string, message: string): string {
  return `vcnet-cni ${subject}: ${message}`;
}

interface NoticeScope {
  /** The command's writer: a notice is written by the subscription of the command it was published in. */
  readonly owner: object;
  readonly subject: string;
  /** The interface the subject names: a notice about another link (a tap) names that link too. */
  readonly interfaceName: string | undefined;
}

const scope = new AsyncLocalStorage<NoticeScope>();

/** A notice as one warning line: the link it is about when the subject does not name it, its error's message. */
function noticeLine(subject: string, interfaceName: string | undefined, notice: NoticeEvent): string {
  const link = notice.endpoint && notice.endpoint !== interfaceName ? ` (${notice.endpoint})` : '';
  const error = notice.error === undefined ? '' : `: ${(notice.error as Error)?.message ?? String(notice.error)}`;
  return warningLine(`${subject}${link}`, `${notice.message}${error}`);
}

/**
 * Runs one command with every notice the library publishes during it given to `warn` as a line about
 * `subject`. Subscribed only while it runs, and only to notices published from its own work (its
 * async context): another command in the same process (a test importing the plugin) keeps its own.
 * A notice with `handled` was reported by the caller's own handler already, and is skipped.
 */
export async function writingNotices<Result>(
  subject: string,
  interfaceName: string | undefined,
  warn: Warn,
  work: () => Promise<Result>,
): Promise<Result> {
  const owner = {};
  const listener = (message: unknown): void => {
    const current = scope.getStore();
    if (current?.owner !== owner) return;
    const notice = message as NoticeEvent;
    if (notice.handled) return;
    warn(noticeLine(current.subject, current.interfaceName, notice));
  };
  channels.notice.subscribe(listener);
  try {
    return await scope.run({ owner, subject, interfaceName }, work);
  } finally {
    channels.notice.unsubscribe(listener);
  }
}

/**
 * Runs part of a command with its notices about another subject (GC's DEL of one container names
 * that container); outside writingNotices, just runs it.
 */
export function noticesAbout<Result>(
  subject: string,
  interfaceName: string | undefined,
  work: () => Promise<Result>,
): Promise<Result> {
  const current = scope.getStore();
  return current ? scope.run({ ...current, subject, interfaceName }, work) : work();
}
