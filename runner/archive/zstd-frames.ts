import { once } from 'node:events';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { IntegrityError } from '../errors.js';

/**
 * Reading zstd data that may hold several frames. Node 24's zstd decompressor stops silently
 * at the end of the first frame, and pvc-backup writes one frame per 4 MiB segment (so that
 * both cores compress), so frames are found here by walking the frame and block headers
 * (RFC 8878) — cheap: one 3-byte header per block of up to 128 KiB — and each frame is
 * decoded on its own: small frames as parallel one-shot jobs on the thread pool, large or
 * foreign frames with a streaming decompressor so memory stays bounded.
 */

const ZSTD_MAGIC = 0xfd2fb528;
const MiB = 1024 * 1024;
/** Frames up to this compressed size with a declared content size up to ONE_SHOT_CONTENT are decoded in one call. */
const ONE_SHOT_COMPRESSED = 16 * MiB;
const ONE_SHOT_CONTENT = 32 * MiB;
const IN_FLIGHT = 2;

export interface FrameInfo {
  skippable: boolean;
  /** Decompressed size declared by the frame header; undefined when absent or not parsed yet. */
  contentSize?: number;
  headerParsed: boolean;
}

export interface FramePiece {
  data: Buffer;
  /** This piece starts a new frame. */
  first: boolean;
  /** This piece ends its frame. */
  last: boolean;
  frame: FrameInfo;
}

type State = 'magic' | 'skipSize' | 'descriptor' | 'header' | 'blockHeader' | 'body' | 'checksum';

/** Cuts a zstd byte stream into frames without decoding it. */
export class ZstdFrameSplitter {
  private state: State = 'magic';
  private readonly field = Buffer.alloc(16);
  private fieldLength = 0;
  private need = 4;
  /** Bytes left in a block body, skippable frame body or checksum. */
  private remaining = 0;
  private lastBlock = false;
  private checksum = false;
  private singleSegment = false;
  private contentSizeBytes = 0;
  private frame: FrameInfo | undefined;
  private offset = 0;

  push(chunk: Buffer): FramePiece[] {
    const pieces: FramePiece[] = [];
    let start = 0;
    let first = false;
    let i = 0;
    const inBody = () => this.state === 'body' || this.state === 'checksum';
    // A zero-length block or checksum-less frame end is processed even with no byte left.
    while (i < chunk.length || (inBody() && this.remaining === 0)) {
      if (inBody()) {
        const n = Math.min(this.remaining, chunk.length - i);
        i += n;
        this.remaining -= n;
        if (this.remaining > 0) break;
        if (this.state === 'body' && !this.frame!.skippable && !this.lastBlock) {
          this.expect('blockHeader', 3);
        } else if (this.state === 'body' && !this.frame!.skippable && this.checksum) {
          this.state = 'checksum';
          this.remaining = 4;
        } else {
          pieces.push({ data: chunk.subarray(start, i), first, last: true, frame: this.frame! });
          start = i;
          first = false;
          this.frame = undefined;
          this.expect('magic', 4);
        }
        continue;
      }
      // Fixed-size header fields, gathered across chunk boundaries.
      const n = Math.min(this.need - this.fieldLength, chunk.length - i);
      chunk.copy(this.field, this.fieldLength, i, i + n);
      this.fieldLength += n;
      i += n;
      if (this.fieldLength < this.need) break;
      if (this.state === 'magic') {
        this.frame = this.startFrame();
        if (n === 4) {
          start = i - 4;
        } else {
          // The magic number began in the previous chunk: hand its bytes over on their own.
          pieces.push({ data: Buffer.from(this.field.subarray(0, 4)), first: true, last: false, frame: this.frame });
          start = i;
        }
        first = n === 4;
      } else {
        this.fieldDone();
      }
    }
    if (start < chunk.length && this.frame) pieces.push({ data: chunk.subarray(start), first, last: false, frame: this.frame });
    this.offset += chunk.length;
    return pieces;
  }

  /** Throws when the data stopped inside a frame. */
  end(): void {
    if (this.state !== 'magic' || this.fieldLength !== 0) {
      throw new IntegrityError('archive is truncated: the zstd data ends inside a frame', 'TRUNCATED');
    }
  }

  private expect(state: State, need: number): void {
    this.state = state;
    this.need = need;
    this.fieldLength = 0;
  }

