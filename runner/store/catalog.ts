import { lstat, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { AgeIdentity } from '../archive/age/index.js';
import { decryptToTemporaryFile } from '../archive/encryption.js';
import { type Manifest, type OpenedManifest, openManifest } from '../archive/manifest.js';
import type { Compression } from '../config.js';
import { IntegrityError, UsageError } from '../errors.js';
import { readInfo } from './info.js';
import {
  type ArchiveName,
  PRE_RESTORE_SUFFIX,
  compareNewestFirst,
  compressionFromExtension,
  isEncryptedName,
  infoName,
  manifestName,
  parseArchiveName,
  sha256Name,
} from './naming.js';

/**
 * What is in a backup directory: the archives of one prefix, newest first, with their
 * sidecars and a summary of their manifests. Only names that parse with the naming pattern
 * and whose prefix equals the requested prefix exactly count (prefix `backup` never includes
 * `backup-pre-restore-…`); partials, the lock and anything else are invisible here.
 */

export type VerificationState = 'verified' | 'failed' | 'unverified' | 'no-manifest';

export interface ManifestSummary {
  entryCount: number | undefined;
  /** Regular files among the entries (hard links, directories and symlinks are entries but not files). */
  fileCount: number | undefined;
  totalBytes: number | undefined;
  verification: VerificationState;
  /** ISO time of the last verification, when the manifest records one. */
  verifiedAt?: string;
  /** Why the last verification failed. */
  error?: string;
  /** Set when the manifest exists but cannot be read or parsed (the state is then 'failed'). */
  manifestError?: string;
}

export interface ArchiveInfo extends ArchiveName {
  /** Size of the archive file in bytes. */
  size: number;
  /** File modification time (informational only; never used for ordering). */
  mtime: Date;
  hasSha256: boolean;
  hasManifest: boolean;
  /** An encrypted archive's plain info record is there (always false for plain archives). */
  hasInfo: boolean;
  /** Read when `listArchives(…, { manifests: true })`; otherwise undefined. */
  summary?: ManifestSummary;
}

/** An archive file resolved by explicit name; may be one not made by pvc-backup. */
export interface ResolvedArchive extends ArchiveInfo {
  /** The name does not follow the pvc-backup naming pattern (time is then the file mtime). */
  foreign: boolean;
}

export interface ListOptions {
  /** Read each archive's manifest and fill `summary`. */
  manifests?: boolean;
}

function isErrno(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException)?.code === code;
}

/** What to tell someone who needs an encrypted archive's content but gave no identity. */
export function identityNeeded(archiveName: string, what: string): UsageError {
  return new UsageError(
    `${archiveName} is encrypted with age; ${what} needs its identity: pass --age-identity-file FILE (or PVC_BACKUP_AGE_IDENTITY_FILE; in the chart, encryption.existingSecret and encryption.identityKey)`,
    'AGE_IDENTITY_NEEDED',
  );
}

/**
 * The manifest of an archive without its file list (read from its head and tail only, whatever
 * the number of files); undefined when there is none. IntegrityError when it is not a valid one.
 * An encrypted archive's manifest is decrypted with `identities` (a usage error without them).
 */
export async function readManifest(dest: string, archiveName: string, identities?: readonly AgeIdentity[]): Promise<Manifest | undefined> {
  if (!isEncryptedName(archiveName)) return openArchiveManifest(dest, archiveName)?.manifest;
  const opened = await openEncryptedManifest(dest, archiveName, identities);
  opened?.close();
  return opened?.manifest;
}

/** An encrypted archive's manifest, opened from a private decrypted copy that `close` removes. */
export type DecryptedManifest = OpenedManifest & { close(): void };

/**
 * The manifest of an encrypted archive: decrypted into a private temporary copy (never into
 * DEST) and opened there, so its file list streams as a plain one does. Undefined when there is
 * none; a usage error without identities; IntegrityError when none matches or it is damaged.
 * The caller closes it (and registers the close with the run's cleanup).
 */
