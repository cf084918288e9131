/**
 * Reuses the large buffers that carry the tar stream. Fresh memory is expensive here: every
 * new 1–8 MiB buffer costs page faults on first touch and garbage collection later, which
 * measured more than the hashing itself. Buffers come back once the compressor is done.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }

  /** Returns a buffer taken from this pool; slices and foreign buffers are ignored. */
  give(buffer: Buffer): void {
    if (buffer.length === this.size && buffer.byteOffset === 0 && buffer.buffer.byteLength === this.size && this.free.length < this.keep) {
      this.free.push(buffer);
    }
  }
}
