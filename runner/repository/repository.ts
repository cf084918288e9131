import type { Readable } from 'node:stream';
import type { LockWarning } from '../store/lock.js';
import type { ArchiveName } from '../store/naming.js';

export type { LockWarning };

/**
 * Where archives live: one small interface with two implementations, the backup directory
 * (local.ts) and an S3-compatible bucket (s3.ts). Names, sidecar names and ordering come from
 * store/naming.ts for both, so `latest`, keep-last and list agree whichever holds the archives.
 *
 * Publishing is atomic in both: an archive is written through a sink and becomes visible, with
 * its `.sha256` and manifest, only on commit. Nothing half-written is ever listed.
 */

export interface ArchiveEntry extends ArchiveName {
  /** Archive size in bytes. */
  size: number;
  /** File mtime or object LastModified: informational, never used for ordering. */
  modified: Date;
  hasSha256: boolean;
  hasManifest: boolean;
  /** An encrypted archive's plain info record is there (always false for plain archives). */
  hasInfo: boolean;
}

export interface Listing {
  /**
   * The archives of the prefix, newest first. Directory: every archive file (as always, one
   * without a manifest is listed with `hasManifest: false`). Bucket: only archives whose
   * manifest object exists — the manifest is written last, so it marks a finished upload.
   */
  archives: ArchiveEntry[];
  /**
   * Bucket only (always empty for a directory): archive objects of the prefix without a
   * manifest object — a run stopped between completing the upload and writing the manifest, or
   * a manifest deleted by hand. Never valid, never `latest`, not counted by keep-last. Newest first.
   */
  incomplete: ArchiveEntry[];
  /** Sidecars of the prefix whose archive is gone (left by an interrupted delete), sorted by name. */
  orphans: string[];
}

/** An object or file opened for reading. */
export interface ReadHandle {
  stream: Readable;
  size: number;
}

export interface ObjectInfo {
  size: number;
  modified: Date;
  /** User metadata (bucket objects; empty for files). */
  metadata: Record<string, string>;
}

/**
 * What a sidecar is written from: text or bytes in memory, a local file, or a stream (a
 * manifest can be tens of MB; neither repository holds a file or stream source in memory whole).
 */
export type SidecarSource = string | Uint8Array | { file: string } | { stream: Readable };

export interface ArchiveSidecars {
  /** The archive's SHA-256 (hex), computed while writing; becomes the `.sha256` sidecar. */
  sha256: string;
  manifest: SidecarSource;
  /** An encrypted archive's plain info record (store/info.ts), written before the manifest. */
  info?: string;
}

export interface PutArchiveOptions {
  /**
   * Expected archive size (an upper estimate is fine; the exact size when uploading an existing
   * file). Only sizes the bucket's multipart parts; the archive may end up larger or smaller.
   */
  sizeHint?: number;
  /**
   * The SHA-256 when it is known before the first byte (an existing file being uploaded): the
   * bucket then stores it with the object from the start instead of stamping it afterwards.
   */
  sha256?: string;
  /** Aborting it (SIGTERM) fails the sink and discards the upload. */
  signal?: AbortSignal;
}

/** A push-style sink an archive writer appends compressed chunks to. */
export interface ArchiveSink {
  readonly name: string;
  /** Bytes appended so far. */
  readonly bytes: number;
  /**
   * Copies `chunk` into the archive; the caller may reuse its buffer at once. Never blocks and
   * never throws (it may be called from a compressor's output callback): a write failure is
   * remembered and reported by the next `drain()` or `commit()`. Await `drain()` between
   * chunks to keep memory bounded.
   */
  append(chunk: Uint8Array): void;
  /** Resolves once the sink has room again (bucket: parts in flight within bounds); rejects with its first failure. */
  drain(): Promise<void>;
  /**
   * Publishes the archive with its sidecars. Directory: fsync, sidecars written atomically,
   * then the rename makes the archive visible. Bucket: last parts, CompleteMultipartUpload,
   * sha256 metadata, HEAD check of size and sha256, then `.sha256`, then the manifest (which
   * makes it valid). On failure everything is discarded and the error rethrown.
   */
  commit(sidecars: ArchiveSidecars): Promise<StoredArchive>;
  /** Discards everything written so far (bucket: AbortMultipartUpload). Idempotent; never throws. */
  abort(): Promise<void>;
  /**
   * The synchronous part of abort, for a signal handler that cannot wait: the directory removes
   * its hidden partial; a bucket can do nothing synchronously (its upload is aborted
   * asynchronously by `abort()`, and otherwise by the next run's `removeLeftovers()`).
   */
  abortSync(): void;
}

