import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { expect } from 'vitest';
import { AgeDecryptor, AgeEncryptor, type AgeIdentity, type AgeRecipient, X25519Identity } from '../../runner/archive/age/index.js';
import { RunnerError } from '../../runner/errors.js';
import { tool } from './cli.js';

/**
 * The age side of the tests: keys from the real `age-keygen`, the real `age` CLI, and our
 * engine driven the way the runner drives it (a sink on the write side, a Transform on the
 * read side) with chosen split points, so chunk boundaries fall everywhere.
 */

export interface CliKey {
  /** The identity file text as age-keygen wrote it (comments and the AGE-SECRET-KEY-1 line). */
  file: string;
  /** The `age1…` public key. */
  recipient: string;
}

/** A new key pair from the real age-keygen. */
export function ageKeygen(): CliKey {
  const file = tool('age-keygen', []).toString('utf8');
  const recipient = /^# public key: (age1\S+)$/m.exec(file)?.[1];
  if (!recipient) throw new Error(`age-keygen printed no public key:\n${file}`);
  return { file, recipient };
}

/** Our identity parsed from an age-keygen file's text. */
export function identityOf(key: CliKey): X25519Identity {
  const line = key.file.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  return X25519Identity.parse(Buffer.from(line))!;
}

/** Runs the real `age` CLI; stdout on success, throws with stderr otherwise. */
export function ageCli(args: readonly string[], input?: Buffer): Buffer {
  return tool('age', args, { input: input ?? Buffer.alloc(0), maxBuffer: 1024 * 1024 * 1024 });
}

/** Encrypts with our sink API, appending the plaintext in pieces of the given sizes (cycled). */
export function encryptInPieces(plaintext: Buffer, recipients: readonly AgeRecipient[], pieces: readonly number[] = [1024 * 1024]): Buffer {
  const out: Buffer[] = [];
  const encryptor = new AgeEncryptor(recipients, (chunk) => void out.push(chunk));
  let position = 0;
  for (let i = 0; position < plaintext.length; i++) {
    const size = Math.max(1, pieces[i % pieces.length]!);
    // A reused input buffer, overwritten after each append: the encryptor must not keep it.
    const piece = Buffer.from(plaintext.subarray(position, position + size));
    encryptor.append(piece);
    piece.fill(0xee);
    position += size;
  }
  encryptor.end();
  return Buffer.concat(out);
}

export interface DecryptOutcome {
  /** Everything the decryptor released before it ended or failed. */
  plaintext: Buffer;
  error?: RunnerError;
  /** True only when the stream ended cleanly ('end' emitted). */
  ended: boolean;
}

/** Feeds ciphertext to our Transform in pieces of the given sizes and reports what it released. */
export async function decryptInPieces(ciphertext: Buffer, identities: readonly AgeIdentity[], pieces: readonly number[] = [1024 * 1024]): Promise<DecryptOutcome> {
  function* split(): Generator<Buffer> {
    let position = 0;
    for (let i = 0; position < ciphertext.length; i++) {
      const size = Math.max(1, pieces[i % pieces.length]!);
      yield ciphertext.subarray(position, position + size);
      position += size;
    }
  }
  const out: Buffer[] = [];
  // Records every byte the decryptor releases, whether or not a consumer read it before a failure.
  const decryptor = new (class extends AgeDecryptor {
    override push(chunk: Buffer | null): boolean {
      if (chunk) out.push(chunk);
      return super.push(chunk);
    }
  })(identities);
  let ended = false;
  decryptor.on('end', () => (ended = true));
  try {
    await pipeline(Readable.from(split(), { objectMode: false }), decryptor, new Writable({ write: (_chunk, _encoding, done) => done() }));
  } catch (error) {
    if (!(error instanceof RunnerError)) throw error;
    return { plaintext: Buffer.concat(out), error, ended };
  }
  return { plaintext: Buffer.concat(out), ended };
}

/** Asserts the decryption failed with this error code and released only a prefix of `original`. */
export function expectRefused(outcome: DecryptOutcome, code: string | RegExp, original?: Buffer): void {
  expect(outcome.ended).toBe(false);
  expect(outcome.error?.code).toMatch(code);
  expect(outcome.error?.exitCode).toBe(3);
  if (original) expect(original.subarray(0, outcome.plaintext.length).equals(outcome.plaintext)).toBe(true);
}