  private startFrame(): FrameInfo {
    const magic = this.field.readUInt32LE(0);
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      this.expect('skipSize', 4);
      return { skippable: true, headerParsed: true };
    }
    if (magic !== ZSTD_MAGIC) {
      throw new IntegrityError(`archive is corrupt: no zstd frame at byte ${this.offset} of the compressed data`, 'CORRUPT');
    }
    this.expect('descriptor', 1);
    return { skippable: false, headerParsed: false };
  }

  private fieldDone(): void {
    switch (this.state) {
      case 'skipSize':
        this.remaining = this.field.readUInt32LE(0);
        this.state = 'body';
        return;
      case 'descriptor': {
        const fhd = this.field[0]!;
        if (fhd & 0x08) throw new IntegrityError('archive is corrupt: reserved bit set in a zstd frame header', 'CORRUPT');
        const fcsFlag = fhd >> 6;
        this.singleSegment = (fhd & 0x20) !== 0;
        this.checksum = (fhd & 0x04) !== 0;
        const dictionaryBytes = [0, 1, 2, 4][fhd & 0x03]!;
        this.contentSizeBytes = fcsFlag === 0 ? (this.singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
        const rest = (this.singleSegment ? 0 : 1) + dictionaryBytes + this.contentSizeBytes;
        if (rest === 0) {
          this.frame!.headerParsed = true;
          this.expect('blockHeader', 3);
        } else {
          this.expect('header', rest);
        }
        return;
      }
      case 'header': {
        const end = this.need;
        if (this.contentSizeBytes > 0) {
          const at = end - this.contentSizeBytes;
          let size: number;
          if (this.contentSizeBytes === 1) size = this.field[at]!;
          else if (this.contentSizeBytes === 2) size = this.field.readUInt16LE(at) + 256;
          else if (this.contentSizeBytes === 4) size = this.field.readUInt32LE(at);
          else size = Number(this.field.readBigUInt64LE(at));
          this.frame!.contentSize = size;
        }
        this.frame!.headerParsed = true;
        this.expect('blockHeader', 3);
        return;
      }
      case 'blockHeader': {
        const header = this.field[0]! | (this.field[1]! << 8) | (this.field[2]! << 16);
        this.lastBlock = (header & 1) === 1;
        const type = (header >> 1) & 3;
        const size = header >>> 3;
        if (type === 3) throw new IntegrityError('archive is corrupt: reserved zstd block type', 'CORRUPT');
        this.remaining = type === 1 ? 1 : size;
        this.state = 'body';
        this.need = 0;
        this.fieldLength = 0;
        return;
      }
    }
  }
}

const zstdDecompress = promisify(zlib.zstdDecompress);

/**
 * Decodes possibly multi-frame zstd data in order. Yields decompressed chunks; throws
 * IntegrityError for data that is not zstd or stops inside a frame.
 */
export async function* decodeZstdFrames(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const splitter = new ZstdFrameSplitter();
  const queue: Promise<Buffer>[] = [];
  let parts: Buffer[] = [];
  let partsBytes = 0;
  let streaming: StreamingFrame | undefined;

  for await (const chunk of source) {
    for (const piece of splitter.push(chunk)) {
      if (piece.frame.skippable) continue;
      if (streaming) {
        yield* streaming.write(piece.data);
        if (piece.last) {
          yield* streaming.end();
          streaming = undefined;
        }
        continue;
      }
      parts.push(piece.data);
      partsBytes += piece.data.length;
      const oneShot = piece.frame.headerParsed && piece.frame.contentSize !== undefined && piece.frame.contentSize <= ONE_SHOT_CONTENT && partsBytes <= ONE_SHOT_COMPRESSED;
      if (piece.last && oneShot) {
        queue.push(zstdDecompress(parts.length === 1 ? parts[0]! : Buffer.concat(parts), { chunkSize: Math.max(64 * 1024, piece.frame.contentSize!) }));
        parts = [];
        partsBytes = 0;
        while (queue.length >= IN_FLIGHT) yield await queue.shift()!;
        continue;
      }
      if (piece.frame.headerParsed && !oneShot) {
        // Too big (or of unknown size) to decode in one call: stream this frame, after the queue.
        while (queue.length > 0) yield await queue.shift()!;
        streaming = new StreamingFrame();
        for (const part of parts) yield* streaming.write(part);
        parts = [];
        partsBytes = 0;
        if (piece.last) {
          yield* streaming.end();
          streaming = undefined;
        }
      }
    }
  }
  splitter.end();
  while (queue.length > 0) yield await queue.shift()!;
}

/** One frame through Node's streaming decompressor, whose output is collected between writes. */
class StreamingFrame {
  private readonly stream = zlib.createZstdDecompress({ chunkSize: MiB });
  private readonly output: Buffer[] = [];
  private failure: Error | undefined;

  constructor() {
    this.stream.on('data', (chunk: Buffer) => this.output.push(chunk));
    this.stream.on('error', (error) => (this.failure = error));
  }

  async *write(data: Buffer): AsyncGenerator<Buffer> {
    if (!this.stream.write(data)) await once(this.stream, 'drain');
    yield* this.take();
  }

  async *end(): AsyncGenerator<Buffer> {
    this.stream.end();
    if (!this.stream.readableEnded) await once(this.stream, 'end');
    yield* this.take();
  }

  private *take(): Generator<Buffer> {
    if (this.failure) throw this.failure;
    while (this.output.length > 0) yield this.output.shift()!;
  }
}
