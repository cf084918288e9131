import type { TransformOptions } from 'node:stream';
import zlib from 'node:zlib';

/** Size of a lane's output pieces: a smaller one means a thread-pool round trip per piece. */
const CHUNK_BYTES = 512 * 1024;

/**
 * One long-lived zstd compressor or decompressor that takes frame after frame. A zstd context
 * made per 2 MiB frame (what zlib's one-shot calls do) costs more than the frame: each one
 * allocates and zeroes megabytes of tables and window, fresh pages every time (measured: 1.1
 * million page faults, 3 s of system time per GiB backed up). A lane keeps its context. Output is
 * handed out as it comes; once `maxQueued` bytes wait untaken, the lane pauses, so memory stays
 * bounded whatever a frame decodes to.
 */
export class ZstdLane {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private frameEnded = true;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  /**
   * An event came while nobody waited (the reader was busy with output it had taken): the next
   * `changed` resolves at once, or a frame whose last output and end came meanwhile would wait
   * for an event that never comes.
   */
  private unseen = false;
  /** A frame is on this lane and not all of its output has been taken yet. */
  busy = false;

  private constructor(
    private readonly stream: zlib.ZstdCompress | zlib.ZstdDecompress,
    private readonly maxQueued: number,
  ) {
    stream.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      this.queued += chunk.length;
      if (this.queued >= this.maxQueued) stream.pause();
      this.notify();
    });
    stream.on('error', (error: Error) => {
      this.failure = error;
      this.notify();
    });
    stream.on('drain', () => this.notify());
  }

  /** Frames with a content checksum, as `zstd` writes them. */
  static compressor(level: number, maxQueued: number): ZstdLane {
    const params = { [zlib.constants.ZSTD_c_compressionLevel]: level, [zlib.constants.ZSTD_c_checksumFlag]: 1 };
    return new ZstdLane(zlib.createZstdCompress({ params, chunkSize: CHUNK_BYTES }), maxQueued);
  }

  /** `maxInput`: compressed bytes it takes before `writable` turns false (Node's default is 64 KiB). */
  static decompressor(maxQueued: number, maxInput?: number): ZstdLane {
    // zlib hands stream options on to its Transform; its types only list the codec's.
    const options: zlib.ZstdOptions & TransformOptions = { chunkSize: CHUNK_BYTES, writableHighWaterMark: maxInput };
    return new ZstdLane(zlib.createZstdDecompress(options), maxQueued);
  }

  /** A new frame starts: its bytes follow through `write`, its end through `endFrame`. */
  begin(): void {
    this.busy = true;
    this.frameEnded = false;
  }

  /**
   * Returns false when the caller should wait for `writable` before writing more. `consumed` runs
   * once the codec holds no reference to `data` any more (its bytes are in the codec's own buffers).
   */
  write(data: Buffer, consumed?: () => void): boolean {
    return this.stream.write(data, consumed);
  }

  get writable(): boolean {
    return !this.stream.writableNeedDrain;
  }

  /** The frame's input is complete (a compressor closes the frame here). */
  endFrame(): void {
    this.stream.flush(zlib.constants.ZSTD_e_end, () => {
      this.frameEnded = true;
      this.notify();
    });
  }

  /** The frame is over and all of its output has been taken. */
  get drained(): boolean {
    return this.frameEnded && this.queue.length === 0 && this.stream.readableLength === 0;
  }

  /** The output so far; a paused lane goes on. */
  take(): Buffer[] {
    this.throwFailure();
    const output = this.queue.splice(0);
    this.queued = 0;
    if (this.stream.isPaused()) this.stream.resume();
    return output;
  }

  /** Resolves at the lane's next event: output, room to write, the frame's end or an error. */
  changed(): Promise<void> {
    this.throwFailure();
    if (this.unseen) {
      this.unseen = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.wake = resolve));
  }

  /** The frame's output was all taken: the lane is free for the next frame. */
  release(): void {
    this.busy = false;
  }

  close(): void {
    this.stream.destroy();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    if (wake) wake();
    else this.unseen = true;
  }

  private throwFailure(): void {
    if (this.failure) throw this.failure;
  }
}

/** Runs one whole frame through a free lane, handing its output to `onOutput` in order. */
export async function runFrame(lane: ZstdLane, input: readonly Buffer[], onOutput: (chunk: Buffer) => void): Promise<void> {
  lane.begin();
  for (const piece of input) lane.write(piece);
  lane.endFrame();
  for (;;) {
    for (const chunk of lane.take()) onOutput(chunk);
    if (lane.drained) break;
    await lane.changed();
  }
  lane.release();
}
