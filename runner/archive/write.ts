import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import type { Compression } from '../config.js';
import { IntegrityError, OperationError, RunnerError, describeSystemError } from '../errors.js';
import { humanBytes } from '../log.js';
import { GarbageGovernor, collectAllGarbage } from '../memory.js';
import { BufferPool } from './buffer-pool.js';
import { compareEntry } from './check.js';
import { BUFFERS_OUTLIVE_YOUNG, CHUNK_BYTES, GARBAGE_PER_BYTE, createCompressor } from './compress.js';
import type { AgeIdentity } from './age/index.js';
import { EncryptStage, type EncryptionOptions } from './encryption.js';
import { writeAll } from './fd-io.js';
import { ReadBehind, type StoredCopy } from './read-behind.js';
import { MANIFEST_FORMAT, type ManifestFile, type ManifestWriter } from './manifest.js';
import { type PackOptions, type PackWarning, TarPacker } from './pack.js';
import type { HelperPool } from './syscall-helper.js';
import { type TarEntry, TarReader } from './tar-reader.js';
import type { ExcludeMatcher } from './walk.js';
import type { ArchiveSink } from '../repository/repository.js';

export interface WriteOptions {
  source: string;
  exclude: ExcludeMatcher;
  /** Files archived with another file's bytes, and trees archived after the source (see PackOptions). */
  substitutes?: PackOptions['substitutes'];
  extraTrees?: PackOptions['extraTrees'];
  /** The source's hard links as its scan found them (see PackOptions). */
  hardLinks?: PackOptions['hardLinks'];
  skipUnreadable: boolean;
  compression: Compression;
  level: number | undefined;
  /**
   * Where the compressed bytes go: the hidden partial file to create (must not exist), or a
   * repository's archive sink (a bucket upload), which is drained between chunks.
   */
  file: string | ArchiveSink;
  /** Receives every archived entry (the manifest's file list). */
  manifest: ManifestWriter;
  /** Reads xattrs and sparse maps (syscall-helper.ts). */
  helper?: HelperPool;
  /** Archive extended attributes, ACLs and capabilities. */
  xattrs: boolean;
  /** Expected source size, for the out-of-space message. */
  sourceBytes: number;
  /** Encrypt the compressed stream with age before it is hashed and written. */
  encryption?: EncryptionOptions;
  signal?: AbortSignal;
  onProgress?: (p: { bytesRead: number; files: number; archiveBytes: number }) => void;
  onWarning?: (warning: PackWarning) => void;
}

export interface WrittenArchive {
  sha256: string;
  archiveBytes: number;
  tarBytes: number;
  /** Sum of regular file sizes, and of the file data stored (sparse files without holes). */
  totalBytes: number;
  storedBytes: number;
  /** Entries in the archive; regular files among them. */
  entryCount: number;
  files: number;
  /** Warnings for the manifest (capped) and how many more there were. */
  warnings: PackWarning[];
  warningsOmitted: number;
  /** zstd: [compressed offset, tar offset] of every frame (encrypted: offsets in the decrypted stream). */
  frames?: [number, number][];
  /** Unencrypted, into a file: the file as read back a step behind the writes (read-behind.ts). */
  stored?: StoredCopy;
  /** Encrypted: the identity that opens this file (its own file key), to prove the stored copy; destroy it after. */
  selfCheck?: AgeIdentity;
}

const fsync = promisify(fs.fsync);

/**
 * Appends compressed bytes to the file and hashes them; remembers the first failure for the
 * writer loop. With `readBack`, the file is also read back a step behind (ReadBehind).
 */
class ArchiveFile {
  readonly hash = createHash('sha256');
  bytes = 0;
  failure: unknown;
  private readonly readBehind: ReadBehind | undefined;

  constructor(
    private readonly fd: number,
    readBack: boolean,
  ) {
    this.readBehind = readBack ? new ReadBehind(fd) : undefined;
  }

  /** Nothing to wait for: every append was written synchronously. */
  async drain(): Promise<void> {}

  /** Fsyncs the file (on the thread pool) while the read-back catches up with the last writes. */
  async finish(): Promise<StoredCopy | undefined> {
    // Both settle before this returns or throws: the descriptor is closed next.
    const [synced, stored] = await Promise.allSettled([fsync(this.fd), this.readBehind?.end(this.bytes)]);
    if (synced.status === 'rejected') throw synced.reason;
    if (stored.status === 'rejected') throw stored.reason;
    return stored.value;
  }

  async close(): Promise<void> {
    await this.readBehind?.stop();
    fs.closeSync(this.fd);
  }

