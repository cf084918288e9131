import type { ListConfig, OnBucket } from '../config.js';
import { type Logger, count, humanBytes } from '../log.js';
import { catalogOf } from '../repository/catalog.js';
import { openRepository } from '../repository/open.js';
import { type ArchiveInfo, choosePrefix, listArchives, otherPrefixesHint } from '../store/catalog.js';
import { compareNewestFirst, infoName, manifestName, sha256Name } from '../store/naming.js';

/** One archive in `pvc-backup list --json` output. Field names are part of the public interface. */
export interface ListedArchive {
  name: string;
  /** UTC start of the run, from the name: `YYYY-MM-DDTHH:MM:SSZ`. */
  createdAt: string;
  /** Size of the archive file. */
  bytes: number;
  /** Regular files in the archive (from the manifest), null without a readable manifest. */
  files: number | null;
  /** Entries in the archive — files, directories, symlinks, hard links (from the manifest), null without a readable manifest. */
  entries: number | null;
  /** Uncompressed bytes of regular files (from the manifest), null without a readable manifest. */
  totalBytes: number | null;
  compression: string;
  verified: 'verified' | 'failed' | 'unverified' | 'no-manifest';
  /** ISO time of the last verification, null when never verified. */
  verifiedAt: string | null;
  sha256File: string | null;
  manifestFile: string | null;
  /** Encrypted with age: the manifest is encrypted too, and the counts come from the plain info record. */
  encrypted: boolean;
  /** The plain info record of an encrypted archive, null for plain archives or when it is missing. */
  infoFile: string | null;
}

function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function toListed(archive: ArchiveInfo): ListedArchive {
  const summary = archive.summary;
  return {
    name: archive.name,
    createdAt: isoSeconds(archive.time),
    bytes: archive.size,
    files: summary?.fileCount ?? null,
    entries: summary?.entryCount ?? null,
    totalBytes: summary?.totalBytes ?? null,
    compression: archive.compression,
    verified: summary?.verification ?? (archive.hasManifest || archive.hasInfo ? 'unverified' : 'no-manifest'),
    verifiedAt: summary?.verifiedAt ?? null,
    sha256File: archive.hasSha256 ? sha256Name(archive.name) : null,
    manifestFile: archive.hasManifest ? manifestName(archive.name) : null,
    encrypted: archive.encrypted,
    infoFile: archive.hasInfo ? infoName(archive.name) : null,
  };
}

/** Formats rows as a left-aligned table with a header (numbers right-aligned). */
export function formatTable(rows: ListedArchive[]): string[] {
  const header = ['NAME', 'CREATED (UTC)', 'SIZE', 'FILES', 'VERIFIED'];
  const cells = rows.map((r) => [
    r.name,
    r.createdAt.replace('T', ' ').replace(/Z$/, ''),
    humanBytes(r.bytes),
    r.files === null ? '-' : String(r.files),
    r.verified,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const rightAligned = new Set([2, 3]);
  const line = (c: string[]) =>
    c
      .map((cell, i) => (rightAligned.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...cells.map(line)];
}

/**
 * `pvc-backup list`: archives of the prefix, newest first, printed through `out` (stdout data,
 * not log lines). A table for people, or with `--json` one JSON array. Takes no lock.
 */
export async function runList(config: ListConfig | OnBucket<ListConfig>, log: Logger, out: (line: string) => void): Promise<ListedArchive[]> {
  if (config.dest === undefined) return listBucket(config, log, out);
  const { prefix, picked } = await choosePrefix(config.dest, config.prefix, config.prefixDefaulted);
  // JSON output stays one JSON document: the note is for people.
  if (picked && !config.json) log.info('list.prefix', picked, { prefix });
  const archives = await listArchives(config.dest, prefix, { manifests: true });
  for (const a of archives) {
    if (a.summary?.manifestError) {
      log.warn('list.manifest-unreadable', a.summary.manifestError, { archive: a.name });
    }
  }
  const rows = archives.map(toListed);
  if (config.json) {
    out(JSON.stringify(rows, null, 2));
    return rows;
  }
  if (rows.length === 0) {
    out(`no archives with prefix ${prefix} in ${config.dest}${await otherPrefixesHint(config.dest, prefix)}`);
    return rows;
  }
  for (const line of formatTable(rows)) out(line);
  const total = rows.reduce((sum, r) => sum + r.bytes, 0);
  out(`${count(rows.length, 'archive')}, ${humanBytes(total)}`);
  return rows;
}

/**
 * `list --remote`: the bucket's archives of the prefix, newest first, in the same table and
 * JSON. Archive objects without a manifest object (an upload stopped before its manifest, or a
 * manifest deleted) are listed as `no-manifest` with a warning: they are never valid or latest.
 */
async function listBucket(config: OnBucket<ListConfig>, log: Logger, out: (line: string) => void): Promise<ListedArchive[]> {
  const repository = await openRepository({ kind: 'bucket', settings: config.remote });
  const { archives, incomplete } = await catalogOf(repository, config.prefix, { manifests: true });
  for (const a of archives) {
    if (a.summary?.manifestError) log.warn('list.manifest-unreadable', a.summary.manifestError, { archive: a.name });
  }
  for (const a of incomplete) {
    log.warn('list.incomplete', `${a.name} in ${repository.location} has no manifest object (an interrupted upload or a deleted manifest); it is never used as latest`, { archive: a.name });
  }
  const rows = [...archives, ...incomplete].sort(compareNewestFirst).map(toListed);
  if (config.json) {
    out(JSON.stringify(rows, null, 2));
    return rows;
  }
  if (rows.length === 0) {
    out(`no archives with prefix ${config.prefix} in ${repository.location}`);
    return rows;
  }
  for (const line of formatTable(rows)) out(line);
  out(`${count(rows.length, 'archive')}, ${humanBytes(rows.reduce((sum, r) => sum + r.bytes, 0))}`);
  return rows;
}
