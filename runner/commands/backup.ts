import fs from 'node:fs';
import path from 'node:path';
import { ManifestChecker } from '../archive/check.js';
import { formatChecksumFile, hashFile } from '../archive/hash.js';
import { MANIFEST_FORMAT, type Manifest, serializeManifest } from '../archive/manifest.js';
import { checkFreeSpace, describeProblems, scanSource } from '../archive/preflight.js';
import { excludeMatcher } from '../archive/walk.js';
import { type WrittenArchive, writeArchive } from '../archive/write.js';
import type { BackupConfig, BucketBackupConfig } from '../config.js';
import type { RunContext } from '../context.js';
import { OperationError, UsageError } from '../errors.js';
import { ProgressReporter, count, humanBytes } from '../log.js';
import { fsyncDirectory, removeLeftoverPartials, writeFileAtomicSync } from '../store/atomic.js';
import { listArchives, readManifest } from '../store/catalog.js';
import { acquireLock, logLockWarnings } from '../store/lock.js';
import { archiveFileName, manifestName, partialName, sha256Name } from '../store/naming.js';
import { pickArchiveName } from '../backup/name.js';
import { copyOffsite } from '../backup/offsite.js';
import { backupToBucket } from '../backup/to-bucket.js';
import type { ArchiveSink } from '../repository/repository.js';
import { pruneArchives } from './prune.js';

export interface BackupSummary {
  archive: string;
  bytesIn: number;
  bytesOut: number;
  files: number;
  entries: number;
  sha256: string;
  durationSeconds: number;
  warnings: number;
  /** Where the bucket copy lives (`s3://…`), with --remote. */
  remote?: string;
}

/**
 * One backup run, as ordered steps: lock → clean leftovers → preflight → write (tar →
 * compress → hidden partial, hashed in the same pass) → verify the partial → publish
 * (sidecars, then rename) → prune → unlock. Anything that needs undoing is registered with
 * the cleanup list the moment it exists, so a failure or a signal leaves nothing half-made.
 */
export async function runBackup(config: BackupConfig | BucketBackupConfig, ctx: RunContext): Promise<BackupSummary> {
  if (config.dest === undefined) return backupToBucket(config, ctx);
  const lock = await acquireLock(config.dest, { command: 'backup', staleSeconds: config.lockStaleSeconds, onWarning: logLockWarnings(ctx.log) });
  const forgetLock = ctx.cleanup.add('release the lock', () => lock.releaseSync());
  try {
    await removeLeftovers(config.dest, ctx);
    const summary = await backupUnderLock(config, ctx);
    // The off-site copy of the archive just made and proven (with --dest and --remote).
    if (config.offsite) summary.remote = (await copyOffsite(config.dest, summary.archive, config.prefix, config.offsite, config.lockStaleSeconds, ctx)).location;
    return summary;
  } finally {
    await lock.release();
    forgetLock();
  }
}

/**
 * The backup steps after the lock: for callers that already hold the directory lock (restore
 * takes its pre-restore snapshot this way).
 */
export async function backupUnderLock(config: BackupConfig, ctx: RunContext): Promise<BackupSummary> {
  const { log } = ctx;
  const started = ctx.now();
  const exclude = excludeMatcher(config.excludes);
  const scan = await preflight(config, exclude, ctx);
  const name = await chooseName(config, started, ctx);
  log.info('backup.start', `backing up ${config.source} (${humanBytes(scan.bytes)} in ${count(scan.files, 'file')}) into ${name}`, {
    archive: name,
    source: config.source,
    dest: config.dest,
    compression: config.compression,
    compressionLevel: config.level,
    sourceBytes: scan.bytes,
    files: scan.files,
  });
  const partial = path.join(config.dest, partialName(name));
  const forgetPartial = ctx.cleanup.add('remove the partial archive', () => fs.rmSync(partial, { force: true }));
  const written = await write(config, exclude, partial, scan.bytes, ctx);
  for (const warning of written.warnings) log.warn('backup.file-warning', `${warning.path}: ${warning.problem}`, { ...warning });
  const manifest = buildManifest(config, name, started, written, ctx);
  await verifyPartial(partial, written, manifest, ctx);
  manifest.durationSeconds = round((ctx.now().getTime() - started.getTime()) / 1000);
  await publish(config.dest, name, partial, manifest, ctx);
  forgetPartial();
  if (config.retention) await pruneArchives(config.dest, config.prefix, config.retention, { dryRun: false, log });
  const summary: BackupSummary = {
    archive: name,
    bytesIn: written.totalBytes,
    bytesOut: written.archiveBytes,
    files: written.files.filter((f) => f.type === 'file').length,
    entries: written.files.length,
    sha256: written.sha256,
    durationSeconds: round((ctx.now().getTime() - started.getTime()) / 1000),
    warnings: written.warnings.length,
  };
  log.info(
    'backup.done',
    `backup ${name} complete: ${humanBytes(summary.bytesIn)} in ${count(summary.files, 'file')} -> ${humanBytes(summary.bytesOut)} in ${summary.durationSeconds}s` +
      (summary.warnings ? ` (${count(summary.warnings, 'entry')} changed or skipped while reading; see warnings)` : ''),
    { ...summary },
  );
  return summary;
}

