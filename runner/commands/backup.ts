import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encryptFileInto, proveEncryptedFile } from '../archive/encryption.js';
import { formatChecksumFile } from '../archive/hash.js';
import { MANIFEST_FORMAT, type Manifest, type ManifestHead, type ManifestTail, ManifestWriter } from '../archive/manifest.js';
import { type SourceScan, checkFreeSpace, describeProblems, scanSource } from '../archive/preflight.js';
import { HelperPool } from '../archive/syscall-helper.js';
import { excludeMatcher } from '../archive/walk.js';
import { type WrittenArchive, outputError, writeArchive } from '../archive/write.js';
import type { BackupConfig, BucketBackupConfig } from '../config.js';
import type { RunContext } from '../context.js';
import { IntegrityError, OperationError, UsageError } from '../errors.js';
import { ProgressReporter, count, humanBytes } from '../log.js';
import { fsyncDirectorySync, removeLeftoverPartials, writeFileAtomicSync, writeFileAtomicSyncWith } from '../store/atomic.js';
import { listArchives, readManifest } from '../store/catalog.js';
import { infoFromManifest, readInfo, serializeInfo } from '../store/info.js';
import { acquireLock, logLockWarnings } from '../store/lock.js';
import { infoName, manifestName, partialName, sha256Name, sidecarNames } from '../store/naming.js';
import { type BackupInputs, prepareBackupInputs } from '../consistency/backup-inputs.js';
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
 * One backup run, as ordered steps: lock → clean leftovers → check the pre-backup dumps and copy
 * the --sqlite databases (runner/consistency/backup-inputs.ts) → preflight → write (tar →
 * compress → hidden partial, hashed in the same pass and read back a step behind) → verify the partial → publish
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
  const started = ctx.now();
  // Dumps checked and SQLite databases copied before anything is written (a failure: no archive, nothing pruned).
  const inputs = await prepareBackupInputs(config, excludeMatcher(config.excludes), ctx);
  try {
    return await archiveInputs(config, inputs, started, ctx);
  } finally {
    inputs.release();
  }
}

async function archiveInputs(config: BackupConfig, inputs: BackupInputs, started: Date, ctx: RunContext): Promise<BackupSummary> {
  const { log } = ctx;
  const scan = await preflight(config, inputs, ctx);
  const name = await chooseName(config, started, ctx);
  const what = [config.source, ...inputs.extraTrees.map((t) => t.dir)].filter(Boolean).join(' and ');
  log.info('backup.start', `backing up ${what} (${humanBytes(scan.bytes + inputs.extraBytes)} in ${count(scan.files, 'file')}${inputs.extraTrees.length ? ' and the dumps' : ''}) into ${name}`, {
    archive: name,
    source: config.source,
    dest: config.dest,
    compression: config.compression,
    compressionLevel: config.level,
    sourceBytes: scan.bytes,
    files: scan.files,
    ...(config.recipients ? { encrypted: true, recipients: config.recipients.length } : {}),
  });
  const partial = path.join(config.dest, partialName(name));
  // An encrypted archive's manifest names every file: its plain text goes only to a private
  // temporary directory (never DEST), and is encrypted into DEST when the archive is published.
  const manifestDir = config.recipients ? fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-manifest-')) : undefined;
  const manifestPartial = manifestDir ? path.join(manifestDir, 'manifest.json') : path.join(config.dest, partialName(manifestName(name)));
  const removeManifestPartial = () => fs.rmSync(manifestDir ?? manifestPartial, { recursive: true, force: true });
  const forgetPartial = ctx.cleanup.add('remove the partial archive', () => {
    fs.rmSync(partial, { force: true });
    removeManifestPartial();
  });
  const helper = startHelper(config, ctx);
  const head = manifestHead(config, name, started, ctx);
  const manifest = openManifestWriter(manifestPartial, head, scan.bytes);
  const forgetManifest = ctx.cleanup.add('close the manifest', () => manifest.close());
  let written: WrittenArchive;
  try {
    written = await write(config, inputs, partial, manifest.writer, helper, scan, ctx);
    await verifyPartial(partial, written, name, ctx);
  } catch (error) {
    manifest.close();
    throw error;
  } finally {
    helper?.close();
    forgetManifest();
  }
  publish(config, name, partial, manifest, { ...head, ...manifestTail(written, started, ctx) }, ctx);
  if (manifestDir) removeManifestPartial();
  forgetPartial();
  if (config.retention) await pruneArchives(config.dest, config.prefix, config.retention, { dryRun: false, log });
  const summary = summarize(name, written, started, ctx);
  log.info(
    'backup.done',
    `backup ${name} complete: ${humanBytes(summary.bytesIn)} in ${count(summary.files, 'file')} -> ${humanBytes(summary.bytesOut)} in ${summary.durationSeconds}s` +
      (summary.warnings ? ` (${count(summary.warnings, 'entry')} changed or skipped while reading; see warnings)` : ''),
    { ...summary },
  );
  return summary;
}

