import type { Logger } from './log.js';

/**
 * Cleanup actions registered the moment something needs cleaning (a partial file, the lock),
 * removed again once the step that created it has succeeded. All actions are synchronous so
 * that a signal handler can run them before the process exits.
 */
export class Cleanup {
  private readonly actions = new Map<number, { label: string; run: () => void }>();
  private next = 0;

  /** Registers an action; returns the function that unregisters it. */
  add(label: string, run: () => void): () => void {
    const id = this.next++;
    this.actions.set(id, { label, run });
    return () => {
      this.actions.delete(id);
    };
  }

  /** Runs every registered action, newest first; returns the failures instead of throwing. */
  runAll(): { label: string; error: unknown }[] {
    const failures: { label: string; error: unknown }[] = [];
    for (const [id, action] of [...this.actions.entries()].reverse()) {
      this.actions.delete(id);
      try {
        action.run();
      } catch (error) {
        failures.push({ label: action.label, error });
      }
    }
    return failures;
  }

  get size(): number {
    return this.actions.size;
  }
}

/** What every command gets besides its config: where to log, what to clean up, when to stop. */
export interface RunContext {
  log: Logger;
  cleanup: Cleanup;
  /** Aborted on SIGTERM/SIGINT. */
  signal: AbortSignal;
  now(): Date;
  version: string;
}
