import fs from 'node:fs';

/**
 * Positional file writes on libuv's thread pool, so that the kernel's part of writing a large
 * file overlaps with the main thread's decoding, hashing and parsing. At most about `limit` bytes
 * are in flight: `backpressure()` lets the producer wait until half of them are written.
 */
export class WriteBehind {
  private queued = 0;
  private wake: (() => void) | undefined;
  private waiting: Promise<void> | undefined;

  constructor(private readonly limit: number) {}

  /** Writes all of `data` at `position`. The caller must leave `data` unchanged until this settles. */
  write(fd: number, data: Uint8Array, position: number): Promise<void> {
    this.queued += data.length;
    return new Promise<void>((resolve, reject) => {
      const from = (offset: number): void => {
        fs.write(fd, data, offset, data.length - offset, position + offset, (error, written) => {
          if (!error && written === 0) error = Object.assign(new Error('write wrote nothing'), { code: 'EIO' });
          if (error || offset + written >= data.length) {
            this.settled(data.length);
            if (error) reject(error);
            else resolve();
            return;
          }
          from(offset + written);
        });
      };
      from(0);
    });
  }

  /** A promise while more than the limit is in flight: it resolves once half of that is written. */
  backpressure(): Promise<void> | undefined {
    if (this.queued <= this.limit) return undefined;
    this.waiting ??= new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    return this.waiting;
  }

  private settled(bytes: number): void {
    this.queued -= bytes;
    if (this.wake && this.queued <= this.limit / 2) {
      const wake = this.wake;
      this.wake = undefined;
      this.waiting = undefined;
      wake();
    }
  }
}
