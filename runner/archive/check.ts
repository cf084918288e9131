import type { Readable } from 'node:stream';
import type { Compression } from '../config.js';
import { IntegrityError } from '../errors.js';
import { count } from '../log.js';
import type { AgeIdentity } from './age/index.js';
import { ContentHash } from './hash.js';
import type { EntryType, ManifestFile, ManifestFiles, OpenedManifest } from './manifest.js';
import { displayName } from './names.js';
import { type ReadProgress, type ReadResult, readArchive } from './read.js';
import { SparseCursor } from './sparse.js';
import type { EntrySink, TarEntry, TarVisitor } from './tar-reader.js';
import type { Xattr } from './xattrs.js';

/** What an archive is expected to be; each part that is given is checked. */
export interface Expectation {
  /** Name used in messages. */
  label: string;
  sha256?: string;
  manifest?: OpenedManifest;
  /**
   * Re-hash every file's content and compare with the manifest (default). The check right
   * after a backup skips it: the codec's own checksum (gzip CRC-32, zstd XXH64) and the
   * archive's SHA-256 already prove that the file decodes to exactly the tar that was hashed.
   */
  contentHashes?: boolean;
}

export function entryTypeOf(tarType: string): EntryType | undefined {
  switch (tarType) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
      return 'file';
    case 'Directory':
      return 'dir';
    case 'SymbolicLink':
      return 'symlink';
    case 'Link':
      return 'hardlink';
    default:
      return undefined;
  }
}

/** The manifest's form of an entry's xattrs (name → base64), or undefined when it has none. */
export function xattrRecord(xattrs: readonly Xattr[] | undefined): Record<string, string> | undefined {
  if (!xattrs || xattrs.length === 0) return undefined;
  const record: Record<string, string> = {};
  for (const x of [...xattrs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) record[x.name] = x.value.toString('base64');
  return record;
}

function sameXattrs(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const ka = a ? Object.keys(a).sort() : [];
  const kb = b ? Object.keys(b).sort() : [];
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a![k] === b![k]);
}

/** Throws IntegrityError when an archive entry differs from its manifest entry (format: the manifest's). */
export function compareEntry(entry: TarEntry, expected: ManifestFile, format: number, label: string): void {
  const type = entryTypeOf(entry.type);
  const differ = (what: string, actual: unknown, wanted: unknown) =>
    new IntegrityError(`${label}: entry ${displayName(entry.path)} differs from the manifest (${what}: archive has ${JSON.stringify(actual)}, manifest says ${JSON.stringify(wanted)})`, 'MANIFEST');
  if (entry.path !== expected.path) throw differ('path', entry.path, expected.path);
  if (type !== expected.type) throw differ('type', type ?? entry.type, expected.type);
  if (entry.size !== expected.size) throw differ('size', entry.size, expected.size);
  if (entry.mode !== expected.mode) throw differ('mode', entry.mode.toString(8), typeof expected.mode === 'number' ? expected.mode.toString(8) : expected.mode);
  if (entry.mtime !== expected.mtime) throw differ('mtime', entry.mtime, expected.mtime);
  if (entry.uid !== expected.uid || entry.gid !== expected.gid) throw differ('owner', `${entry.uid}:${entry.gid}`, `${expected.uid}:${expected.gid}`);
  if ((type === 'symlink' || type === 'hardlink') && entry.linkpath !== expected.linkTarget) throw differ('link target', entry.linkpath, expected.linkTarget);
  if (format >= 2) {
    if (entry.mtimeNsec !== (expected.mtimeNsec ?? 0)) throw differ('mtime nanoseconds', entry.mtimeNsec, expected.mtimeNsec ?? 0);
    const xattrs = xattrRecord(entry.xattrs);
    if (!sameXattrs(xattrs, expected.xattrs)) throw differ('extended attributes', Object.keys(xattrs ?? {}), Object.keys(expected.xattrs ?? {}));
    if (type === 'file' && entry.storedSize !== (expected.dataBytes ?? expected.size)) throw differ('stored data bytes', entry.storedSize, expected.dataBytes ?? expected.size);
    if (expected.offset !== undefined && entry.headerOffset !== expected.offset) throw differ('offset', entry.headerOffset, expected.offset);
  }
}

/**
 * Compares every entry of the archive, in order, with the manifest's per-file index (read as a
 * stream, one entry at a time), including a SHA-256 of each file's content, then the totals.
 */
