import type { Compression } from '../config.js';

/** Version of the manifest layout; bump on incompatible change. */
export const MANIFEST_FORMAT = 1;

/** One archived entry of the per-file index. Paths are as stored in the tar (`./…`). */
export interface ManifestFile {
  path: string;
  /** 'file' | 'dir' | 'symlink' | 'hardlink' */
  type: EntryType;
  size: number;
  mode: number;
  /** Seconds since the epoch (integer, as tar stores it). */
  mtime: number;
  uid: number;
  gid: number;
  /** Content hash for regular files (of the bytes stored in the archive). */
  sha256?: string;
  /** Symlink target or hard-link target path. */
  linkTarget?: string;
}

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink';

export interface Verification {
  /** ISO time of the last full verification. */
  at: string;
  ok: boolean;
  /** Why it failed, when it failed. */
  error?: string;
}

export interface Manifest {
  format: number;
  prefix: string;
  archive: string;
  createdAt: string;
  source: string;
  compression: Compression;
  level: number | undefined;
  /** Size of the archive file (compressed). */
  archiveBytes: number;
  /** SHA-256 of the archive file. */
  sha256: string;
  /** Length of the uncompressed tar stream, end-of-archive blocks included. */
  tarBytes: number;
  entryCount: number;
  /** Sum of regular file sizes. */
  totalBytes: number;
  files: ManifestFile[];
  excludes: string[];
  /** Files that changed, appeared, vanished or were skipped while being read (the archive holds what was read). */
  warnings: { path: string; problem: string }[];
  runnerVersion: string;
  durationSeconds: number;
  verification?: Verification;
}

/** Pretty JSON with one line per file, so a manifest of many files stays readable and diffable. */
export function serializeManifest(manifest: Manifest): string {
  const { files, ...head } = manifest;
  const headText = JSON.stringify(head, null, 2);
  const fileLines = files.map((f) => `    ${JSON.stringify(f)}`).join(',\n');
  return `${headText.slice(0, -2)},\n  "files": [\n${fileLines}${files.length ? '\n' : ''}  ]\n}\n`;
}

export function parseManifest(text: string): Manifest {
  const value = JSON.parse(text) as Manifest;
  if (typeof value !== 'object' || value === null || !Array.isArray(value.files) || typeof value.sha256 !== 'string') {
    throw new Error('not a pvc-backup manifest');
  }
  return value;
}
