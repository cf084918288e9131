import { randomBytes, randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { NO_MATCH_MESSAGE, SEALED_CHUNK_BYTES, X25519Identity, parseHeader } from '../../runner/archive/age/index.js';
import { decryptInPieces, encryptInPieces, expectRefused } from '../helpers/age.js';

/**
 * Damaged, cut, reordered and foreign ciphertext: every case ends in an IntegrityError (exit 3)
 * and never in a clean end, and whatever plaintext was released before the failure is a true
 * prefix of the original (so staging it and discarding it on failure is safe).
 */

const identity = X25519Identity.generate();
const other = X25519Identity.generate();
const plaintext = randomBytes(4 * 64 * 1024 + 1000);
const file = encryptInPieces(plaintext, [identity.recipient]);
const header = parseHeader(file)!;
const payloadStart = header.length + 16;
/** Byte offsets where each sealed chunk starts, and the end of the file. */
const chunkStarts = [0, 1, 2, 3, 4].map((i) => payloadStart + i * SEALED_CHUNK_BYTES);
const ANY_FAILURE = /^AGE_(HEADER|MAC|NO_MATCH|NOT_AGE|PAYLOAD)$/;

function chunksOf(bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let p = payloadStart; p < bytes.length; p += SEALED_CHUNK_BYTES) chunks.push(bytes.subarray(p, p + SEALED_CHUNK_BYTES));
  return chunks;
}

const rebuild = (chunks: Buffer[]) => Buffer.concat([file.subarray(0, payloadStart), ...chunks]);

