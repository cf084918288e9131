import { open } from 'node:fs/promises';

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

const MiB = 1024 * 1024;
/**
 * Read buffers an archive file reuses: about what the zstd decoder lanes (or the decryptor) and
 * the pipeline hold at once. Fresh 1 MiB reads were the largest garbage after the decoded pieces,
 * and a restore onto a slow disk, whose queues are all full at each collection, kept them until a
 * full one (measured on the medium set: peak RSS ~10 MB lower). A consumer that never hands chunks
 * back leaves the pool empty, and every read takes a fresh buffer.
 */
const POOLED_READS = 8;

/** The pool of 1 MiB buffers for one file's reads (readPooled). */
export function readPool(): BufferPool {
  return new BufferPool(MiB, POOLED_READS);
}

/** A file's bytes in buffers taken from `pool` (a short last read is a slice, which the pool does not take back). */
export async function* readPooled(file: string, pool: BufferPool): AsyncGenerator<Buffer> {
  const handle = await open(file, 'r');
  try {
    for (;;) {
      const buffer = pool.take();
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) return;
      yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}
