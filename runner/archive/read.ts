import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Compression } from '../config.js';
import { IntegrityError, RunnerError } from '../errors.js';
import { GarbageGovernor } from '../memory.js';
import type { AgeIdentity } from './age/index.js';
import { BufferPool } from './buffer-pool.js';
import { createDecompressor } from './compress.js';
import { decryptStage } from './encryption.js';
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

const MiB = 1024 * 1024;
/**
 * Read buffers an archive file reuses: about what the zstd decoder lanes and the pipeline hold at
 * once. Fresh 1 MiB reads were the largest garbage after the decoded pieces, and a restore onto a
 * slow disk, whose queues are all full at each collection, kept them until a full one (measured on
 * the medium set: peak RSS ~10 MB lower). A decoder that never hands chunks back leaves the pool
 * empty, and every read takes a fresh buffer.
 */
const POOLED_READS = 8;

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
  // A file's reads go round a pool, to which the decoder hands each chunk back once it is done with
  // it; decryption stands between them and hands the decoder buffers of its own.
  const pool = new BufferPool(MiB, POOLED_READS);
  const decompressor = createDecompressor(compression, typeof file === 'string' && !identities ? (chunk) => pool.give(chunk) : undefined);
  const governor = new GarbageGovernor();
  // Hashes the bytes as stored while they stream by (a plain generator: cheaper than a Transform).
  const tap = async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) {
      hash.update(chunk);
      archiveBytes += chunk.length;
      // Decryption leaves one fresh buffer per 64 KiB chunk: count it as garbage too.
      if (identities) governor.processed(chunk.length);
      yield chunk;
    }
  };
  const consume = async (source: AsyncIterable<Buffer>) => {
    let entries = 0;
    for await (const chunk of source) {
      reader.write(chunk);
      governor.processed(chunk.length + (visitor.takeCopiedBytes?.() ?? 0), reader.entries - entries);
      entries = reader.entries;
      onProgress?.({ archiveBytes, tarBytes: reader.bytes, entries: reader.entries });
      const wait = visitor.backpressure?.();
      if (wait) await wait;
    }
  };
  const input = typeof file === 'string' ? readPooled(file, pool) : file;
  const decryptor = identities ? decryptStage(identities) : undefined;
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

/** A file's bytes in buffers taken from `pool` (a short last read is a slice, which the pool does not take back). */
async function* readPooled(file: string, pool: BufferPool): AsyncGenerator<Buffer> {
  const handle = await open(file, 'r');
  try {
    for (;;) {
      const buffer = pool.take();
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) return;
      yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
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