describe('age decryption refuses damaged ciphertext', () => {
  it('the intact file decrypts (the baseline every case below departs from)', async () => {
    const outcome = await decryptInPieces(file, [identity]);
    expect(outcome.ended).toBe(true);
    expect(outcome.plaintext.equals(plaintext)).toBe(true);
    expect(chunksOf(file)).toHaveLength(5);
  });

  it('truncated anywhere: in the header, in the nonce, at and around every chunk boundary, at random points', async () => {
    const cuts = new Set<number>();
    for (let i = 0; i <= payloadStart; i++) cuts.add(i);
    for (const start of chunkStarts) for (const d of [-17, -16, -1, 0, 1, 15, 16, 17]) cuts.add(start + d);
    for (let i = 0; i < 100; i++) cuts.add(randomInt(payloadStart, file.length));
    cuts.add(file.length - 1);
    for (const cut of [...cuts].filter((c) => c >= 0 && c < file.length)) {
      const outcome = await decryptInPieces(file.subarray(0, cut), [identity], [randomInt(1, 200_000)]);
      expectRefused(outcome, cut < payloadStart ? /^AGE_(HEADER|NOT_AGE)$/ : /^AGE_PAYLOAD$/, plaintext);
    }
  });

  it('cut exactly after a chunk: says the final chunk is missing', async () => {
    for (const start of chunkStarts.slice(1)) {
      const outcome = await decryptInPieces(file.subarray(0, start), [identity]);
      expectRefused(outcome, 'AGE_PAYLOAD', plaintext);
      expect(outcome.error?.message).toMatch(/ends without its final chunk/);
    }
  });

  it('a bit flipped in every byte of the header and the nonce (each bit position in turn)', async () => {
    for (let byte = 0; byte < payloadStart; byte++) {
      for (const bit of [byte % 8, (byte + 5) % 8]) {
        const damaged = Buffer.from(file);
        damaged[byte]! ^= 1 << bit;
        // Only the first chunk after the nonce is needed to notice a nonce change.
        const outcome = await decryptInPieces(damaged.subarray(0, chunkStarts[2]), [identity]);
        expectRefused(outcome, byte < header.length ? ANY_FAILURE : /^AGE_PAYLOAD$/);
        expect(outcome.plaintext.length).toBe(0);
      }
    }
  });

  it('bit flips in the payload: first, last and tag bytes of every chunk, and random positions', async () => {
    const positions = new Set<number>();
    for (const start of chunkStarts) for (const d of [0, 1, SEALED_CHUNK_BYTES - 17, SEALED_CHUNK_BYTES - 16, SEALED_CHUNK_BYTES - 1]) positions.add(start + d);
    positions.add(file.length - 1);
    for (let i = 0; i < 60; i++) positions.add(randomInt(payloadStart, file.length));
    for (const position of [...positions].filter((p) => p < file.length)) {
      const damaged = Buffer.from(file);
      damaged[position]! ^= 1 << randomInt(0, 8);
      expectRefused(await decryptInPieces(damaged, [identity]), 'AGE_PAYLOAD', plaintext);
    }
  });

  it('chunks swapped, dropped, duplicated, or the final chunk moved', async () => {
    const [c0, c1, c2, c3, last] = chunksOf(file) as [Buffer, Buffer, Buffer, Buffer, Buffer];
    const cases: Record<string, Buffer[]> = {
      swapped: [c0, c2, c1, c3, last],
      'first two swapped': [c1, c0, c2, c3, last],
      dropped: [c0, c1, c3, last],
      duplicated: [c0, c1, c1, c2, c3, last],
      'final chunk dropped': [c0, c1, c2, c3],
      'final chunk moved forward': [c0, c1, last, c2, c3],
    };
    for (const [name, chunks] of Object.entries(cases)) {
      const outcome = await decryptInPieces(rebuild(chunks), [identity]);
      expect(outcome.error?.code, name).toBe('AGE_PAYLOAD');
      expectRefused(outcome, 'AGE_PAYLOAD', plaintext);
    }
  });

  it('trailing bytes after the final chunk, or a second age file appended', async () => {
    for (const extra of [Buffer.from([0]), randomBytes(16), randomBytes(SEALED_CHUNK_BYTES), file]) {
      expectRefused(await decryptInPieces(Buffer.concat([file, extra]), [identity]), 'AGE_PAYLOAD', plaintext);
    }
    // A full-sized final chunk followed by more data is named precisely.
    const full = randomBytes(2 * 64 * 1024);
    const fullFile = encryptInPieces(full, [identity.recipient]);
    const outcome = await decryptInPieces(Buffer.concat([fullFile, randomBytes(100)]), [identity]);
    expectRefused(outcome, 'AGE_PAYLOAD', full);
    expect(outcome.error?.message).toMatch(/data follows the final chunk/);
  });

  it("another file's header in front of this payload (same recipient, valid MAC) fails on the first chunk", async () => {
    const second = encryptInPieces(randomBytes(100), [identity.recipient]);
    const spliced = Buffer.concat([second.subarray(0, parseHeader(second)!.length + 16), file.subarray(payloadStart)]);
    const outcome = await decryptInPieces(spliced, [identity]);
    expectRefused(outcome, 'AGE_PAYLOAD');
    expect(outcome.plaintext.length).toBe(0);
  });

  it('a wrong identity, or none: one line, exit 3, nothing released', async () => {
    for (const identities of [[other], []]) {
      const outcome = await decryptInPieces(file, identities);
      expectRefused(outcome, 'AGE_NO_MATCH');
      expect(outcome.error?.message).toBe(NO_MATCH_MESSAGE);
      expect(outcome.plaintext.length).toBe(0);
    }
    // The right identity among wrong ones still decrypts.
    expect((await decryptInPieces(file, [other, identity])).plaintext.equals(plaintext)).toBe(true);
  });

  it('not an age file at all: a zstd archive, random bytes, an empty file; armor is named as unsupported', async () => {
    for (const bytes of [Buffer.from('28b52ffd0058', 'hex'), randomBytes(1000), Buffer.alloc(0)]) {
      const outcome = await decryptInPieces(bytes, [identity]);
      expectRefused(outcome, 'AGE_NOT_AGE');
      expect(outcome.error?.message).toMatch(/^not an age encrypted file: /);
    }
    const armored = await decryptInPieces(Buffer.from('-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24ub3JnL3YxCg==\n'), [identity]);
    expect(armored.error?.code).toBe('AGE_ARMOR');
    expect(armored.error?.exitCode).toBe(2);
    expect(armored.error?.message).toMatch(/ASCII-armored age/);
  });

  it('a header that never ends is refused after 1 MiB instead of being buffered forever', async () => {
    const endless = Buffer.concat([Buffer.from('age-encryption.org/v1\n-> X25519 '), Buffer.alloc(2 * 1024 * 1024, 'A')]);
    expectRefused(await decryptInPieces(endless, [identity], [64 * 1024]), /^AGE_HEADER$/);
  });
});
