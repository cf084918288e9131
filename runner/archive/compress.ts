import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { Compression } from '../config.js';
import { IntegrityError } from '../errors.js';
import { decodeZstdFrames } from './zstd-frames.js';
import { ZstdLane, runFrame } from './zstd-lane.js';

/**
 * Compression of the tar stream. Chunks go in through `write` (which waits when enough work
 * is queued: backpressure), compressed bytes come out in order through the synchronous `sink`.
 * zlib work runs on libuv's thread pool, so it overlaps with the tar packing on the main thread.
 */
export interface Compressor {
  write(chunk: Buffer): Promise<void>;
  end(): Promise<void>;
  /** zstd: [compressed offset, uncompressed offset] where each frame starts, once `end` resolved. */
  readonly frames?: [number, number][];
}

export type Sink = (chunk: Buffer) => void;
/** Told when the compressor no longer needs an input chunk, so its buffer can be reused. */
export type Release = (chunk: Buffer) => void;

const MiB = 1024 * 1024;
const deflateRaw = promisify(zlib.deflateRaw);
const inflateRaw = promisify(zlib.inflateRaw);

/**
 * Every compressed piece is decoded again on the thread pool, in parallel with the rest of the
 * work, and must give back exactly the bytes that went in: the archive is proven to decode to
 * the tar stream before it gets a name, without a second pass over the whole file afterwards.
 */
/** A queued job may fail before its turn to be awaited; its error is reported then, not as an unhandled rejection. */
function settledLater<T>(job: Promise<T>): Promise<T> {
  job.catch(() => undefined);
  return job;
}

function roundTripFailure(codec: string): IntegrityError {
  return new IntegrityError(`${codec} compression did not decode back to its input (memory or library fault); the archive was not kept`, 'ROUND_TRIP');
}

function mustRoundTrip(original: Buffer, decoded: Buffer, codec: string): void {
  if (!decoded.equals(original)) throw roundTripFailure(codec);
}

/**
 * Parallel gzip: every input chunk is deflated on its own thread-pool job, primed with the
 * last 32 KiB of the previous chunk as dictionary and ended with a sync flush, so the pieces
 * concatenate into ONE standard deflate stream inside ONE gzip member (the pigz technique).
 * Any gunzip reads it; the CRC-32 and length trailer cover the whole stream.
 */
class ParallelGzip implements Compressor {
  private readonly inFlight: Promise<Buffer>[] = [];
  private crc = 0;
  private length = 0;
  private dictionary: Buffer | undefined;

  constructor(
    private readonly level: number,
    private readonly sink: Sink,
    private readonly release: Release,
    private readonly maxInFlight: number,
  ) {
    // magic, deflate, no flags, mtime 0, no extra flags, OS = Unix
    sink(Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03]));
  }

  async write(chunk: Buffer): Promise<void> {
    if (chunk.length === 0) return;
    this.crc = zlib.crc32(chunk, this.crc);
    this.length = (this.length + chunk.length) % 2 ** 32;
    const options: zlib.ZlibOptions = { level: this.level, finishFlush: zlib.constants.Z_SYNC_FLUSH };
    if (this.dictionary) options.dictionary = this.dictionary;
    const decodeOptions: zlib.ZlibOptions = { finishFlush: zlib.constants.Z_SYNC_FLUSH, chunkSize: chunk.length + 64 * 1024 };
    if (this.dictionary) decodeOptions.dictionary = this.dictionary;
    this.inFlight.push(
      settledLater(
        deflateRaw(chunk, { ...options, chunkSize: chunk.length + 64 * 1024 }).then(async (out) => {
          mustRoundTrip(chunk, await inflateRaw(out, decodeOptions), 'gzip');
          this.release(chunk);
          return out;
        }),
      ),
    );
    this.dictionary = this.nextDictionary(chunk);
    while (this.inFlight.length >= this.maxInFlight) this.sink(await this.inFlight.shift()!);
  }

  private nextDictionary(chunk: Buffer): Buffer {
    const window = 32 * 1024;
    // A copy: the chunk's buffer is reused once its own job is done.
    if (chunk.length >= window) return Buffer.from(chunk.subarray(chunk.length - window));
    const joined = this.dictionary ? Buffer.concat([this.dictionary, chunk]) : chunk;
    return joined.subarray(Math.max(0, joined.length - window));
  }

  async end(): Promise<void> {
    while (this.inFlight.length > 0) this.sink(await this.inFlight.shift()!);
    const trailer = Buffer.alloc(10);
    // An empty final fixed-Huffman block closes the deflate stream.
    trailer[0] = 0x03;
    trailer[1] = 0x00;
    trailer.writeUInt32LE(this.crc >>> 0, 2);
    trailer.writeUInt32LE(this.length >>> 0, 6);
    this.sink(trailer);
  }
}

