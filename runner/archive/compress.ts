import { once } from 'node:events';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { Compression } from '../config.js';

/**
 * Compression of the tar stream. Chunks go in through `write` (which waits when enough work
 * is queued: backpressure), compressed bytes come out in order through the synchronous `sink`.
 * zlib work runs on libuv's thread pool, so it overlaps with the tar packing on the main thread.
 */
export interface Compressor {
  write(chunk: Buffer): Promise<void>;
  end(): Promise<void>;
}

export type Sink = (chunk: Buffer) => void;

const MiB = 1024 * 1024;
const deflateRaw = promisify(zlib.deflateRaw);

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
    this.inFlight.push(deflateRaw(chunk, options));
    this.dictionary = this.nextDictionary(chunk);
    while (this.inFlight.length >= this.maxInFlight) this.sink(await this.inFlight.shift()!);
  }

  private nextDictionary(chunk: Buffer): Buffer {
    const window = 32 * 1024;
    if (chunk.length >= window) return chunk.subarray(chunk.length - window);
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
 * One zstd stream on the thread pool. Node 24's multi-threaded streaming zstd (nbWorkers > 1)
 * silently drops data, and its decompressor stops after the first of several frames, so this
 * stays one single-threaded frame; a deep write buffer keeps it busy while tar packing runs.
 */
class StreamingZstd implements Compressor {
  private readonly stream: zlib.ZstdCompress;
  private failure: Error | undefined;

  constructor(level: number, sink: Sink) {
    this.stream = zlib.createZstdCompress({
      chunkSize: MiB,
      writableHighWaterMark: 16 * MiB,
      params: {
        [zlib.constants.ZSTD_c_compressionLevel]: level,
        [zlib.constants.ZSTD_c_checksumFlag]: 1,
      },
    } as zlib.ZstdOptions);
    this.stream.on('data', sink);
    this.stream.on('error', (error) => (this.failure = error));
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.stream.write(chunk)) await Promise.race([once(this.stream, 'drain'), once(this.stream, 'error')]);
    if (this.failure) throw this.failure;
  }

  async end(): Promise<void> {
    // Node compresses a chunk still queued when end() is called with ZSTD_e_end, and then its
    // final flush ends a second, empty frame. Letting the queue empty first keeps one frame.
    await new Promise<void>((resolve, reject) => this.stream.write(Buffer.alloc(0), (error) => (error ? reject(error) : resolve())));
    this.stream.end();
    await once(this.stream, 'end');
    if (this.failure) throw this.failure;
  }
}

class Uncompressed implements Compressor {
  constructor(private readonly sink: Sink) {}
  async write(chunk: Buffer): Promise<void> {
    this.sink(chunk);
  }
  async end(): Promise<void> {}
}

export function createCompressor(compression: Compression, level: number | undefined, sink: Sink): Compressor {
  switch (compression) {
    case 'gzip':
      return new ParallelGzip(level ?? 6, sink, 3);
    case 'zstd':
      return new StreamingZstd(level ?? 3, sink);
    case 'none':
      return new Uncompressed(sink);
  }
}

/** A streaming decompressor for reading an archive back (or a pass-through for plain tar). */
export function createDecompressor(compression: Compression): zlib.Gunzip | zlib.ZstdDecompress | undefined {
  switch (compression) {
    case 'gzip':
      return zlib.createGunzip({ chunkSize: MiB });
    case 'zstd':
      return zlib.createZstdDecompress({ chunkSize: MiB });
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