/** The run's outcome as the final log line, metrics and notifications report it. */
export function summarize(name: string, written: WrittenArchive, started: Date, ctx: RunContext, remote?: string): BackupSummary {
  return {
    archive: name,
    bytesIn: written.totalBytes,
    bytesOut: written.archiveBytes,
    files: written.files,
    entries: written.entryCount,
    sha256: written.sha256,
    durationSeconds: round((ctx.now().getTime() - started.getTime()) / 1000),
    warnings: written.warnings.length + written.warningsOmitted,
    ...(remote === undefined ? {} : { remote }),
  };
}

/** What the manifest records once the archive is written and proven (its head was written first). */
export function manifestTail(written: WrittenArchive, started: Date, ctx: RunContext): ManifestTail {
  return {
    archiveBytes: written.archiveBytes,
    sha256: written.sha256,
    tarBytes: written.tarBytes,
    entryCount: written.entryCount,
    fileCount: written.files,
    totalBytes: written.totalBytes,
    storedBytes: written.storedBytes,
    frames: written.frames,
    durationSeconds: round((ctx.now().getTime() - started.getTime()) / 1000),
    verification: { at: ctx.now().toISOString(), ok: true },
    warnings: written.warnings,
    warningsOmitted: written.warningsOmitted || undefined,
  };
}

async function removeLeftovers(dest: string, ctx: RunContext): Promise<void> {
  const removed = await removeLeftoverPartials(dest);
  for (const name of removed) ctx.log.warn('backup.leftover-removed', `removed ${name}, left over by an interrupted run`, { file: name });
}

async function preflight(config: BackupConfig, inputs: BackupInputs, ctx: RunContext) {
  const destStat = fs.statSync(config.dest);
  const scan = scanSource(inputs.root, inputs.exclude, { dev: destStat.dev, ino: destStat.ino });
  if (scan.contains !== undefined) {
    throw new UsageError(
      `--dest ${config.dest} is inside --source ${config.source} (it appears there as ${scan.contains}, through a bind mount or another mount of the same volume); the backup would archive itself, use a directory outside the source or exclude ${scan.contains}`,
      'DEST_IN_SOURCE',
    );
  }
  checkScan(config, scan, ctx);
  const previous = (await listArchives(config.dest, config.prefix))[0];
  const previousManifest = previous ? await (previous.encrypted ? readInfo : readManifest)(config.dest, previous.name).catch(() => undefined) : undefined;
  const previousData = previousManifest ? (previousManifest.storedBytes ?? previousManifest.totalBytes) : 0;
  const ratio = previousManifest && previousManifest.archiveBytes > 0 && previousData > 0 ? previousData / previousManifest.archiveBytes : undefined;
  checkFreeSpace(config.dest, scan.dataBytes + inputs.extraBytes, config.compression === 'none' ? 1 : ratio, config.compression !== 'none');
  return scan;
}

/**
 * What the source scan found that stops the run (unreadable entries without --skip-unreadable,
 * an empty source without --allow-empty) or is worth a warning. Shared with the bucket-only backup.
 */
export function checkScan(config: BackupConfig | BucketBackupConfig, scan: SourceScan, ctx: RunContext): void {
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
  // A backup of dumps alone has an empty root; the dumps themselves were checked to be non-empty.
  if (scan.empty && !config.allowEmpty && config.source !== undefined) {
    throw new OperationError(
      `source ${config.source} is empty; refusing to make an empty archive that would push real backups out of keep-last (is the volume mounted?). Pass --allow-empty if this is intended`,
      'EMPTY_SOURCE',
    );
  }
}

