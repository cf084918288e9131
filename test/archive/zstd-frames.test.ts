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
});
