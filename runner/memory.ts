import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * Keeps peak memory flat while gigabytes stream through. zlib hands out a fresh buffer for
 * every piece of output, and V8 only collects dead buffers when its small JS heap fills up or
 * external memory has grown by tens of MiB, so garbage alone would push RSS far above what the
 * data in flight needs. A young-generation collection every few dozen MiB is cheap (the JS heap
 * here is a few MiB) and frees those buffers, whose lives are short.
 */
let collect: ((options: { type: 'minor' | 'major' }) => void) | undefined;

function collector() {
  if (!collect) {
    v8.setFlagsFromString('--expose-gc');
    collect = vm.runInNewContext('gc') as typeof collect;
  }
  return collect!;
}

const EVERY_BYTES = 32 * 1024 * 1024;

/** Call with the bytes just processed; collects young garbage every EVERY_BYTES. */
export class GarbageGovernor {
  private sinceLast = 0;

  processed(bytes: number): void {
    this.sinceLast += bytes;
    if (this.sinceLast >= EVERY_BYTES) {
      this.sinceLast = 0;
      collector()({ type: 'minor' });
    }
  }
}

/** A full collection, between phases (after writing, before reading the archive back). */
export function collectAllGarbage(): void {
  collector()({ type: 'major' });
}
