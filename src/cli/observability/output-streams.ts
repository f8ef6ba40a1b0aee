/**
 * Both programs (vcnet, vcnet-cni) answer on stdout; a write there can fail (a full disk, /dev/full,
 * a reader that has gone). Node then throws from write() (a file) or emits 'error' later (a pipe),
 * which, unhandled, ends the program with a stack. Here either is a recorded fact instead.
 */

/** The error of the first write to stdout that failed: from then on the program's output is lost. */
let stdoutFailure: NodeJS.ErrnoException | undefined;

/** What no program's stdout can take: exit status 6 of both programs (docs/cli.md, docs/cni.md). */
export const OUTPUT_LOST_EXIT_CODE = 6;

/**
 * Makes a failed write to stdout or stderr (a full disk, a reader that has gone) a recorded fact
 * instead of an exception: the command still finishes what it changes (an attach half done is worse
 * than a lost line) and keeps its own exit status. `onStdoutLost` runs once, at the first failed
 * write to stdout; later writes there are dropped. A file (/dev/full) fails inside write(); a pipe
 * fails later, through 'error'.
 */
export function guardOutputStreams(onStdoutLost: (error: NodeJS.ErrnoException) => void): void {
  const stdoutFailed = (error: NodeJS.ErrnoException) => {
    if (stdoutFailure !== undefined) return;
    stdoutFailure = error;
    if (readerMayLeaveEarly && error.code === 'EPIPE') return;
    onStdoutLost(error);
  };
  const stderrFailed = () => undefined;
  for (const [stream, failed, isLost] of [
    [process.stdout, stdoutFailed, () => stdoutFailure !== undefined],
    [process.stderr, stderrFailed, () => false],
  ] as const) {
    const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
    stream.write = ((...args: unknown[]) => {
      if (isLost()) return true;
      try {
        return write(...args);
      } catch (error) {
        failed(error as NodeJS.ErrnoException);
        return true;
      }
    }) as typeof stream.write;
    stream.on('error', failed);
  }
}

/** Whether what goes to stdout is help or a version, which a reader may stop reading part-way. */
let readerMayLeaveEarly = false;

/**
 * Writes help or a version to stdout. People read those, often through `| head`: a reader that has
 * gone early (EPIPE) is then no failure (no note, exit status unchanged); a full disk still is.
 */
export function writeHelpToStdout(text: string): void {
  readerMayLeaveEarly = true;
  process.stdout.write(text);
}

/** The first failed write to stdout, if any (guardOutputStreams records it). */
export function stdoutLost(): NodeJS.ErrnoException | undefined {
  return stdoutFailure;
}