export class ManifestChecker implements TarVisitor {
  private count = 0;
  private readonly files: ManifestFiles | undefined;
  private readonly format: number;
  private hashingBehind: Promise<void>[] = [];
  /** Ends the hashing behind the reader once the read failed: its result no longer matters. */
  private readonly stopHashing = new AbortController();
  /** Bytes of data pieces copied to wait for a long hole's hashing: garbage the reader counts. */
  copiedBytes = 0;
  totalBytes = 0;
  storedBytes = 0;

  constructor(private readonly expectation: Expectation) {
    this.files = expectation.manifest?.files();
    this.format = typeof expectation.manifest?.manifest.format === 'number' ? expectation.manifest.manifest.format : 1;
  }

  entry(entry: TarEntry): EntrySink | undefined {
    const { label } = this.expectation;
    const type = entryTypeOf(entry.type);
    if (type === 'file') {
      this.totalBytes += entry.size;
      this.storedBytes += entry.storedSize;
    }
    if (!this.files) return undefined;
    const expected = this.files.next();
    this.count++;
    if (!expected) throw new IntegrityError(`${label} holds more entries than its manifest lists (${this.count - 1}); the archive or manifest was altered`, 'MANIFEST');
    compareEntry(entry, expected, this.format, label);
    if (type !== 'file' || this.expectation.contentHashes === false) return undefined;
    return new HashingSink(entry, expected, label, this);
  }

  /** Lets the reader wait for the hashing of long holes (see HashingSink), and fails with it. */
  backpressure(): Promise<void> | undefined {
    if (this.hashingBehind.length === 0) return undefined;
    const all = Promise.all(this.hashingBehind);
    this.hashingBehind = [];
    return all.then(() => undefined);
  }

  /** All hashing is done, and every content checksum compared. */
  async settled(): Promise<void> {
    while (this.hashingBehind.length > 0) await this.backpressure();
  }

  /** A sink's hashing that runs behind the reader; a failure surfaces in backpressure() or settled(). */
  hashesBehind(work: Promise<void>): void {
    // Handled here so that a read that fails first does not leave a rejection nobody awaits.
    work.catch(() => undefined);
    this.hashingBehind.push(work);
  }

  takeCopiedBytes(): number {
    const bytes = this.copiedBytes;
    this.copiedBytes = 0;
    return bytes;
  }

  /** Releases the manifest reader after a failed read, and stops the hashing behind it. */
  finishEarly(): void {
    this.stopHashing.abort();
    this.files?.close();
  }

  get hashingStopped(): AbortSignal {
    return this.stopHashing.signal;
  }

  /** Checks what can only be known at the end: counts, sizes, the archive checksum. */
  finish(result: ReadResult): void {
    const { sha256, label } = this.expectation;
    let listed = this.count;
    if (this.files) {
      while (this.files.next() !== undefined) listed++;
      this.files.close();
    }
    if (sha256 !== undefined && result.sha256 !== sha256) {
      throw new IntegrityError(`${label}: checksum mismatch (file has sha256 ${result.sha256}, expected ${sha256}); the archive is damaged`, 'CHECKSUM');
    }
    const opened = this.expectation.manifest;
    if (!opened || !this.files) return;
    const manifest = opened.manifest;
    if (listed !== this.count) {
      throw new IntegrityError(`${label} holds ${count(this.count, 'entry')} but its manifest lists ${listed}; the archive is incomplete`, 'MANIFEST');
    }
    if (manifest.entryCount !== this.count) {
      throw new IntegrityError(`${label} holds ${count(this.count, 'entry')} but its manifest's entryCount says ${JSON.stringify(manifest.entryCount)}; the manifest was altered`, 'MANIFEST');
    }
    if (result.sha256 !== manifest.sha256) {
      throw new IntegrityError(`${label}: checksum ${result.sha256} differs from the manifest's ${manifest.sha256}`, 'CHECKSUM');
    }
    if (result.archiveBytes !== manifest.archiveBytes) {
      throw new IntegrityError(`${label} is ${result.archiveBytes} bytes but its manifest says ${manifest.archiveBytes}`, 'MANIFEST');
    }
    if (result.tarBytes !== manifest.tarBytes) {
      throw new IntegrityError(`${label}: tar stream is ${result.tarBytes} bytes but its manifest says ${manifest.tarBytes}`, 'MANIFEST');
    }
    if (this.totalBytes !== manifest.totalBytes) {
      throw new IntegrityError(`${label} holds ${this.totalBytes} bytes of file data but its manifest says ${manifest.totalBytes}`, 'MANIFEST');
    }
    if (this.format >= 2 && manifest.storedBytes !== undefined && this.storedBytes !== manifest.storedBytes) {
      throw new IntegrityError(`${label} stores ${this.storedBytes} bytes of file data but its manifest says ${manifest.storedBytes}`, 'MANIFEST');
    }
  }
}