  append = (chunk: Buffer): void => {
    if (this.failure) return;
    try {
      writeAll(this.fd, chunk);
      this.hash.update(chunk);
      this.bytes += chunk.length;
      this.readBehind?.written(this.bytes);
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

  async finish(): Promise<undefined> {}

  async close(): Promise<void> {}
}

/**
 * The tar stream parsed back as it is produced (headers only: cheap), each entry compared with
 * the manifest entry the packer wrote for it, in order, up to tar's end-of-archive marker.
 */
class StreamCheck {
  private readonly records: ManifestFile[] = [];
  private readonly parsed: TarEntry[] = [];
  readonly reader = new TarReader({ entry: (entry) => this.push(this.parsed, entry) });
  matched = 0;

  constructor(private readonly label: string) {}

  file(record: ManifestFile): void {
    this.push(this.records, record);
  }

  private push<T>(queue: T[], item: T): undefined {
    queue.push(item);
    while (this.records.length > 0 && this.parsed.length > 0) {
      compareEntry(this.parsed.shift()!, this.records.shift()!, MANIFEST_FORMAT, this.label);
      this.matched++;
    }
    return undefined;
  }

  end(): void {
    this.reader.end();
    if (this.records.length !== 0 || this.parsed.length !== 0) {
      throw new IntegrityError(`${this.label}: the tar stream and the manifest disagree on the number of entries (internal fault); the archive was not kept`, 'ROUND_TRIP');
    }
  }
}

/**
 * Streams the source tree into a new archive file in one pass: tar packing (with per-file
 * hashes) → compression → [age encryption] → file, hashing the stored bytes on the way, every
 * entry written to the manifest as it is archived. The file is fsynced before this returns.
 * Memory stays bounded: ~1–4 MiB chunks, a bounded compression queue, nothing kept per entry.
 */
export async function writeArchive(options: WriteOptions): Promise<WrittenArchive> {
  // A plain archive file is read back as it is written, through the same descriptor (encrypted
  // ones are proven after writing, with their file key).
  const plainFile = typeof options.file === 'string' && !options.encryption;
  const out =
    typeof options.file === 'string'
      ? new ArchiveFile(fs.openSync(options.file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644), plainFile)
      : new ArchiveStream(options.file);
  // Enough buffers for the chunks in flight (compression jobs, one being filled, one queued).
  const pool = new BufferPool(CHUNK_BYTES[options.compression], 5);
  const check = new StreamCheck(typeof options.file === 'string' ? options.file : options.file.name);
  const packer = new TarPacker({
    source: options.source,
    exclude: options.exclude,
    substitutes: options.substitutes,
    extraTrees: options.extraTrees,
    hardLinks: options.hardLinks,
    skipUnreadable: options.skipUnreadable,
    pool,
    helper: options.helper,
    xattrs: options.xattrs,
    onFile: (file) => {
      options.manifest.file(file);
      check.file(file);
    },
    onWarning: options.onWarning,
  });
  const onAbort = () => packer.abort(new OperationError('backup stopped by a signal', 'STOPPED'));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let stage: EncryptStage | undefined;
  const checkOutput = () => {
    if (out.failure) throw out.failure instanceof RunnerError ? out.failure : outputError(out.failure, out.bytes, options.sourceBytes);
  };
  let frames: [number, number][] | undefined;
  let stored: StoredCopy | undefined;
  try {
    // The file sink writes and hashes each buffer before it returns, so the encryptor may reuse its own.
    stage = options.encryption ? new EncryptStage({ sinkCopies: true, ...options.encryption }, out.append) : undefined;
    const compressor = createCompressor(options.compression, options.level, stage?.append ?? out.append, (chunk) => pool.give(chunk));
    const governor = new GarbageGovernor(1 + GARBAGE_PER_BYTE[options.compression], { fullByBytes: BUFFERS_OUTLIVE_YOUNG[options.compression] });
    let entries = 0;
    for await (const chunk of packer.chunks()) {
      check.reader.write(chunk);
      await compressor.write(chunk);
      governor.processed(chunk.length, packer.entries - entries);
      entries = packer.entries;
      await out.drain();
      checkOutput();
      options.onProgress?.({ bytesRead: packer.bytesRead, files: packer.files, archiveBytes: out.bytes });
    }
    await compressor.end();
    stage?.end();
    await out.drain();
    checkOutput();
    check.end();
    frames = compressor.frames;
    try {
      stored = await out.finish();
    } catch (error) {
      throw outputError(error, out.bytes, options.sourceBytes);
    }
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    await out.close();
    collectAllGarbage();
  }
  return {
    sha256: out.hash.digest('hex'),
    archiveBytes: out.bytes,
    tarBytes: packer.tarBytes,
    totalBytes: packer.totalBytes,
    storedBytes: packer.storedBytes,
    entryCount: packer.entries,
    files: packer.files,
    warnings: packer.warnings,
    warningsOmitted: packer.warningsOmitted,
    frames,
    ...(stored ? { stored } : {}),
    ...(stage ? { selfCheck: stage.selfCheck() } : {}),
  };
}

export function outputError(error: unknown, written: number, sourceBytes: number): OperationError {
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