async function removeLeftovers(dest: string, ctx: RunContext): Promise<void> {
  const removed = await removeLeftoverPartials(dest);
  for (const name of removed) ctx.log.warn('backup.leftover-removed', `removed ${name}, left over by an interrupted run`, { file: name });
}

async function preflight(config: BackupConfig, exclude: ReturnType<typeof excludeMatcher>, ctx: RunContext) {
  const destStat = fs.statSync(config.dest);
  const scan = scanSource(config.source, exclude, { dev: destStat.dev, ino: destStat.ino });
  if (scan.contains !== undefined) {
    throw new UsageError(
      `--dest ${config.dest} is inside --source ${config.source} (it appears there as ${scan.contains}, through a bind mount or another mount of the same volume); the backup would archive itself, use a directory outside the source or exclude ${scan.contains}`,
      'DEST_IN_SOURCE',
    );
  }
  checkScan(config, scan, ctx);
  const previous = (await listArchives(config.dest, config.prefix))[0];
  const previousManifest = previous ? await readManifest(config.dest, previous.name).catch(() => undefined) : undefined;
  const ratio = previousManifest && previousManifest.archiveBytes > 0 ? previousManifest.totalBytes / previousManifest.archiveBytes : undefined;
  checkFreeSpace(config.dest, scan.bytes, config.compression === 'none' ? 1 : ratio, config.compression !== 'none');
  return scan;
}

/**
 * What the source scan found that stops the run (unreadable entries without --skip-unreadable,
 * an empty source without --allow-empty) or is worth a warning. Shared with the bucket-only backup.
 */
export function checkScan(config: BackupConfig | BucketBackupConfig, scan: ReturnType<typeof scanSource>, ctx: RunContext): void {
  if (scan.problems.length > 0) {
    const list = describeProblems(scan.problems);
    if (!config.skipUnreadable) {
      // The failure line names the first few; every one gets its own line, so none goes unnamed.
      for (const problem of scan.problems) {
        ctx.log.error('backup.cannot-archive', `cannot archive ${problem.path}: ${problem.problem}`, { path: problem.path, problem: problem.problem });
      }
      throw new OperationError(
        `${count(scan.problems.length, 'entry')} in ${config.source} cannot be archived: ${list}; fix permissions, exclude them with --exclude, or pass --skip-unreadable to skip them with a warning`,
        'SOURCE_UNREADABLE',
      );
    }
    ctx.log.warn('backup.skipping', `skipping ${count(scan.problems.length, 'entry')} that cannot be archived: ${list}`, { count: scan.problems.length });
  }
  if (scan.empty && !config.allowEmpty) {
    throw new OperationError(
      `source ${config.source} is empty; refusing to make an empty archive that would push real backups out of keep-last (is the volume mounted?). Pass --allow-empty if this is intended`,
      'EMPTY_SOURCE',
    );
  }
}

async function chooseName(config: BackupConfig, started: Date, ctx: RunContext): Promise<string> {
  const newest = (await listArchives(config.dest, config.prefix))[0];
  const taken = (name: string) => fs.existsSync(path.join(config.dest, name));
  return pickArchiveName({ prefix: config.prefix, compression: config.compression, started, newest, taken, log: ctx.log });
}

