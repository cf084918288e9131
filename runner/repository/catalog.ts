import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Manifest } from '../archive/manifest.js';
import { UsageError } from '../errors.js';
import { type ArchiveInfo, type ManifestSummary, openArchiveManifest, readManifest, summarizeManifest } from '../store/catalog.js';
import { type InfoRecord, parseInfo, readInfo } from '../store/info.js';
import { infoName, manifestName } from '../store/naming.js';
import { LocalRepository } from './local.js';
import { type ArchiveEntry, type Repository, readText } from './repository.js';

/**
 * The catalog of any repository (directory or bucket), in the shapes the commands already use
 * for the directory (ArchiveInfo, ManifestSummary), so list, verify, prune and restore read one
 * catalog whichever repository holds the archives.
 */

/** The parsed manifest of an archive in the repository; undefined when there is none. */
export async function readRepositoryManifest(repository: Repository, name: string): Promise<Manifest | undefined> {
  if (repository instanceof LocalRepository) return readManifest(repository.dir, name);
  const copy = await manifestFile(repository, name);
  if (!copy) return undefined;
  try {
    return openArchiveManifest(path.dirname(copy.file), name)?.manifest;
  } finally {
    copy.dispose();
  }
}

/**
 * What list and retention read of an archive: its manifest, or for an encrypted archive (whose
 * manifest needs the key) its plain info record. undefined when there is none.
 */
export async function readRepositoryRecord(repository: Repository, archive: { name: string; encrypted: boolean }): Promise<Manifest | InfoRecord | undefined> {
  return archive.encrypted ? readRepositoryInfo(repository, archive.name) : readRepositoryManifest(repository, archive.name);
}

/** An encrypted archive's plain info record, from the directory or the bucket; undefined when missing. */
export async function readRepositoryInfo(repository: Repository, name: string): Promise<InfoRecord | undefined> {
  if (repository instanceof LocalRepository) return readInfo(repository.dir, name);
  const text = await readText(repository, infoName(name));
  return text === undefined ? undefined : parseInfo(text, `${repository.location}/${infoName(name)}`);
}

export function toArchiveInfo(entry: ArchiveEntry): ArchiveInfo {
  const { modified, ...rest } = entry;
  return { ...rest, mtime: modified };
}

async function summaryOf(repository: Repository, archive: ArchiveInfo): Promise<ManifestSummary> {
  try {
    return summarizeManifest(await readRepositoryRecord(repository, archive));
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { entryCount: undefined, fileCount: undefined, totalBytes: undefined, verification: 'failed', manifestError: message };
  }
}

export interface RepositoryCatalog {
  /** Archives with a manifest (a bucket counts only those), newest first. */
  archives: ArchiveInfo[];
  /** Bucket archive objects without a manifest object: never valid, never `latest`, not counted. */
  incomplete: ArchiveInfo[];
}

/** The archives of `prefix`, optionally with their manifest summaries. */
export async function catalogOf(repository: Repository, prefix: string, options: { manifests?: boolean } = {}): Promise<RepositoryCatalog> {
  const listing = await repository.list(prefix);
  const archives = listing.archives.map(toArchiveInfo);
  const incomplete = listing.incomplete.map(toArchiveInfo);
  if (options.manifests) {
    for (const a of archives) a.summary = a.hasManifest ? await summaryOf(repository, a) : summarizeManifest(undefined);
    for (const a of incomplete) a.summary = summarizeManifest(undefined);
  }
  return { archives, incomplete };
}

/**
 * `latest` (the newest archive with a manifest) or an archive of the prefix by name. An
 * incomplete archive named explicitly is returned as it is (without a manifest: the caller's
 * checks refuse it with their own message); one that is not there is a usage error.
 */
export async function findInRepository(repository: Repository, prefix: string, nameOrLatest: string): Promise<ArchiveInfo> {
  const { archives, incomplete } = await catalogOf(repository, prefix);
  if (nameOrLatest === 'latest') {
    const newest = archives[0];
    if (!newest) {
      const note = incomplete.length > 0 ? ` (${incomplete.length} incomplete: an upload without its manifest, e.g. ${incomplete[0]!.name})` : '';
      throw new UsageError(`no archive with prefix ${prefix} in ${repository.location}${note}; run pvc-backup list --remote ${repository.location}`, 'NO_ARCHIVE');
    }
    return newest;
  }
  const found = [...archives, ...incomplete].find((a) => a.name === nameOrLatest);
  if (found) return found;
  const info = await repository.stat(nameOrLatest);
  if (info) {
    throw new UsageError(`${nameOrLatest} in ${repository.location} is not an archive of prefix ${prefix}; pass --prefix with its prefix`, 'NO_ARCHIVE');
  }
  throw new UsageError(`no archive named ${nameOrLatest} in ${repository.location}; run pvc-backup list --remote ${repository.location}`, 'NO_ARCHIVE');
}

/** A manifest as a local file, for the readers that stream it; `dispose` removes a downloaded copy. */
export interface ManifestFile {
  file: string;
  dispose(): void;
}

/**
 * The archive's manifest as a file: the directory's own, or the bucket's object streamed into a
 * scratch file of its own in the temporary directory (mode 0600; a manifest can be tens of MB,
 * never held whole in memory). Undefined when there is none.
 */
export async function manifestFile(repository: Repository, name: string, signal?: AbortSignal): Promise<ManifestFile | undefined> {
  if (repository instanceof LocalRepository) {
    const file = path.join(repository.dir, manifestName(name));
    return fs.existsSync(file) ? { file, dispose: () => {} } : undefined;
  }
  if ((await repository.stat(manifestName(name))) === undefined) return undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-manifest-'));
  const dispose = () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    const file = path.join(dir, manifestName(name));
    const handle = await repository.read(manifestName(name), { signal });
    await pipeline(handle.stream, fs.createWriteStream(file, { flags: 'wx', mode: 0o600 }));
    return { file, dispose };
  } catch (error) {
    dispose();
    throw error;
  }
}
