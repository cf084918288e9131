import { setImmediate } from 'node:timers/promises';

/**
 * Bytes of CPU-bound work on the main thread (hashing a hole's zeros, scanning for holes) between
 * two turns of the event loop: about 40 ms of SHA-256 here. Longer runs without a turn would stop
 * lock heartbeats, progress lines and signal handlers.
 */
export const BYTES_PER_TURN = 64 * 1024 * 1024;

/** Lets timers, I/O callbacks and signal handlers run before the work goes on. */
export function nextTurn(): Promise<void> {
  return setImmediate();
}

/** Counts a loop's work and gives the event loop a turn after each BYTES_PER_TURN of it. */
export class Turns {
  private sinceTurn = 0;

  /** Counts `bytes` done; a promise to await when a turn is due, else undefined. */
  done(bytes: number): Promise<void> | undefined {
    this.sinceTurn += bytes;
    if (this.sinceTurn < BYTES_PER_TURN) return undefined;
    this.sinceTurn = 0;
    return nextTurn();
  }
}