export async function write(config: BackupConfig | BucketBackupConfig, exclude: ReturnType<typeof excludeMatcher>, partial: string | ArchiveSink, sourceBytes: number, ctx: RunContext): Promise<WrittenArchive> {
  let progress = { bytesRead: 0, files: 0, archiveBytes: 0 };
  const reporter = new ProgressReporter(ctx.log, 'backup.progress', config.progressSeconds, () => ({
    bytes: progress.bytesRead,
    files: progress.files,
    message: `read ${humanBytes(progress.bytesRead)} of ${humanBytes(sourceBytes)} in ${count(progress.files, 'file')}, archive ${humanBytes(progress.archiveBytes)}`,
  })).start();
  try {
    return await writeArchive({
      source: config.source,
      exclude,
      skipUnreadable: config.skipUnreadable,
      compression: config.compression,
      level: config.level,
      file: partial,
      sourceBytes,
      signal: ctx.signal,
      onProgress: (p) => (progress = p),
    });
  } finally {
    reporter.stop();
  }
}

export function buildManifest(config: BackupConfig | BucketBackupConfig, name: string, started: Date, written: WrittenArchive, ctx: RunContext): Manifest {
  return {
    format: MANIFEST_FORMAT,
    prefix: config.prefix,
    archive: name,
    createdAt: started.toISOString(),
    source: config.source,
    compression: config.compression,
    level: config.level,
    archiveBytes: written.archiveBytes,
    sha256: written.sha256,
    tarBytes: written.tarBytes,
    entryCount: written.files.length,
    totalBytes: written.totalBytes,
    excludes: config.excludes,
    warnings: written.warnings,
    runnerVersion: ctx.version,
    durationSeconds: 0,
    files: written.files,
  };
}

/**
 * Proves the new archive before it gets its name: every compressed piece was already decoded
 * back to its input while writing (compress.ts), the tar stream was parsed back to its end
 * marker, and here every entry is checked against the manifest and the file on disk is read
 * back and must have the SHA-256 computed while writing. A bad archive never becomes visible.
 */
async function verifyPartial(partial: string, written: WrittenArchive, manifest: Manifest, ctx: RunContext): Promise<void> {
  const started = Date.now();
  const checker = new ManifestChecker({ label: manifest.archive, sha256: manifest.sha256, manifest, contentHashes: false });
  for (const entry of written.entries) checker.entry(entry);
  const onDisk = await hashFile(partial);
  checker.finish({ sha256: onDisk.sha256, archiveBytes: onDisk.bytes, tarBytes: written.tarBytes, entries: written.entries.length });
  manifest.verification = { at: ctx.now().toISOString(), ok: true };
  ctx.log.info('backup.verified', `${manifest.archive} verified: ${count(manifest.entryCount, 'entry')}, sha256 ${manifest.sha256}`, {
    archive: manifest.archive,
    seconds: round((Date.now() - started) / 1000),
  });
}

/** Checksum and manifest first (each written atomically), then the archive's rename makes it visible. */
async function publish(dest: string, name: string, partial: string, manifest: Manifest, ctx: RunContext): Promise<void> {
  // The sidecars and the hidden partials writeFileAtomic writes them through: a signal may land mid-write.
  const sidecars = [sha256Name(name), manifestName(name)].flatMap((n) => [n, partialName(n)]).map((n) => path.join(dest, n));
  const forgetSidecars = ctx.cleanup.add('remove the sidecars', () => sidecars.forEach((f) => fs.rmSync(f, { force: true })));
  try {
    // Synchronous writes: a signal lands between them, never during one, so the cleanup above always works.
    writeFileAtomicSync(dest, sha256Name(name), formatChecksumFile(manifest.sha256, name));
    writeFileAtomicSync(dest, manifestName(name), serializeManifest(manifest));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException)?.code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') throw error;
    throw new OperationError(
      `the backup volume is full: the archive had reached ${humanBytes(manifest.archiveBytes)} and was verified, but there was no room left for its checksum and manifest files; ` +
        'free space (lower keep-last or delete old archives) or give the backup volume more room (storage.size)',
      'NO_SPACE',
      { cause: error },
    );
  }
  fs.renameSync(partial, path.join(dest, name));
  forgetSidecars();
  await fsyncDirectory(dest);
}

export function round(n: number): number {
  return Math.round(n * 100) / 100;
}
