import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createCompressor, sniffCompression } from '../../runner/archive/compress.js';
import type { Compression } from '../../runner/config.js';
import { tool } from '../helpers/cli.js';

/**
 * The compressors turn a sequence of chunks into one standard stream: gzip made of parallel
 * deflate pieces must still be ONE gzip member with the right CRC and length; zstd must be
 * what the zstd CLI decodes; none passes the bytes through.
 */

const MiB = 1024 * 1024;

/** Chunks of awkward sizes, some compressible and some not, ~6 MiB in all. */
function chunks(): Buffer[] {
  const text = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(100_000));
  const sizes = [0, 1, 511, 32 * 1024 - 1, 32 * 1024 + 1, MiB, MiB, 3 * MiB + 17, 70_000];
  return sizes.map((n, i) => (i % 2 === 0 ? randomBytes(n) : text.subarray(0, n)));
}

async function compress(compression: Compression, level: number | undefined, input: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  const compressor = createCompressor(compression, level, (chunk) => out.push(Buffer.from(chunk)));
  for (const chunk of input) await compressor.write(chunk);
  await compressor.end();
  return Buffer.concat(out);
}

describe('parallel gzip', () => {
  it.each([1, 6, 9])('at level %i is one gzip member that gunzip, busybox and zlib decode to the input', async (level) => {
    const input = chunks();
    const plain = Buffer.concat(input);
    const gz = await compress('gzip', level, input);

    expect([...gz.subarray(0, 4)]).toEqual([0x1f, 0x8b, 0x08, 0x00]);
    const { buffer, engine } = zlib.inflateRawSync(gz.subarray(10), { info: true }) as unknown as { buffer: Buffer; engine: zlib.InflateRaw };
    expect(buffer.equals(plain)).toBe(true);
    expect(10 + engine.bytesWritten + 8).toBe(gz.length); // the deflate stream ends right at the trailer: one member
    expect(gz.readUInt32LE(gz.length - 8)).toBe(zlib.crc32(plain));
    expect(gz.readUInt32LE(gz.length - 4)).toBe(plain.length);

    expect(tool('gunzip', ['-c'], { input: gz }).equals(plain)).toBe(true);
    expect(tool('busybox', ['gunzip', '-c'], { input: gz }).equals(plain)).toBe(true);
    expect(() => tool('gzip', ['-t'], { input: gz })).not.toThrow();
  });

  it('compresses text: a higher level is never larger than level 1', async () => {
    const text = [Buffer.from('pvc-backup '.repeat(400_000))];
    const fast = await compress('gzip', 1, text);
    const best = await compress('gzip', 9, text);
    expect(fast.length).toBeLessThan(text[0]!.length / 20);
    expect(best.length).toBeLessThanOrEqual(fast.length);
  });

  it('writes a valid empty stream for no input', async () => {
    const gz = await compress('gzip', 6, []);
    expect(zlib.gunzipSync(gz).length).toBe(0);
    expect(tool('gunzip', ['-c'], { input: gz }).length).toBe(0);
  });
});

describe('zstd', () => {
  it.each([1, 3, 19])('at level %i is what the zstd CLI decodes to the input', async (level) => {
    const input = level === 19 ? chunks().slice(0, 6) : chunks();
    const plain = Buffer.concat(input);
    const zst = await compress('zstd', level, input);
    expect(zst.readUInt32LE(0)).toBe(0xfd2fb528);
    expect(() => tool('zstd', ['-q', '-t'], { input: zst })).not.toThrow();
    expect(tool('zstd', ['-q', '-d', '-c'], { input: zst }).equals(plain)).toBe(true);
  });
});

describe('no compression', () => {
  it('passes every byte through in order', async () => {
    const input = chunks();
    expect((await compress('none', undefined, input)).equals(Buffer.concat(input))).toBe(true);
  });
});

describe('sniffCompression', () => {
  it('recognizes gzip, zstd and plain tar by their first bytes, and nothing else', () => {
    expect(sniffCompression(zlib.gzipSync(Buffer.from('x')))).toBe('gzip');
    expect(sniffCompression(zlib.zstdCompressSync(Buffer.from('x')))).toBe('zstd');
    const tar = Buffer.alloc(1024);
    tar.write('ustar', 257, 'latin1');
    expect(sniffCompression(tar)).toBe('none');
    expect(sniffCompression(Buffer.from('PK\x03\x04 a zip file'))).toBeUndefined();
    expect(sniffCompression(Buffer.alloc(0))).toBeUndefined();
  });
});