async function chooseName(config: BackupConfig, started: Date, ctx: RunContext): Promise<string> {
  const newest = (await listArchives(config.dest, config.prefix))[0];
  const taken = (name: string) => fs.existsSync(path.join(config.dest, name));
  return pickArchiveName({ prefix: config.prefix, compression: config.compression, encrypted: config.recipients !== undefined, started, newest, taken, log: ctx.log });
}

/**
 * The helper process for xattrs and sparse maps. Without it (no perl), the backup still runs:
 * holes are found by reading, and a warning says that xattrs, ACLs and capabilities are not kept.
 */
export function startHelper(config: BackupConfig | BucketBackupConfig, ctx: RunContext): HelperPool | undefined {
  // Two processes: reading the xattrs of many small files is per-file latency, which they overlap.
  const helper = HelperPool.start(2);
  if (typeof helper !== 'string') {
    ctx.cleanup.add('stop the system-call helper', () => helper.close());
    return helper;
  }
  if (config.xattrs) {
    ctx.log.warn('backup.no-xattrs', `extended attributes, ACLs and file capabilities are NOT archived: ${helper}; pass --no-xattrs to silence this`, { reason: helper });
  }
  return undefined;
}

export function manifestHead(config: BackupConfig | BucketBackupConfig, name: string, started: Date, ctx: RunContext): ManifestHead {
  return {
    format: MANIFEST_FORMAT,
    prefix: config.prefix,
    archive: name,
    createdAt: started.toISOString(),
    // A backup of dumps alone names the dumps' directory.
    source: config.source ?? config.dumps?.dir ?? '',
    compression: config.compression,
    level: config.level,
    excludes: config.excludes,
    xattrs: config.xattrs,
    runnerVersion: ctx.version,
  };
}

/** The manifest is written as the archive is: into its hidden partial in DEST, renamed at publish. */
export interface ManifestFile {
  fd: number;
  writer: ManifestWriter;
  file: string;
  /** Closes the descriptor (idempotent). */
  close(): void;
}

export function openManifestWriter(file: string, head: ManifestHead, sourceBytes: number): ManifestFile {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
    const opened = fd;
    let open = true;
    return {
      fd,
      writer: new ManifestWriter(fd, head),
      file,
      close: () => {
        if (open) fs.closeSync(opened);
        open = false;
      },
    };
  } catch (error) {
    if (fd !== undefined) fs.closeSync(fd);
    throw outputError(error, 0, sourceBytes);
  }
}

