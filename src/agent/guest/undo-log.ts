/**
 * All-or-nothing application of a request: each change registers how to take it back, and a failure
 * part-way takes back, newest first, everything done so far. A failure before the first change (a
 * missing link found while looking) passes through untouched, keeping its own status.
 */
import { NetworkApplyError } from '../errors.js';

export class UndoLog {
  private readonly undos: { description: string; undo: () => Promise<void> }[] = [];
  /** The step running now, for the error message. */
  current = 'preparing';
  changed = false;

  /** Runs one change; `undo` is registered only once it has succeeded. */
  async step<T>(description: string, action: () => Promise<T>, undo?: () => Promise<void>): Promise<T> {
    this.current = description;
    this.changed = true;
    const result = await action();
    if (undo) this.undos.push({ description, undo });
    return result;
  }

  /** Registers a take-back that is not tied to one step (restoring a snapshot). */
  onUndo(description: string, undo: () => Promise<void>): void {
    this.undos.push({ description, undo });
  }

  /** Takes back everything, newest first; returns what could not be taken back, and the errors why. */
  async rollback(): Promise<{ failures: string[]; errors: unknown[] }> {
    const failures: string[] = [];
    const errors: unknown[] = [];
    for (const { description, undo } of this.undos.reverse()) {
      try {
        await undo();
      } catch (error) {
        failures.push(`undo "${description}": ${error instanceof Error ? error.message : String(error)}`);
        errors.push(error);
      }
    }
    return { failures, errors };
  }
}

export async function allOrNothing<T>(operation: string, body: (log: UndoLog) => Promise<T>): Promise<T> {
  const log = new UndoLog();
  try {
    return await body(log);
  } catch (error) {
    if (!log.changed) throw error;
    const { failures, errors } = await log.rollback();
    throw new NetworkApplyError(operation, log.current, error, failures, errors);
  }
}