export interface StoredArchive {
  name: string;
  size: number;
  sha256: string;
  /** Where it now lives: a file path or `s3://bucket/key`. */
  location: string;
}

export type DeleteOutcome =
  | { status: 'deleted'; removed: string[] }
  /** The store refused (bucket: AccessDenied from Object Lock / WORM or delete-less credentials). */
  | { status: 'retained'; removed: string[]; reason: string };

export interface LockOptions {
  /** What the holder does (backup, prune, restore…), shown to contenders. */
  command: string;
  /** A lock whose heartbeat is older than this many seconds is broken with a warning. */
  staleSeconds: number;
  onWarning?: LockWarning;
}

export interface RepositoryLock {
  /** Set when the heartbeat found the lock removed or replaced by another run. */
  readonly lost: boolean;
  /** Stops the heartbeat and removes the lock if it is still ours. Idempotent; never throws. */
  release(): Promise<void>;
  /** The same for signal handlers (a bucket lock cannot be removed synchronously: it goes stale). */
  releaseSync(): void;
}

export interface Repository {
  readonly kind: 'directory' | 'bucket';
  /** For messages: the directory path or `s3://bucket/key-prefix`. */
  readonly location: string;
  /** The archives of one prefix (exact prefix: `backup` never includes `backup-pre-restore-…`). */
  list(prefix: string): Promise<Listing>;
  /** Size and metadata of an archive or sidecar; undefined when it does not exist. */
  stat(name: string): Promise<ObjectInfo | undefined>;
  /** Opens an archive or sidecar for streaming; OperationError when it does not exist. */
  read(name: string, options?: { signal?: AbortSignal }): Promise<ReadHandle>;
  /** A small file whole (a `.sha256`, a manifest); undefined when it does not exist. */
  readSmall(name: string): Promise<Buffer | undefined>;
  /** Starts writing a new archive; nothing is visible under `name` until commit. */
  createArchive(name: string, options?: PutArchiveOptions): Promise<ArchiveSink>;
  /** Writes (or replaces) one sidecar atomically, e.g. a manifest with a recorded verification. */
  putSidecar(name: string, source: SidecarSource, options?: { signal?: AbortSignal }): Promise<void>;
  /** Deletes an archive, then its sidecars (an interrupted delete leaves orphans, never a sidecar-less archive). */
  deleteArchive(name: string): Promise<DeleteOutcome>;
  /**
   * Deletes single files/objects (orphaned sidecars) by name. `removed` lists the names that are
   * gone now (a directory leaves out the ones that were already missing; a bucket cannot tell).
   */
  deleteFiles(names: readonly string[]): Promise<{ removed: string[]; failed: { name: string; error: unknown }[] }>;
  /**
   * Removes what interrupted runs left (directory: hidden partials; bucket: our multipart
   * uploads under the key prefix). Call only while holding the lock. Returns what was removed.
   */
  removeLeftovers(): Promise<string[]>;
  /** Takes the repository's lock (LockHeldError, exit 4, when another run holds it). */
  lock(options: LockOptions): Promise<RepositoryLock>;
}

/** Reads a small sidecar as text; undefined when missing. */
export async function readText(repository: Repository, name: string): Promise<string | undefined> {
  return (await repository.readSmall(name))?.toString('utf8');
}
