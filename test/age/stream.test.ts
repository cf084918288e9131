import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AgeDecryptor, X25519Identity, parseHeader } from '../../runner/archive/age/index.js';
import { BATCH_CHUNKS, PLAIN_CHUNK_BYTES, SEALED_CHUNK_BYTES, StreamSealer } from '../../runner/archive/age/stream.js';
import { decryptInPieces, encryptInPieces } from '../helpers/age.js';

/**
 * The streaming shape of the engine: the bytes do not depend on how the input was cut, the
 * output comes in bounded buffers, and the sizes follow the format (16 bytes per chunk).
 */

const KEY = randomBytes(32);
const sealedWith = (plaintext: Buffer, pieces: number[], sinkCopies = false): { bytes: Buffer; emitted: number[] } => {
  const out: Buffer[] = [];
  // With sinkCopies the sealer reuses its output buffer, so this sink must copy what it keeps.
  const sealer = new StreamSealer(Buffer.from(KEY), (b) => void out.push(sinkCopies ? Buffer.from(b) : b), { sinkCopies });
  let position = 0;
  for (let i = 0; position < plaintext.length; i++) {
    const size = pieces[i % pieces.length]!;
    sealer.append(plaintext.subarray(position, position + size));
    position += size;
  }
  sealer.end();
  return { bytes: Buffer.concat(out), emitted: out.map((b) => b.length) };
};

describe('age STREAM streaming', () => {
  it('the sealed bytes are the same however the plaintext is cut, and come in buffers of at most ~1 MiB', () => {
    const plaintext = randomBytes(5 * 1024 * 1024 + 3);
    const whole = sealedWith(plaintext, [plaintext.length]);
    expect(Math.max(...whole.emitted)).toBe(BATCH_CHUNKS * SEALED_CHUNK_BYTES);
    for (const pieces of [[1, 2, 65_533], [PLAIN_CHUNK_BYTES - 1], [PLAIN_CHUNK_BYTES], [PLAIN_CHUNK_BYTES + 1], [3 * 1024 * 1024], [17 * PLAIN_CHUNK_BYTES + 5, 0, 9]]) {
      for (const sinkCopies of [false, true]) {
        const cut = sealedWith(plaintext, pieces, sinkCopies);
        expect(cut.bytes.equals(whole.bytes), JSON.stringify({ pieces, sinkCopies })).toBe(true);
        expect(Math.max(...cut.emitted)).toBeLessThanOrEqual(BATCH_CHUNKS * SEALED_CHUNK_BYTES);
      }
    }
  });

  it('sizes: 16 bytes of tag per 64 KiB chunk, a full final chunk when the size is a multiple, one empty chunk for nothing', () => {
    const identity = X25519Identity.generate();
    for (const [size, chunks] of [[0, 1], [1, 1], [PLAIN_CHUNK_BYTES, 1], [PLAIN_CHUNK_BYTES + 1, 2], [10 * PLAIN_CHUNK_BYTES, 10]] as const) {
      const file = encryptInPieces(randomBytes(size), [identity.recipient]);
      expect(file.length - parseHeader(file)!.length - 16, `size ${size}`).toBe(size + 16 * chunks);
    }
  });

  it('the decryptor gives the same plaintext for every cut of the ciphertext, byte by byte included', async () => {
    const identity = X25519Identity.generate();
    const plaintext = randomBytes(3 * PLAIN_CHUNK_BYTES + 100);
    const file = encryptInPieces(plaintext, [identity.recipient], [5 * 1024 * 1024]);
    for (const pieces of [[1], [SEALED_CHUNK_BYTES], [SEALED_CHUNK_BYTES + 1], [SEALED_CHUNK_BYTES - 1], [file.length], [50, 7_000_000]]) {
      const outcome = await decryptInPieces(file, [identity], pieces);
      expect(outcome.ended).toBe(true);
      expect(outcome.plaintext.equals(plaintext), JSON.stringify(pieces)).toBe(true);
    }
  });

  it('hands each input chunk back only once nothing of it is needed, so its buffer may be refilled at once', async () => {
    const identity = X25519Identity.generate();
    const plaintext = randomBytes(9 * PLAIN_CHUNK_BYTES + 321);
    const file = encryptInPieces(plaintext, [identity.recipient]);
    // Pieces of 40 bytes first (the header arrives in several), then ones that split sealed chunks.
    for (const pieces of [[40, 40, 40, 40, 100_000], [SEALED_CHUNK_BYTES + 7], [3 * SEALED_CHUNK_BYTES - 5, 10]]) {
      const released: Buffer[] = [];
      const handedBack = new Set<Buffer>();
      const decryptor = new AgeDecryptor([identity], {
        consumed: (chunk) => {
          expect(handedBack.has(chunk)).toBe(false);
          handedBack.add(chunk);
          // What a pool does next: the buffer is filled with the following read.
          chunk.fill(0xa5);
        },
      });
      decryptor.on('data', (chunk: Buffer) => released.push(chunk));
      const fed: Buffer[] = [];
      for (let position = 0, i = 0; position < file.length; i++) {
        const size = pieces[i % pieces.length]!;
        const piece = Buffer.from(file.subarray(position, position + size));
        fed.push(piece);
        await new Promise<void>((resolve, reject) => decryptor.write(piece, (error) => (error ? reject(error) : resolve())));
        position += size;
      }
      await new Promise<void>((resolve) => decryptor.end(resolve));
      expect(Buffer.concat(released).equals(plaintext), JSON.stringify(pieces)).toBe(true);
      // Every chunk after the header's is handed back; those the header was gathered from are not.
      const kept = fed.filter((piece) => !handedBack.has(piece));
      expect(kept.length, JSON.stringify(pieces)).toBe(pieces[0] === 40 ? 4 : 0);
    }
  });
});
