import type { Logger } from './log.js';

/**
 * Cleanup actions registered the moment something needs cleaning (a partial file, the lock),
 * removed again once the step that created it has succeeded. All actions are synchronous so
 * that a signal handler can run them before the process exits.
 */
export class Cleanup {
  private readonly actions = new Map<number, { label: string; run: () => void }>();
  private readonly asyncActions = new Map<number, { label: string; run: () => Promise<void> }>();
  private next = 0;

  /**
   * Registers an action that needs the network (aborting a multipart upload, removing a
   * bucket lock): a signal handler runs these after the synchronous ones and waits for them,
   * within a budget. Returns the function that unregisters it.
   */
  addAsync(label: string, run: () => Promise<void>): () => void {
    const id = this.next++;
    this.asyncActions.set(id, { label, run });
    return () => {
      this.asyncActions.delete(id);
    };
  }

  get asyncSize(): number {
    return this.asyncActions.size;
  }

  /** Runs every async action at once and waits at most `budgetMs` for them; returns the failures (a timeout is one). */
  async runAllAsync(budgetMs: number): Promise<{ label: string; error: unknown }[]> {
    const failures: { label: string; error: unknown }[] = [];
    const actions = [...this.asyncActions.values()].reverse();
    this.asyncActions.clear();
    const all = Promise.all(
      actions.map(async (action) => {
        try {
          await action.run();
        } catch (error) {
          failures.push({ label: action.label, error });
        }
      }),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), budgetMs)));
    const outcome = await Promise.race([all.then(() => 'done' as const), timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') failures.push({ label: `finish within ${budgetMs / 1000}s: ${actions.map((a) => a.label).join(', ')}`, error: new Error('timed out') });
    return failures;
  }

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