export async function write(
  config: BackupConfig | BucketBackupConfig,
  inputs: BackupInputs,
  partial: string | ArchiveSink,
  manifest: ManifestWriter,
  helper: HelperPool | undefined,
  scan: SourceScan,
  ctx: RunContext,
): Promise<WrittenArchive> {
  const sourceBytes = scan.bytes + inputs.extraBytes;
  let progress = { bytesRead: 0, files: 0, archiveBytes: 0 };
  const reporter = new ProgressReporter(ctx.log, 'backup.progress', config.progressSeconds, () => ({
    bytes: progress.bytesRead,
    files: progress.files,
    message: `read ${humanBytes(progress.bytesRead)} of ${humanBytes(sourceBytes)} in ${count(progress.files, 'file')}, archive ${humanBytes(progress.archiveBytes)}`,
  })).start();
  try {
    return await writeArchive({
      source: inputs.root,
      exclude: inputs.exclude,
      substitutes: inputs.substitutes,
      extraTrees: inputs.extraTrees,
      hardLinks: scan.hardLinks,
      skipUnreadable: config.skipUnreadable,
      compression: config.compression,
      level: config.level,
      file: partial,
      manifest,
      helper,
      xattrs: config.xattrs && helper !== undefined,
      sourceBytes,
      ...(config.recipients ? { encryption: { recipients: config.recipients } } : {}),
      signal: ctx.signal,
      onProgress: (p) => (progress = p),
      onWarning: (warning) => ctx.log.warn('backup.file-warning', `${warning.path}: ${warning.problem}`, { ...warning }),
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException)?.code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw outputError(error, progress.archiveBytes, sourceBytes);
    throw error;
  } finally {
    reporter.stop();
    scan.hardLinks.close();
  }
}

/**
 * Proves the new archive before it gets its name: every compressed piece was already decoded
 * back to its input while writing (compress.ts), and the tar stream was parsed back to its end
 * marker with every entry compared to the manifest (write.ts); here the file on disk is read
 * back and must have the SHA-256 and length computed while writing. A bad archive never
 * becomes visible.
 */
async function verifyPartial(partial: string, written: WrittenArchive, name: string, ctx: RunContext): Promise<void> {
  const started = Date.now();
  const onDisk = await readBack(partial, written);
  if (onDisk.sha256 !== written.sha256 || onDisk.bytes !== written.archiveBytes) {
    throw new IntegrityError(
      `${name}: the file on disk (${onDisk.bytes} bytes, sha256 ${onDisk.sha256}) differs from what was written (${written.archiveBytes} bytes, sha256 ${written.sha256}); the archive was not kept`,
      'CHECKSUM',
    );
  }
  ctx.log.info('backup.verified', `${name} verified: ${count(written.entryCount, 'entry')}, sha256 ${written.sha256}${written.selfCheck ? ', every encrypted chunk authenticated' : ''}`, {
    archive: name,
    seconds: round((Date.now() - started) / 1000),
  });
}

/**
 * The stored file read back: its SHA-256 and length. A plain one was read back a step behind the
 * writes. An encrypted one is read back now and decrypted with its own file key on the way, so
 * every chunk as stored is authenticated, in order, up to the final one.
 */
async function readBack(partial: string, written: WrittenArchive): Promise<{ sha256: string; bytes: number }> {
  if (written.stored) return written.stored;
  if (!written.selfCheck) throw new IntegrityError(`${path.basename(partial)} was written without a read-back (internal fault); the archive was not kept`, 'ROUND_TRIP');
  try {
    return await proveEncryptedFile(partial, written.selfCheck);
  } finally {
    written.selfCheck.destroy();
  }
}

/**
 * Checksum first (written atomically), then the manifest's tail, fsync and rename, then the
 * archive's rename makes it visible. Encrypted: the plain info record (no file names), then the
 * manifest encrypted to the same recipients from its private plain copy. Synchronous: a signal
 * lands between the steps, never during one, so the cleanup registered here always finds what
 * it must remove.
 */
function publish(config: BackupConfig, name: string, partial: string, manifest: ManifestFile, summary: Manifest, ctx: RunContext): void {
  const { dest, recipients } = config;
  const tail = summary;
  const sidecars = sidecarNames(name).flatMap((n) => [n, partialName(n)]).map((n) => path.join(dest, n));
  const forgetSidecars = ctx.cleanup.add('remove the sidecars', () => sidecars.forEach((f) => fs.rmSync(f, { force: true })));
  try {
    writeFileAtomicSync(dest, sha256Name(name), formatChecksumFile(tail.sha256, name));
    try {
      manifest.writer.finish(tail);
      fs.fsyncSync(manifest.fd);
    } finally {
      manifest.close();
    }
    if (recipients) {
      writeFileAtomicSync(dest, infoName(name), serializeInfo(infoFromManifest(summary)));
      writeFileAtomicSyncWith(dest, manifestName(name), (fd) => encryptFileInto(fd, manifest.file, recipients));
    } else {
      fs.renameSync(manifest.file, path.join(dest, manifestName(name)));
    }
    fsyncDirectorySync(dest);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException)?.code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') throw error;
    throw new OperationError(
      `the backup volume is full: the archive had reached ${humanBytes(tail.archiveBytes)} and was verified, but there was no room left for its checksum and manifest files; ` +
        'free space (lower keep-last or delete old archives) or give the backup volume more room (storage.size)',
      'NO_SPACE',
      { cause: error },
    );
  }
  fs.renameSync(partial, path.join(dest, name));
  forgetSidecars();
  fsyncDirectorySync(dest);
}

export function round(n: number): number {
  return Math.round(n * 100) / 100;
}