/**
 * zstd lanes, each a compressor and a checker with their own contexts: one per core. The third
 * frame in flight waits on a lane, not on a third pair (measured on the medium set: a third pair
 * costs 20–25 MiB of peak RSS; a queued frame, its 2 MiB segment and output).
 */
const ZSTD_LANES = 2;

/**
 * Parallel zstd: the tar stream is cut into 2 MiB segments, each compressed into its own frame
 * (with a content checksum) on one of two long-lived lanes, so both cores compress; frames are
 * written in order. Concatenated frames are standard zstd that `zstd -d` and `tar --zstd` read.
 * Each lane also decodes its frame again and compares it with the segment on the way. (Node 24's
 * own multi-threaded mode, nbWorkers > 1, silently drops data, so it is not used.)
 */
class ParallelZstd implements Compressor {
  private readonly inFlight: Promise<Buffer[]>[] = [];
  /** Uncompressed offset of each frame in flight, in order. */
  private readonly inFlightOffsets: number[] = [];
  private readonly starts: number[] = [];
  private readonly lanes: { compress: ZstdLane; check: ZstdLane; idle: Promise<void> }[] = [];
  private nextLane = 0;
  private inputBytes = 0;
  private outputBytes = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(
    level: number,
    private readonly sink: Sink,
    private readonly release: Release,
    private readonly maxInFlight: number,
    private readonly segmentBytes: number,
  ) {
    for (let i = 0; i < ZSTD_LANES; i++) {
      this.lanes.push({ compress: ZstdLane.compressor(level, segmentBytes * 2), check: ZstdLane.decompressor(segmentBytes * 2), idle: Promise.resolve() });
    }
  }

  async write(chunk: Buffer): Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= this.segmentBytes) await this.compressPending();
  }

  private async compressPending(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const parts = this.pending;
    const segment = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.pendingBytes);
    if (parts.length > 1) parts.forEach(this.release);
    this.pending = [];
    this.pendingBytes = 0;
    this.inFlightOffsets.push(this.inputBytes);
    this.inputBytes += segment.length;
    // A lane runs its frames one after another: a frame queued behind the one it is working on starts the moment that one is done.
    const lane = this.lanes[this.nextLane++ % this.lanes.length]!;
    const job = lane.idle.then(() => compressChecked(lane, segment));
    lane.idle = job.then(
      () => undefined,
      () => undefined,
    );
    this.inFlight.push(
      settledLater(
        job.then((frame) => {
          if (parts.length === 1) this.release(segment);
          return frame;
        }),
      ),
    );
    while (this.inFlight.length >= this.maxInFlight) this.emit(await this.inFlight.shift()!);
  }

  private emit(frame: Buffer[]): void {
    this.starts.push(this.outputBytes, this.inFlightOffsets.shift()!);
    for (const piece of frame) {
      this.outputBytes += piece.length;
      this.sink(piece);
    }
  }

  async end(): Promise<void> {
    try {
      await this.compressPending();
      while (this.inFlight.length > 0) this.emit(await this.inFlight.shift()!);
    } finally {
      for (const lane of this.lanes) {
        lane.compress.close();
        lane.check.close();
      }
    }
  }

  get frames(): [number, number][] {
    const pairs: [number, number][] = [];
    for (let i = 0; i < this.starts.length; i += 2) pairs.push([this.starts[i]!, this.starts[i + 1]!]);
    return pairs;
  }
}

