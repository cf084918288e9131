import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeZstdFrames } from '../../runner/archive/zstd-frames.js';

/**
 * Frames that are small compressed and large decoded, as a backup of many tiny files makes them:
 * each decodes to several of a lane's output pieces, and a whole frame fits in one read.
 */
function compressibleFrames(count: number): { frames: Buffer[]; plain: Buffer } {
  const pieces = Array.from({ length: count }, (_, i) => {
    const line = Buffer.from(`${randomBytes(8).toString('hex')} frame ${i}: the same few bytes again and again\n`);
    return Buffer.concat(Array.from({ length: Math.ceil((2 * 1024 * 1024) / line.length) }, () => line));
  });
  return { frames: pieces.map((piece) => zlib.zstdCompressSync(piece)), plain: Buffer.concat(pieces) };
}

async function* slowly(chunks: readonly Buffer[]): AsyncGenerator<Buffer> {
  for (const chunk of chunks) {
    yield chunk;
    await sleep(1);
  }
}

async function decodeWithSlowConsumer(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const chunk of decodeZstdFrames(source)) {
    out.push(chunk);
    // A consumer that waits between chunks (a restore waiting for its file writes): the lanes
    // finish their frames meanwhile, and their events must not be lost.
    await sleep(3);
  }
  return Buffer.concat(out);
}

describe('decodeZstdFrames', () => {
  it('decodes frames of many output pieces for a consumer that waits between chunks (no lost wake-up)', async () => {
    const { frames, plain } = compressibleFrames(12);
    // All frames in one chunk: every lane finishes while the consumer sleeps.
    expect((await decodeWithSlowConsumer(slowly([Buffer.concat(frames)]))).equals(plain)).toBe(true);
    // One frame per chunk, the source slow as well.
    expect((await decodeWithSlowConsumer(slowly(frames))).equals(plain)).toBe(true);
  }, 20_000);

  it('hands the next frame to its lane in full before the oldest frame is read, so the lanes decode side by side', async () => {
    // Incompressible 2 MiB frames, as a backup of media files makes them, read in 1 MiB chunks.
    const plain = Array.from({ length: 4 }, () => randomBytes(2 * 1024 * 1024));
    const frames = plain.map((piece) => zlib.zstdCompressSync(piece));
    const archive = Buffer.concat(frames);
    let delivered = 0;
    async function* reads(): AsyncGenerator<Buffer> {
      for (let at = 0; at < archive.length; at += 1024 * 1024) {
        const chunk = archive.subarray(at, at + 1024 * 1024);
        delivered += chunk.length;
        yield chunk;
      }
    }
    const decoded = decodeZstdFrames(reads());
    const first = await decoded.next();
    expect(first.done).toBe(false);
    // By the first piece of output, the second frame has been read to its end.
    expect(delivered).toBeGreaterThanOrEqual(frames[0]!.length + frames[1]!.length);
    const out = [first.value as Buffer];
    for await (const chunk of decoded) out.push(chunk);
    expect(Buffer.concat(out).equals(Buffer.concat(plain))).toBe(true);
  }, 20_000);

  it('hands each read chunk back only once no lane reads it, so a pool may fill it again at once', async () => {
    // Chunks that hold several frames and frames that span chunks: 512 KiB reads over 2 MiB frames
    // that compress to a few KiB, and over 2 MiB incompressible ones.
    const { frames: small, plain: smallPlain } = compressibleFrames(6);
    const big = Array.from({ length: 6 }, () => randomBytes(2 * 1024 * 1024));
    const archive = Buffer.concat([...small, ...big.map((piece) => zlib.zstdCompressSync(piece))]);
    const size = 512 * 1024;
    const free: Buffer[] = [];
    const given = new Set<Buffer>();
    let handedOut = 0;
    let made = 0;
    async function* pooledReads(): AsyncGenerator<Buffer> {
      for (let at = 0; at < archive.length; at += size) {
        const buffer = free.pop() ?? (made++, Buffer.alloc(size));
        const n = archive.copy(buffer, 0, at, at + size);
        given.add(buffer);
        handedOut++;
        yield buffer.subarray(0, n);
      }
    }
    let returned = 0;
    const consumed = (chunk: Buffer) => {
      const buffer = [...given].find((b) => b.buffer === chunk.buffer)!;
      expect(given.delete(buffer)).toBe(true);
      returned++;
      // What a pool does next: the buffer is filled again, here with garbage that would break a
      // frame still being read from it.
      buffer.fill(0xa5);
      free.push(buffer);
    };
    const out: Buffer[] = [];
    for await (const chunk of decodeZstdFrames(pooledReads(), consumed)) out.push(chunk);
    expect(Buffer.concat(out).equals(Buffer.concat([smallPlain, ...big]))).toBe(true);
    expect(returned).toBe(handedOut);
    expect(given.size).toBe(0);
    // The buffers really went round: fewer were made than chunks were read.
    expect(made).toBeLessThan(handedOut / 2);
  }, 20_000);
});