export async function openEncryptedManifest(dest: string, archiveName: string, identities: readonly AgeIdentity[] | undefined): Promise<DecryptedManifest | undefined> {
  const file = path.join(dest, manifestName(archiveName));
  if (!(await exists(file))) return undefined;
  if (!identities) throw identityNeeded(archiveName, 'reading its manifest');
  let copy;
  try {
    copy = await decryptToTemporaryFile(file, identities, manifestName(archiveName).replace(/\.age$/, ''));
  } catch (error) {
    // A wrong key is said as it is; damage names the manifest file.
    if (error instanceof IntegrityError && error.code !== 'AGE_NO_MATCH') throw new IntegrityError(`manifest ${file}: ${error.message}`, error.code);
    throw error;
  }
  try {
    return { ...openManifest(copy.file), close: copy.remove };
  } catch (error) {
    copy.remove();
    throw error;
  }
}

/** The manifest of a plain archive with a streaming reader of its file list; undefined when there is none. */
export function openArchiveManifest(dest: string, archiveName: string): OpenedManifest | undefined {
  if (isEncryptedName(archiveName)) throw identityNeeded(archiveName, 'reading its manifest');
  const file = path.join(dest, manifestName(archiveName));
  try {
    return openManifest(file);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
}

/** The verification state of an archive from its manifest (undefined: no manifest); `fileCount` when the manifest does not record it. */
export function summarizeManifest(manifest: Pick<Manifest, 'entryCount' | 'fileCount' | 'totalBytes' | 'verification'> | undefined, fileCount?: number): ManifestSummary {
  if (!manifest) return { entryCount: undefined, fileCount: undefined, totalBytes: undefined, verification: 'no-manifest' };
  const summary: ManifestSummary = {
    entryCount: typeof manifest.entryCount === 'number' ? manifest.entryCount : undefined,
    fileCount: typeof manifest.fileCount === 'number' ? manifest.fileCount : fileCount,
    totalBytes: typeof manifest.totalBytes === 'number' ? manifest.totalBytes : undefined,
    verification: 'unverified',
  };
  const v = manifest.verification;
  if (v && typeof v === 'object') {
    summary.verification = v.ok === true ? 'verified' : 'failed';
    if (typeof v.at === 'string') summary.verifiedAt = v.at;
    if (v.ok !== true && typeof v.error === 'string') summary.error = v.error;
  }
  return summary;
}

async function readSummary(dest: string, name: string): Promise<ManifestSummary> {
  try {
    // An encrypted archive's manifest needs the key: its plain info record has what a summary shows.
    if (isEncryptedName(name)) return summarizeManifest(await readInfo(dest, name));
    const opened = openArchiveManifest(dest, name);
    if (!opened) return summarizeManifest(undefined);
    return summarizeManifest(opened.manifest, typeof opened.manifest.fileCount === 'number' ? undefined : countFiles(opened));
  } catch (error) {
    // One broken manifest must not hide the other archives: report it as a failed state.
    const message = error instanceof Error ? error.message : String(error);
    return { entryCount: undefined, fileCount: undefined, totalBytes: undefined, verification: 'failed', manifestError: message };
  }
}

/** Regular files in a manifest's list, read one entry at a time (manifests that do not record fileCount). */
function countFiles(opened: OpenedManifest): number {
  const reader = opened.files();
  try {
    let files = 0;
    for (let f = reader.next(); f; f = reader.next()) if (f.type === 'file') files++;
    return files;
  } finally {
    reader.close();
  }
}

/** Archives of `prefix` in `dest`, newest first (time in the name, then same-second sequence). */
export async function listArchives(dest: string, prefix: string, options: ListOptions = {}): Promise<ArchiveInfo[]> {
  const names = new Set(await readdir(dest));
  const archives: ArchiveInfo[] = [];
  for (const name of names) {
    const parsed = parseArchiveName(name);
    if (!parsed || parsed.prefix !== prefix) continue;
    let st;
    try {
      // lstat: only regular files are archives. A directory or a symlink with an archive's name
      // was not made by pvc-backup and is never listed, chosen as latest or pruned.
      st = await lstat(path.join(dest, name));
    } catch (error) {
      if (isErrno(error, 'ENOENT')) continue; // pruned while we were listing
      throw error;
    }
    if (!st.isFile()) continue;
    const info: ArchiveInfo = {
      ...parsed,
      size: st.size,
      mtime: st.mtime,
      hasSha256: names.has(sha256Name(name)),
      hasManifest: names.has(manifestName(name)),
      hasInfo: parsed.encrypted && names.has(infoName(name)),
    };
    if (options.manifests) info.summary = info.hasManifest || info.hasInfo ? await readSummary(dest, name) : summarizeManifest(undefined);
    archives.push(info);
  }
  return archives.sort(compareNewestFirst);
}

function noArchive(dest: string, what: string): UsageError {
  return new UsageError(`no archive ${what} in ${dest}; run pvc-backup list --dest ${dest}`, 'NO_ARCHIVE');
}

/** Every prefix that has archives in DEST, with how many, sorted by name. */
export async function prefixesIn(dest: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const entry of await readdir(dest, { withFileTypes: true })) {
    const parsed = entry.isFile() ? parseArchiveName(entry.name) : undefined;
    if (parsed) counts.set(parsed.prefix, (counts.get(parsed.prefix) ?? 0) + 1);
  }
  return new Map([...counts].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/**
 * What to tell someone who found no archives of `prefix`: the prefixes DEST does hold, and how
 * to pick one. Empty when DEST holds none at all.
 */
export async function otherPrefixesHint(dest: string, prefix: string): Promise<string> {
  const others = [...(await prefixesIn(dest))].filter(([p]) => p !== prefix);
  if (others.length === 0) return '';
  const listed = others.map(([p, n]) => `${p} (${n})`).join(', ');
  return `; ${dest} holds archives with prefix ${listed}: pick one with --prefix NAME (or PVC_BACKUP_PREFIX)`;
}

export interface PrefixChoice {
  prefix: string;
  /** Set when the prefix was picked because it is the only one in DEST: say so. */
  picked?: string;
}

/**
 * The prefix list, verify and restore work on. An explicit --prefix is used as given; the
 * default (`backup`) too when it has archives. Otherwise, when DEST holds archives of exactly
 * one prefix (pre-restore snapshot prefixes aside), that one is used, and `picked` says so.
 */
export async function choosePrefix(dest: string, prefix: string, defaulted: boolean | undefined): Promise<PrefixChoice> {
  if (!defaulted) return { prefix };
  const prefixes = await prefixesIn(dest);
  if (prefixes.has(prefix)) return { prefix };
  const candidates = [...prefixes.keys()].filter((p) => !p.endsWith(PRE_RESTORE_SUFFIX));
  if (candidates.length !== 1) return { prefix };
  const only = candidates[0]!;
  return { prefix: only, picked: `no --prefix given and ${dest} holds no archives with prefix ${prefix}; using prefix ${only}, the only one there` };
}

/**
 * Resolves `latest` to the newest archive of the prefix, or an explicit file name in DEST.
 * An explicit name may be of another prefix (e.g. a pre-restore snapshot) or not made by
 * pvc-backup at all (`foreign`, e.g. from a plain `tar czf`), as long as it is a tar file.
 * Throws a one-line UsageError when there is no such archive.
 */
export async function findArchive(dest: string, prefix: string, nameOrLatest: string): Promise<ResolvedArchive> {
  if (nameOrLatest === 'latest') {
    const [newest] = await listArchives(dest, prefix);
    if (!newest) throw new UsageError(`no archive with prefix ${prefix} in ${dest}${(await otherPrefixesHint(dest, prefix)) || `; run pvc-backup list --dest ${dest}`}`, 'NO_ARCHIVE');
    return { ...newest, foreign: false };
  }
  const name = nameOrLatest;
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\\')) {
    throw new UsageError(`"${name}" is not an archive name; give a file name in ${dest} or latest`);
  }
  let st;
  try {
    st = await stat(path.join(dest, name));
  } catch (error) {
    if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) throw noArchive(dest, `named ${name}`);
    throw error;
  }
  if (!st.isFile()) throw noArchive(dest, `named ${name}`);
  const [hasSha256, hasManifest, infoThere] = await Promise.all([
    exists(path.join(dest, sha256Name(name))),
    exists(path.join(dest, manifestName(name))),
    exists(path.join(dest, infoName(name))),
  ]);
  const hasInfo = isEncryptedName(name) && infoThere;
  const parsed = parseArchiveName(name);
  if (parsed) return { ...parsed, size: st.size, mtime: st.mtime, hasSha256, hasManifest, hasInfo, foreign: false };
  const compression: Compression | undefined = compressionFromExtension(name);
  if (!compression) throw new UsageError(`${name} in ${dest} is not a tar archive (.tar, .tar.gz, .tgz, .tar.zst, .tzst, each optionally .age)`);
  const encrypted = isEncryptedName(name);
  return { name, prefix: '', time: st.mtime, sequence: 1, compression, encrypted, size: st.size, mtime: st.mtime, hasSha256, hasManifest, hasInfo, foreign: true };
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return false;
    throw error;
  }
}