/**
 * Hashes one file's content as it streams by and compares it with the manifest at its end. A long
 * hole of a sparse file is hashed in turns of the event loop (ContentHash.zeros); until that is
 * done, the file's later pieces are copied (the reader reuses their buffers) and wait in order.
 */
class HashingSink implements EntrySink {
  private readonly hash = new ContentHash();
  private readonly cursor: SparseCursor | undefined;
  /** The hashing still running behind the reader, with what waits for it chained on. */
  private behind: Promise<void> | undefined;

  constructor(
    entry: TarEntry,
    private readonly expected: ManifestFile,
    private readonly label: string,
    private readonly checker: ManifestChecker,
  ) {
    if (entry.sparse) this.cursor = new SparseCursor(entry.sparse, entry.size);
  }

  data(chunk: Buffer): void {
    if (!this.cursor) this.hash.update(chunk);
    else this.cursor.feed(chunk, (piece) => this.piece(piece), (_at, length) => this.hole(length));
  }

  end(): void {
    this.cursor?.finish((_at, length) => this.hole(length));
    if (this.behind) this.after(() => this.compare());
    else this.compare();
  }

  private piece(piece: Buffer): void {
    if (!this.behind) {
      this.hash.update(piece);
      return;
    }
    const copy = Buffer.from(piece);
    this.checker.copiedBytes += copy.length;
    this.after(() => this.hash.update(copy));
  }

  private hole(length: number): void {
    const stop = this.checker.hashingStopped;
    if (this.behind) {
      this.after(() => this.hash.zeros(length, stop));
      return;
    }
    const turns = this.hash.zeros(length, stop);
    if (turns) this.runBehind(turns);
  }

  private after(step: () => Promise<void> | void): void {
    this.runBehind(this.behind!.then(step));
  }

  /** Once the last work chained on is done, later pieces are hashed at once again. */
  private runBehind(work: Promise<void>): void {
    this.behind = work;
    this.checker.hashesBehind(work);
    work.then(
      () => {
        if (this.behind === work) this.behind = undefined;
      },
      () => undefined,
    );
  }

  private compare(): void {
    if (this.hash.digest() !== this.expected.sha256) {
      throw new IntegrityError(`${this.label}: content of ${displayName(this.expected.path)} does not match its checksum in the manifest; the archive is damaged`, 'CONTENT');
    }
  }
}

/** Both visitors see every entry; data goes to both sinks (checker first, so bad data is caught as it arrives). */
export function bothVisitors(first: TarVisitor, second: TarVisitor): TarVisitor {
  return {
    entry(entry) {
      const a = first.entry(entry);
      const b = second.entry(entry);
      if (!a) return b;
      if (!b) return a;
      return {
        data(chunk) {
          a.data(chunk);
          b.data(chunk);
        },
        end() {
          a.end();
          b.end();
        },
      };
    },
    backpressure() {
      const a = first.backpressure?.();
      const b = second.backpressure?.();
      return a && b ? Promise.all([a, b]).then(() => undefined) : (a ?? b);
    },
    takeCopiedBytes: () => (first.takeCopiedBytes?.() ?? 0) + (second.takeCopiedBytes?.() ?? 0),
    keepsChunks: Boolean(first.keepsChunks || second.keepsChunks),
  };
}

/**
 * Full integrity check of one archive file: every byte read, decompressed to the tar end
 * marker, every entry compared with the manifest, the checksum compared at the end.
 * An optional extra visitor (restore's extractor) rides along on the same single read.
 */
export async function checkArchive(
  file: string | Readable,
  compression: Compression,
  expectation: Expectation,
  options: { visitor?: TarVisitor; onProgress?: (p: ReadProgress) => void; identities?: readonly AgeIdentity[] } = {},
): Promise<ReadResult & { totalBytes: number; storedBytes: number }> {
  const checker = new ManifestChecker(expectation);
  const visitor = options.visitor ? bothVisitors(checker, options.visitor) : checker;
  let result: ReadResult;
  try {
    result = await readArchive(file, compression, visitor, options.onProgress, options.identities);
    await checker.settled();
  } catch (error) {
    // The manifest's reader holds a descriptor; a failed read must not leak it.
    checker.finishEarly();
    throw error;
  }
  checker.finish(result);
  return { sha256: result.sha256, archiveBytes: result.archiveBytes, tarBytes: result.tarBytes, entries: result.entries, totalBytes: checker.totalBytes, storedBytes: checker.storedBytes };
}
