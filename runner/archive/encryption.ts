import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IntegrityError } from '../errors.js';
import { GarbageGovernor } from '../memory.js';
import { AgeDecryptor, AgeEncryptor, type AgeIdentity, type AgeRecipient, MAX_HEADER_BYTES, type ParsedHeader, SEALED_CHUNK_BYTES, looksLikeAge, parseHeader } from './age/index.js';
import { readPool, readPooled } from './buffer-pool.js';
import type { Sink } from './compress.js';
import { writeAll } from './fd-io.js';
import { hashingTap } from './hash.js';

/**
 * The age stage of the archive pipelines, whatever the bytes' destination or origin (a file in
 * the backup directory, a bucket): tar → compress → age → hash → sink when writing, and
 * source → hash → age → decompress → tar when reading. The checksum is always over the stored,
 * encrypted bytes, so `sha256sum -c` works without the key.
 */

export interface EncryptionOptions {
  recipients: readonly AgeRecipient[];
  /**
   * The sink is done with each buffer when it returns (a file written with writeSync), so the
   * encryptor reuses its output buffer. Leave false for sinks that keep buffers (uploads).
   */
  sinkCopies?: boolean;
}

/**
 * Encrypts the compressed stream on its way to `out`, keeping the file key so the writer can
 * later authenticate what it stored (selfCheck) without any recipient's secret key.
 */
export class EncryptStage {
  private readonly encryptor: AgeEncryptor;

  constructor(options: EncryptionOptions, out: Sink) {
    this.encryptor = new AgeEncryptor(options.recipients, out, { sinkCopies: options.sinkCopies ?? false, retainFileKey: true });
  }

  /** What the compressor writes into. */
  readonly append: Sink = (chunk) => this.encryptor.append(chunk);

  /** Seals the final chunk; call after the compressor has flushed. */
  end(): void {
    this.encryptor.end();
  }

  get plaintextBytes(): number {
    return this.encryptor.plaintextBytes;
  }

  /** The identity that opens this one file (its own file key), for proving the stored copy; once. */
  selfCheck(): AgeIdentity {
    return this.encryptor.takeFileKeyIdentity();
  }
}

/** The decrypting stage of a read, between the stored bytes and the decompressor; `consumed` gets each input chunk back once it is opened. */
export function decryptStage(identities: readonly AgeIdentity[], consumed?: (chunk: Buffer) => void): AgeDecryptor {
  return new AgeDecryptor(identities, { consumed });
}

/**
 * Reads a stored encrypted file back completely: its SHA-256 and length, and every byte
 * authenticated with `identity` (header MAC, every chunk in order, the final chunk last).
 * With the writer's self-check identity this proves that the stored file decrypts to exactly
 * the compressed stream that was sealed, which the writer proved before sealing it.
 */
export async function proveEncryptedFile(file: string, identity: AgeIdentity): Promise<{ sha256: string; bytes: number; plaintextBytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  // Reads go round a pool, and the opened chunks are counted as garbage: at the end of a backup
  // the heap is at its largest, and fresh buffers left to V8 alone raised its peak RSS by ~22 MB.
  const pool = readPool();
  const decryptor = new AgeDecryptor([identity], { consumed: (chunk) => pool.give(chunk) });
  const governor = new GarbageGovernor();
  const tap = hashingTap(hash, (chunk) => {
    bytes += chunk.length;
  });
  const drain = new Writable({
    highWaterMark: 4 * 1024 * 1024,
    write: (chunk: Buffer, _encoding, done) => {
      governor.processed(chunk.length);
      done();
    },
  });
  await pipeline(readPooled(file, pool), tap, decryptor, drain);
  return { sha256: hash.digest('hex'), bytes, plaintextBytes: decryptor.plaintextBytes };
}

/** The first bytes of a file, enough for an age header (or the tar/compression magic of a plain one). */
export function readHead(file: string, bytes = MAX_HEADER_BYTES): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(bytes);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    return head.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether a file begins like an age file (binary format). */
export function isAgeFile(file: string): boolean {
  return looksLikeAge(readHead(file, 32));
}

/**
 * What can be checked of an encrypted file without a key: that it starts with a well-formed
 * age v1 header (recipient stanzas, MAC line). The MAC and the payload need an identity.
 */
export function checkHeadWithoutKey(head: Buffer, label: string): ParsedHeader {
  if (!looksLikeAge(head)) throw new IntegrityError(`${label} does not start with an age header (age-encryption.org/v1); it is damaged or not encrypted`, 'AGE_NOT_AGE');
  try {
    return parseHeader(head, true)!;
  } catch (error) {
    if (error instanceof IntegrityError) throw new IntegrityError(`${label}: ${error.message}`, error.code);
    throw error;
  }
}

/**
 * The first plaintext bytes of an encrypted file (up to one 64 KiB chunk, authenticated), to
 * sniff the compression of an archive made by other tools. Throws what the decryptor would.
 */
export async function decryptedHead(file: string, identities: readonly AgeIdentity[]): Promise<Buffer> {
  const size = fs.statSync(file).size;
  const head = readHead(file, MAX_HEADER_BYTES + 2 * SEALED_CHUNK_BYTES);
  const decryptor = new AgeDecryptor(identities);
  const parts: Buffer[] = [];
  decryptor.on('data', (part: Buffer) => void parts.push(part));
  const done = new Promise<void>((resolve, reject) => {
    decryptor.once('error', reject);
    decryptor.once('end', resolve);
  });
  // A whole file ends the stream (the final chunk is checked); a longer one releases its first chunk.
  const whole = head.length >= size;
  if (whole) decryptor.end(head);
  else decryptor.write(head);
  done.catch(() => undefined);
  try {
    await (whole ? done : Promise.race([done, new Promise((resolve) => setImmediate(resolve))]));
  } finally {
    decryptor.destroy();
  }
  return Buffer.concat(parts);
}

/** A decrypted copy of a small encrypted file (a manifest) in a private temporary directory. */
export interface DecryptedCopy {
  file: string;
  /** Removes the copy (idempotent). */
  remove(): void;
}

/**
 * Decrypts `file` into a new private temporary directory (mode 0700 under the system's temp
 * dir, never the backup directory), for readers that need a file: the streamed manifest reader
 * opens its file by name. The copy is removed by `remove` (register it with the run's cleanup).
 * Throws what the decryptor would (wrong identity, damage), leaving nothing behind.
 */
export async function decryptToTemporaryFile(file: string, identities: readonly AgeIdentity[], name: string): Promise<DecryptedCopy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-decrypted-'));
  const remove = () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    const copy = path.join(dir, name);
    await pipeline(fs.createReadStream(file, { highWaterMark: 1024 * 1024 }), new AgeDecryptor(identities), fs.createWriteStream(copy, { mode: 0o600 }));
    return { file: copy, remove };
  } catch (error) {
    remove();
    throw error;
  }
}

/** Writes `plainFile` encrypted to the recipients into the open descriptor `fd`, streaming (bounded memory). */
export function encryptFileInto(fd: number, plainFile: string, recipients: readonly AgeRecipient[]): void {
  const write = (chunk: Buffer) => writeAll(fd, chunk);
  const encryptor = new AgeEncryptor(recipients, write, { sinkCopies: true });
  const input = fs.openSync(plainFile, 'r');
  try {
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    for (;;) {
      const n = fs.readSync(input, buffer, 0, buffer.length, null);
      if (n === 0) break;
      encryptor.append(buffer.subarray(0, n));
    }
    encryptor.end();
  } finally {
    fs.closeSync(input);
  }
}
