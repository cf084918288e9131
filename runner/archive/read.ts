import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Compression } from '../config.js';
import { IntegrityError, RunnerError } from '../errors.js';
import { GarbageGovernor } from '../memory.js';
import type { AgeIdentity } from './age/index.js';
import { readPool, readPooled } from './buffer-pool.js';
import { createDecompressor } from './compress.js';
import { decryptStage } from './encryption.js';
import { hashingTap } from './hash.js';
import { TarReader, type TarVisitor } from './tar-reader.js';

export interface ReadResult {
  /** SHA-256 of the archive file as read. */
  sha256: string;
  archiveBytes: number;
  tarBytes: number;
  entries: number;
}

export interface ReadProgress {
  archiveBytes: number;
  tarBytes: number;
  entries: number;
}

/**
 * Reads an archive file once, end to end: hashes the bytes as stored, decrypts them (with
 * `identities`, for an age-encrypted archive), decompresses them, parses every tar entry to the
 * end-of-archive marker and hands entries to the visitor. Decryption and decompression errors
 * and truncation become IntegrityError (exit 3); the visitor sees plaintext that is authenticated
 * chunk by chunk, and the whole stream only once this returns.
 */
export async function readArchive(
  /** A file path, or a stream of the archive's bytes (an object in a bucket). */
  file: string | Readable,
  compression: Compression,
  visitor: TarVisitor,
  onProgress?: (progress: ReadProgress) => void,
  identities?: readonly AgeIdentity[],
): Promise<ReadResult & { reader: TarReader }> {
  const hash = createHash('sha256');
  let archiveBytes = 0;
  const reader = new TarReader(visitor);
  // A file's reads go round a pool, to which the first stage after the hash (the decryptor, or else
  // the decoder) hands each chunk back once it is done with it.
  const reads = typeof file === 'string' ? readPool() : undefined;
  const giveBack = reads && ((chunk: Buffer) => reads.give(chunk));
  const decryptor = identities ? decryptStage(identities, giveBack) : undefined;
  const decompressor = createDecompressor(compression, identities ? undefined : giveBack);
  const governor = new GarbageGovernor(1, { fullByBytes: visitor.keepsChunks === true });
  // Hashes the bytes as stored while they stream by.
  const tap = hashingTap(hash, (chunk) => {
    archiveBytes += chunk.length;
    // Decryption leaves one fresh buffer per 64 KiB chunk: count it as garbage too.
    if (identities) governor.processed(chunk.length);
  });
  const consume = async (source: AsyncIterable<Buffer>) => {
    let entries = 0;
    for await (const chunk of source) {
      reader.write(chunk);
      governor.processed(chunk.length, reader.entries - entries, visitor.takeCopiedBytes?.() ?? 0);
      entries = reader.entries;
      onProgress?.({ archiveBytes, tarBytes: reader.bytes, entries: reader.entries });
      const wait = visitor.backpressure?.();
      if (wait) await wait;
    }
  };
  const input = typeof file === 'string' ? readPooled(file, reads!) : file;
  try {
    if (decryptor && decompressor) await pipeline(input, tap, decryptor, decompressor, consume);
    else if (decryptor) await pipeline(input, tap, decryptor, consume);
    else if (decompressor) await pipeline(input, tap, decompressor, consume);
    else await pipeline(input, tap, consume);
  } catch (error) {
    throw asIntegrityError(error, compression);
  }
  reader.end();
  return { sha256: hash.digest('hex'), archiveBytes, tarBytes: reader.bytes, entries: reader.entries, reader };
}

function asIntegrityError(error: unknown, compression: Compression): unknown {
  if (error instanceof RunnerError) return error;
  const e = error as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && (e.code.startsWith('Z_') || e.code.startsWith('ZSTD_') || e.code.startsWith('ERR_ZLIB') || e.code === 'ERR__ZSTD')) {
    return new IntegrityError(`archive is corrupt: ${compression} data error (${e.message})`, 'CORRUPT');
  }
  if (e?.message && /unexpected end of file|incorrect header check|invalid|corrupt|checksum|zstd/i.test(e.message) && !e.syscall) {
    return new IntegrityError(`archive is corrupt: ${compression} data error (${e.message})`, 'CORRUPT');
  }
  return error;
}
