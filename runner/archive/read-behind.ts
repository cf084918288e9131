import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';

const read = promisify(fs.read);
const fstat = promisify(fs.fstat);

/** Bytes read back at a time: a read waits until this much more is written (or the end). */
const STEP_BYTES = 1024 * 1024;

/** The stored file as read back: its SHA-256 and length. */
export interface StoredCopy {
  sha256: string;
  bytes: number;
}

/**
 * Reads a file back from its descriptor while it is still being appended to, a step behind the
 * writer, and hashes what is stored. Reading back after the last write would cost a second pass
 * at the end of every backup, on one core (measured: 0.4 s per 440 MB); a step behind, the reads
 * come from the thread pool while the compressor works. Each read covers only bytes whose write
 * has returned, and the end reads on to end of file, so bytes changed or added behind the
 * writer's back give a different checksum or length.
 */
export class ReadBehind {
  private writtenUpTo = 0;
  private readAt = 0;
  private ended = false;
  private stopped = false;
  private wake: (() => void) | undefined;
  private readonly hash = createHash('sha256');
  private readonly buffer = Buffer.allocUnsafe(STEP_BYTES);
  private readonly result: Promise<StoredCopy>;

  constructor(private readonly fd: number) {
    this.result = this.run();
    // Its failure is reported by `end`; a run that stops before then must not crash the process.
    this.result.catch(() => undefined);
  }

  /** The writer's bytes up to `bytes` are in the file. */
  written(bytes: number): void {
    this.writtenUpTo = bytes;
    if (this.wake && bytes - this.readAt >= STEP_BYTES) this.notify();
  }

  /** The writer wrote `bytes` in all: resolves with what the file holds once it is read to its end. */
  async end(bytes: number): Promise<StoredCopy> {
    this.writtenUpTo = bytes;
    this.ended = true;
    this.notify();
    return this.result;
  }

  /** Stops reading; resolves once no read is in flight, so the descriptor may be closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.notify();
    await this.result.catch(() => undefined);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async run(): Promise<StoredCopy> {
    for (;;) {
      if (this.stopped) throw new Error('reading the archive back was stopped');
      const ready = this.writtenUpTo - this.readAt;
      if (!this.ended && ready < STEP_BYTES) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      if (this.ended && this.readAt === this.writtenUpTo) return this.finish();
      // The file ended before the bytes written: it was truncated behind the writer's back.
      if ((await this.readNext(Math.min(STEP_BYTES, ready))) === 0) return this.copy(this.readAt);
    }
  }

  /**
   * Past the bytes written: whatever else the file holds counts too. Its size first: a file cut
   * short after its bytes were read back, or with a huge (sparse) tail, which is not read.
   */
  private async finish(): Promise<StoredCopy> {
    const { size } = await fstat(this.fd);
    if (size < this.readAt || size > this.readAt + STEP_BYTES) return this.copy(size);
    while ((await this.readNext(STEP_BYTES)) > 0);
    return this.copy(this.readAt);
  }

  /** Reads and hashes up to `length` bytes at the read position; 0 at end of file. */
  private async readNext(length: number): Promise<number> {
    const { bytesRead } = await read(this.fd, this.buffer, 0, length, this.readAt);
    this.hash.update(this.buffer.subarray(0, bytesRead));
    this.readAt += bytesRead;
    return bytesRead;
  }

  private copy(bytes: number): StoredCopy {
    return { sha256: this.hash.digest('hex'), bytes };
  }
}
