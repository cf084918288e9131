import { ManifestChecker } from '../archive/check.js';
import { serializeManifest } from '../archive/manifest.js';
import { scanSource } from '../archive/preflight.js';
import { excludeMatcher } from '../archive/walk.js';
import { type BackupSummary, buildManifest, checkScan, round, write } from '../commands/backup.js';
import type { BucketBackupConfig } from '../config.js';
import type { RunContext } from '../context.js';
import { count, humanBytes } from '../log.js';
import type { Repository } from '../repository/repository.js';
import { compareNewestFirst } from '../store/naming.js';
import { pickArchiveName } from './name.js';
import { pruneBucket, underBucketLock } from './offsite.js';

/**
 * Layout (b), `backup --remote` without --dest: the archive streams straight into the bucket
 * (no local copy, no temporary file of archive size; memory bounded by the upload's parts in
 * flight). The proof is the one a local backup makes while writing: every compressed piece
 * decoded back (compress.ts), the tar stream parsed back to its end marker and checked entry by
 * entry against the manifest, the SHA-256 computed on the bytes sent; then the bucket's commit
 * checks size and stored sha256 with HEAD, and writes `.sha256` and, last, the manifest. Then
 * the bucket's retention runs.
 *
 * Steps: lock → abort leftover uploads → scan → name from the bucket's listing →
 * createArchive(sizeHint) → pack/compress/append+drain → check → commit → prune.
 */
export async function backupToBucket(config: BucketBackupConfig, ctx: RunContext): Promise<BackupSummary> {
  return underBucketLock(config.offsite, 'backup', config.lockStaleSeconds, ctx, (bucket) => backupInto(bucket, config, ctx));
}

async function backupInto(bucket: Repository, config: BucketBackupConfig, ctx: RunContext): Promise<BackupSummary> {
  const { log } = ctx;
  const started = ctx.now();
  const exclude = excludeMatcher(config.excludes);
  const scan = scanSource(config.source, exclude);
  checkScan(config, scan, ctx);
  const name = await chooseName(bucket, config, started, ctx);
  log.info('backup.start', `backing up ${config.source} (${humanBytes(scan.bytes)} in ${count(scan.files, 'file')}) into ${bucket.location}/${name}`, {
    archive: name,
    source: config.source,
    remote: bucket.location,
    compression: config.compression,
    compressionLevel: config.level,
    sourceBytes: scan.bytes,
    files: scan.files,
  });
  // The source size bounds the archive (plus tar headers): enough for the part plan.
  const sink = await bucket.createArchive(name, { sizeHint: Math.ceil(scan.bytes * 1.05) + scan.entries * 1024 + 1024 * 1024, signal: ctx.signal });
  try {
    const written = await write(config, exclude, sink, scan.bytes, ctx);
    for (const warning of written.warnings) log.warn('backup.file-warning', `${warning.path}: ${warning.problem}`, { ...warning });
    const manifest = buildManifest(config, name, started, written, ctx);
    const checker = new ManifestChecker({ label: name, sha256: manifest.sha256, manifest, contentHashes: false });
    for (const entry of written.entries) checker.entry(entry);
    checker.finish({ sha256: written.sha256, archiveBytes: sink.bytes, tarBytes: written.tarBytes, entries: written.entries.length });
    manifest.verification = { at: ctx.now().toISOString(), ok: true };
    manifest.durationSeconds = round((ctx.now().getTime() - started.getTime()) / 1000);
    const stored = await sink.commit({ sha256: written.sha256, manifest: serializeManifest(manifest) });
    log.info('backup.verified', `${name} verified while uploading and checked in ${bucket.location}: ${count(manifest.entryCount, 'entry')}, sha256 ${stored.sha256}`, {
      archive: name,
      location: stored.location,
    });
    await pruneBucket(bucket, config.prefix, config.offsite, ctx);
    const summary: BackupSummary = {
      archive: name,
      bytesIn: written.totalBytes,
      bytesOut: written.archiveBytes,
      files: written.files.filter((f) => f.type === 'file').length,
      entries: written.files.length,
      sha256: written.sha256,
      durationSeconds: round((ctx.now().getTime() - started.getTime()) / 1000),
      warnings: written.warnings.length,
      remote: stored.location,
    };
    log.info(
      'backup.done',
      `backup ${name} complete in ${bucket.location}: ${humanBytes(summary.bytesIn)} in ${count(summary.files, 'file')} -> ${humanBytes(summary.bytesOut)} in ${summary.durationSeconds}s`,
      { ...summary },
    );
    return summary;
  } catch (error) {
    await sink.abort();
    throw error;
  }
}

async function chooseName(bucket: Repository, config: BucketBackupConfig, started: Date, ctx: RunContext): Promise<string> {
  // Incomplete uploads and orphaned sidecars hold their names too: a new archive never takes one.
  const listing = await bucket.list(config.prefix);
  const all = [...listing.archives, ...listing.incomplete].sort(compareNewestFirst);
  const taken = new Set([...all.map((a) => a.name), ...listing.orphans]);
  return pickArchiveName({ prefix: config.prefix, compression: config.compression, started, newest: all[0], taken: (n) => taken.has(n), log: ctx.log });
}