/** One segment into one frame, decoded again on the same lane and compared with the segment as it comes out. */
async function compressChecked(lane: { compress: ZstdLane; check: ZstdLane }, segment: Buffer): Promise<Buffer[]> {
  const frame: Buffer[] = [];
  await runFrame(lane.compress, [segment], (piece) => frame.push(piece));
  let at = 0;
  let same = true;
  await runFrame(lane.check, frame, (piece) => {
    same &&= at + piece.length <= segment.length && piece.equals(segment.subarray(at, at + piece.length));
    at += piece.length;
  });
  if (!same || at !== segment.length) throw roundTripFailure('zstd');
  return frame;
}

class Uncompressed implements Compressor {
  constructor(
    private readonly sink: Sink,
    private readonly release: Release,
  ) {}
  async write(chunk: Buffer): Promise<void> {
    this.sink(chunk);
    this.release(chunk);
  }
  async end(): Promise<void> {}
}

/** Input chunk size that suits each codec: whole zstd segments, pigz-sized gzip blocks. */
export const CHUNK_BYTES: Record<Compression, number> = { gzip: MiB, zstd: 2 * MiB, none: MiB };
/**
 * Fresh buffer bytes a codec leaves behind per input byte, beyond the input itself (the
 * GarbageGovernor's rate is one more): each gzip job allocates an output buffer and a decode
 * buffer as large as its chunk (measured: counting only the input let peak RSS of a gzip backup
 * reach 160 MiB); the zstd lanes hand out pieces that die young.
 */
export const GARBAGE_PER_BYTE: Record<Compression, number> = { gzip: 2, zstd: 0, none: 0 };
/**
 * Whether a codec's buffers live across the writer's awaits, long enough to be promoted past young
 * collections, so that only the writer's full collections by bytes free them: gzip jobs hold
 * their input and output until their turn (measured without them: a gzip backup of the medium
 * bench set peaked at 158 MiB instead of 134). The zstd lanes' pieces die young; without the full
 * collections a zstd backup took 0.5–0.9 CPU-s less per GiB, with a peak RSS 2–5 MiB lower.
 */
export const BUFFERS_OUTLIVE_YOUNG: Record<Compression, boolean> = { gzip: true, zstd: false, none: true };
/** Compression jobs in flight: one per core plus one, so both cores stay busy while the main thread reads and hashes. */
const IN_FLIGHT: Record<Compression, number> = { gzip: 3, zstd: 3, none: 1 };

export function createCompressor(compression: Compression, level: number | undefined, sink: Sink, release: Release = () => undefined): Compressor {
  switch (compression) {
    case 'gzip':
      return new ParallelGzip(level ?? 6, sink, release, IN_FLIGHT.gzip);
    case 'zstd':
      return new ParallelZstd(level ?? 3, sink, release, IN_FLIGHT.zstd, CHUNK_BYTES.zstd);
    case 'none':
      return new Uncompressed(sink, release);
  }
}

/**
 * The decoder for reading an archive back: Node's gunzip (it follows concatenated members),
 * the frame-aware zstd decoder (Node's own stops after the first frame), or none for plain tar.
 * The zstd decoder calls `consumed` with each input chunk once it reads that chunk no more; the
 * others never do.
 */
export function createDecompressor(
  compression: Compression,
  consumed?: (chunk: Buffer) => void,
): zlib.Gunzip | ((source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer>) | undefined {
  switch (compression) {
    case 'gzip':
      // Pieces of 256 KiB, not 1 MiB: a restore holds pieces while their writes are in flight,
      // and the garbage between collections is smaller (measured: peak RSS 140 → 117 MiB, as fast).
      return zlib.createGunzip({ chunkSize: 256 * 1024 });
    case 'zstd':
      return (source) => decodeZstdFrames(source, consumed);
    case 'none':
      return undefined;
  }
}

/** Sniffs the compression from an archive's first bytes (for archives made by other tools). */
export function sniffCompression(head: Buffer): Compression | undefined {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'none';
  return undefined;
}
