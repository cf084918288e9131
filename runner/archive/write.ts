import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { Compression } from '../config.js';
import { OperationError, describeSystemError } from '../errors.js';
import { humanBytes } from '../log.js';
import { GarbageGovernor, collectAllGarbage } from '../memory.js';
import { BufferPool } from './buffer-pool.js';
import { CHUNK_BYTES, createCompressor } from './compress.js';
import type { AgeIdentity } from './age/index.js';
import { EncryptStage, type EncryptionOptions } from './encryption.js';
import type { ManifestFile } from './manifest.js';
import { type PackWarning, TarPacker } from './pack.js';
import { type TarEntry, TarReader } from './tar-reader.js';
import type { ExcludeMatcher } from './walk.js';

export interface WriteOptions {
  source: string;
  exclude: ExcludeMatcher;
  skipUnreadable: boolean;
  compression: Compression;
  level: number | undefined;
  /** The hidden partial file to create (must not exist). */
  file: string;
  /** Expected source size, for the out-of-space message. */
  sourceBytes: number;
  /** Encrypt the compressed stream with age before it is hashed and written. */
  encryption?: EncryptionOptions;
  signal?: AbortSignal;
  onProgress?: (p: { bytesRead: number; files: number; archiveBytes: number }) => void;
}

export interface WrittenArchive {
  sha256: string;
  archiveBytes: number;
  tarBytes: number;
  totalBytes: number;
  files: ManifestFile[];
  warnings: PackWarning[];
  /** Every entry of the tar stream as parsed back from the bytes handed to the compressor. */
  entries: TarEntry[];
  /** Encrypted: the identity that opens this file (its own file key), to prove the stored copy; destroy it after. */
  selfCheck?: AgeIdentity;
}

/** Appends compressed bytes to the file and hashes them; remembers the first failure for the writer loop. */
class ArchiveFile {
  readonly hash = createHash('sha256');
  bytes = 0;
  failure: unknown;

  constructor(private readonly fd: number) {}

  append = (chunk: Buffer): void => {
    if (this.failure) return;
    try {
      let offset = 0;
      while (offset < chunk.length) offset += fs.writeSync(this.fd, chunk, offset, chunk.length - offset);
      this.hash.update(chunk);
      this.bytes += chunk.length;
    } catch (error) {
      this.failure = error;
    }
  };
}

/**
 * Streams the source tree into a new archive file in one pass: tar packing (with per-file
 * hashes) → compression → [age encryption] → file, hashing the stored bytes on the way. The file is fsynced
 * before this returns. Memory stays bounded: ~1 MiB chunks and a bounded compression queue.
 */
export async function writeArchive(options: WriteOptions): Promise<WrittenArchive> {
  const fd = fs.openSync(options.file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
  const out = new ArchiveFile(fd);
  // Enough buffers for the chunks in flight (compression jobs, one being filled, one queued).
  const pool = new BufferPool(CHUNK_BYTES[options.compression], 5);
  const packer = new TarPacker({ source: options.source, exclude: options.exclude, skipUnreadable: options.skipUnreadable, pool });
  const onAbort = () => packer.abort(new OperationError('backup stopped by a signal', 'STOPPED'));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let parsed: TarEntry[] = [];
  let stage: EncryptStage | undefined;
  const checkOutput = () => {
    if (out.failure) throw outputError(out.failure, out.bytes, options.sourceBytes);
  };
  try {
    // The file sink writes and hashes each buffer before it returns, so the encryptor may reuse its own.
    stage = options.encryption ? new EncryptStage({ sinkCopies: true, ...options.encryption }, out.append) : undefined;
    const compressor = createCompressor(options.compression, options.level, stage?.append ?? out.append, (chunk) => pool.give(chunk));
    const governor = new GarbageGovernor();
    // The stream is parsed back as it is produced (headers only: cheap), so the manifest can be
    // checked against what the archive really holds, up to tar's end-of-archive marker.
    const entries: TarEntry[] = [];
    const reader = new TarReader({ entry: (entry) => void entries.push(entry) });
    for (const chunk of packer.chunks()) {
      reader.write(chunk);
      await compressor.write(chunk);
      governor.processed(chunk.length);
      checkOutput();
      options.onProgress?.({ bytesRead: packer.bytesRead, files: packer.files.length, archiveBytes: out.bytes });
    }
    await compressor.end();
    stage?.end();
    checkOutput();
    reader.end();
    parsed = entries;
    try {
      fs.fsyncSync(fd);
    } catch (error) {
      throw outputError(error, out.bytes, options.sourceBytes);
    }
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    fs.closeSync(fd);
    collectAllGarbage();
  }
  return {
    sha256: out.hash.digest('hex'),
    archiveBytes: out.bytes,
    tarBytes: packer.tarBytes,
    totalBytes: packer.files.reduce((sum, f) => sum + (f.type === 'file' ? f.size : 0), 0),
    files: packer.files,
    warnings: packer.warnings,
    entries: parsed,
    ...(stage ? { selfCheck: stage.selfCheck() } : {}),
  };
}

function outputError(error: unknown, written: number, sourceBytes: number): OperationError {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new OperationError(
      `the backup volume is full: the archive had reached ${humanBytes(written)} (source holds ${humanBytes(sourceBytes)}) when writing failed; ` +
        'free space (lower keep-last or delete old archives) or give the backup volume more room (storage.size)',
      'NO_SPACE',
      { cause: error },
    );
  }
  return new OperationError(`writing the archive failed: ${describeSystemError(error)}`, 'WRITE_FAILED', { cause: error });
}
