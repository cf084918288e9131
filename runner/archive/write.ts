import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { Compression } from '../config.js';
import { OperationError, RunnerError, describeSystemError } from '../errors.js';
import { humanBytes } from '../log.js';
import { GarbageGovernor, collectAllGarbage } from '../memory.js';
import { BufferPool } from './buffer-pool.js';
import { CHUNK_BYTES, createCompressor } from './compress.js';
import type { ManifestFile } from './manifest.js';
import { type PackWarning, TarPacker } from './pack.js';
import { type TarEntry, TarReader } from './tar-reader.js';
import type { ExcludeMatcher } from './walk.js';
import type { ArchiveSink } from '../repository/repository.js';

export interface WriteOptions {
  source: string;
  exclude: ExcludeMatcher;
  skipUnreadable: boolean;
  compression: Compression;
  level: number | undefined;
  /**
   * Where the compressed bytes go: the hidden partial file to create (must not exist), or a
   * repository's archive sink (a bucket upload), which is drained between chunks.
   */
  file: string | ArchiveSink;
  /** Expected source size, for the out-of-space message. */
  sourceBytes: number;
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
}

/** Appends compressed bytes to the file and hashes them; remembers the first failure for the writer loop. */
class ArchiveFile {
  readonly hash = createHash('sha256');
  bytes = 0;
  failure: unknown;

  constructor(private readonly fd: number) {}

  /** Nothing to wait for: every append was written synchronously. */
  async drain(): Promise<void> {}

  finish(): void {
    fs.fsyncSync(this.fd);
  }

  close(): void {
    fs.closeSync(this.fd);
  }

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

/** Hands compressed bytes to a repository's sink (which copies them) and hashes them. */
class ArchiveStream {
  readonly hash = createHash('sha256');
  bytes = 0;
  failure: unknown;

  constructor(private readonly sink: ArchiveSink) {}

  append = (chunk: Buffer): void => {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.sink.append(chunk);
  };

  /** Waits while the sink's parts in flight are at their bound: memory stays bounded. */
  async drain(): Promise<void> {
    try {
      await this.sink.drain();
    } catch (error) {
      this.failure ??= error;
    }
  }

  finish(): void {}

  close(): void {}
}

/**
 * Streams the source tree into a new archive file in one pass: tar packing (with per-file
 * hashes) → compression → file, hashing the archive bytes on the way. The file is fsynced
 * before this returns. Memory stays bounded: ~1 MiB chunks and a bounded compression queue.
 */
export async function writeArchive(options: WriteOptions): Promise<WrittenArchive> {
  const out =
    typeof options.file === 'string'
      ? new ArchiveFile(fs.openSync(options.file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644))
      : new ArchiveStream(options.file);
  // Enough buffers for the chunks in flight (compression jobs, one being filled, one queued).
  const pool = new BufferPool(CHUNK_BYTES[options.compression], 5);
  const packer = new TarPacker({ source: options.source, exclude: options.exclude, skipUnreadable: options.skipUnreadable, pool });
  const onAbort = () => packer.abort(new OperationError('backup stopped by a signal', 'STOPPED'));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let parsed: TarEntry[] = [];
  const checkOutput = () => {
    if (out.failure) throw out.failure instanceof RunnerError ? out.failure : outputError(out.failure, out.bytes, options.sourceBytes);
  };
  try {
    const compressor = createCompressor(options.compression, options.level, out.append, (chunk) => pool.give(chunk));
    const governor = new GarbageGovernor();
    // The stream is parsed back as it is produced (headers only: cheap), so the manifest can be
    // checked against what the archive really holds, up to tar's end-of-archive marker.
    const entries: TarEntry[] = [];
    const reader = new TarReader({ entry: (entry) => void entries.push(entry) });
    for (const chunk of packer.chunks()) {
      reader.write(chunk);
      await compressor.write(chunk);
      governor.processed(chunk.length);
      await out.drain();
      checkOutput();
      options.onProgress?.({ bytesRead: packer.bytesRead, files: packer.files.length, archiveBytes: out.bytes });
    }
    await compressor.end();
    await out.drain();
    checkOutput();
    reader.end();
    parsed = entries;
    try {
      out.finish();
    } catch (error) {
      throw outputError(error, out.bytes, options.sourceBytes);
    }
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    out.close();
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
