import type { Readable } from 'node:stream';
import type { Compression } from '../config.js';
import { IntegrityError } from '../errors.js';
import { count } from '../log.js';
import { ContentHash } from './hash.js';
import type { EntryType, Manifest, ManifestFile } from './manifest.js';
import { type ReadProgress, type ReadResult, readArchive } from './read.js';
import type { EntrySink, TarEntry, TarVisitor } from './tar-reader.js';

/** What an archive is expected to be; each part that is given is checked. */
export interface Expectation {
  /** Name used in messages. */
  label: string;
  sha256?: string;
  manifest?: Manifest;
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

/**
 * Compares every entry of the archive, in order, with the manifest's per-file index,
 * including a SHA-256 of each file's content, then the totals.
 */
export class ManifestChecker implements TarVisitor {
  private index = 0;
  totalBytes = 0;

  constructor(private readonly expectation: Expectation) {
    if (expectation.manifest) checkManifestShape(expectation.manifest, expectation.label);
  }

  entry(entry: TarEntry): EntrySink | undefined {
    const { manifest, label } = this.expectation;
    const type = entryTypeOf(entry.type);
    if (type === 'file') this.totalBytes += entry.size;
    if (!manifest) return undefined;
    const expected = manifest.files[this.index++];
    if (!expected) throw new IntegrityError(`${label} holds more entries than its manifest lists (${manifest.files.length}); the archive or manifest was altered`, 'MANIFEST');
    const differ = (what: string, actual: unknown, wanted: unknown) =>
      new IntegrityError(`${label}: entry ${entry.path} differs from the manifest (${what}: archive has ${JSON.stringify(actual)}, manifest says ${JSON.stringify(wanted)})`, 'MANIFEST');
    if (entry.path !== expected.path) throw differ('path', entry.path, expected.path);
    if (type !== expected.type) throw differ('type', type ?? entry.type, expected.type);
    if (entry.size !== expected.size) throw differ('size', entry.size, expected.size);
    if (entry.mode !== expected.mode) throw differ('mode', entry.mode.toString(8), expected.mode.toString(8));
    if (entry.mtime !== expected.mtime) throw differ('mtime', entry.mtime, expected.mtime);
    if (entry.uid !== expected.uid || entry.gid !== expected.gid) throw differ('owner', `${entry.uid}:${entry.gid}`, `${expected.uid}:${expected.gid}`);
    if ((type === 'symlink' || type === 'hardlink') && entry.linkpath !== expected.linkTarget) throw differ('link target', entry.linkpath, expected.linkTarget);
    if (type !== 'file' || this.expectation.contentHashes === false) return undefined;
    return new HashingSink(expected, label);
  }

  /** Checks what can only be known at the end: counts, sizes, the archive checksum. */
  finish(result: ReadResult): void {
    const { manifest, sha256, label } = this.expectation;
    if (sha256 !== undefined && result.sha256 !== sha256) {
      throw new IntegrityError(`${label}: checksum mismatch (file has sha256 ${result.sha256}, expected ${sha256}); the archive is damaged`, 'CHECKSUM');
    }
    if (!manifest) return;
    if (this.index !== manifest.files.length) {
      throw new IntegrityError(`${label} holds ${count(this.index, 'entry')} but its manifest lists ${manifest.files.length}; the archive is incomplete`, 'MANIFEST');
    }
    if (manifest.entryCount !== this.index) {
      throw new IntegrityError(`${label} holds ${count(this.index, 'entry')} but its manifest's entryCount says ${JSON.stringify(manifest.entryCount)}; the manifest was altered`, 'MANIFEST');
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
  }
}

/**
 * A manifest read from disk is untrusted input: one whose structure is not a pvc-backup manifest
 * (no file list, entries that are not objects) is an integrity failure (exit 3) before any
 * byte is read, never a TypeError halfway through (which would map to exit 1).
 */
export function checkManifestShape(manifest: Manifest, label: string): void {
  const bad = (what: string) => new IntegrityError(`${label}: its manifest is not a valid pvc-backup manifest (${what}); the manifest was damaged or altered`, 'MANIFEST');
  if (manifest === null || typeof manifest !== 'object' || Array.isArray(manifest)) throw bad('not a JSON object');
  if (!Array.isArray(manifest.files)) throw bad('"files" is not a list');
  const at = manifest.files.findIndex((f) => f === null || typeof f !== 'object' || Array.isArray(f));
  if (at !== -1) throw bad(`files[${at}] is not an object`);
}

class HashingSink implements EntrySink {
  private readonly hash = new ContentHash();

  constructor(
    private readonly expected: ManifestFile,
    private readonly label: string,
  ) {}

  data(chunk: Buffer): void {
    this.hash.update(chunk);
  }

  end(): void {
    if (this.hash.digest() !== this.expected.sha256) {
      throw new IntegrityError(`${this.label}: content of ${this.expected.path} does not match its checksum in the manifest; the archive is damaged`, 'CONTENT');
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
  options: { visitor?: TarVisitor; onProgress?: (p: ReadProgress) => void } = {},
): Promise<ReadResult & { totalBytes: number }> {
  const checker = new ManifestChecker(expectation);
  const visitor = options.visitor ? bothVisitors(checker, options.visitor) : checker;
  const result = await readArchive(file, compression, visitor, options.onProgress);
  checker.finish(result);
  return { sha256: result.sha256, archiveBytes: result.archiveBytes, tarBytes: result.tarBytes, entries: result.entries, totalBytes: checker.totalBytes };
}
