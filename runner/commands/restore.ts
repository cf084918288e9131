import fs from 'node:fs';
import path from 'node:path';
import { type AgeIdentity, type AgeRecipient, checkAgeHeader } from '../archive/age/index.js';
import type { Readable } from 'node:stream';
import { type Expectation, checkArchive } from '../archive/check.js';
import { type ArchiveRequest, isBucketOnly, openBucketArchive, snapshotToBucket, withDest } from '../restore/source.js';
import type { S3Settings } from '../repository/s3-settings.js';
import { sniffCompression } from '../archive/compress.js';
import { decryptedHead, isAgeFile, readHead } from '../archive/encryption.js';
import { type EntryMeta, Extractor, applyMeta } from '../archive/extract.js';
import { parseChecksumFile } from '../archive/hash.js';
import type { Manifest, OpenedManifest } from '../archive/manifest.js';
import type { ReadProgress } from '../archive/read.js';
import { type SafetyOptions, SafetyRules } from '../archive/safety.js';
import { HelperPool, errnoName } from '../archive/syscall-helper.js';
import type { TarVisitor } from '../archive/tar-reader.js';
import { sortedNames } from '../archive/listing.js';
import { aclsToDrop } from '../archive/xattrs.js';
import type { BackupConfig, BucketRestoreConfig, Compression, RestoreConfig } from '../config.js';
import type { RunContext } from '../context.js';
import { IntegrityError, OperationError, RunnerError, UsageError, describeSystemError } from '../errors.js';
import { type Logger, ProgressReporter, count, humanBytes } from '../log.js';
import { collectAllGarbage } from '../memory.js';
import { type PathSelection, checkSelection } from '../restore/selection.js';
import { IndexBuilder, type IndexEntry, type IndexSource, type PlanAction, type RestorePlan, indexFromManifest, mountsInside, planRestore } from '../restore/plan.js';
import { CONTROL_PREFIX, KEEP_IN_PLACE, RestoreRun, checkSwapPossible, pendingRecovery, recoverInterrupted, syncFileSystem, tempPrefix } from '../restore/staging.js';
import { removeLeftoverPartials, writeFileAtomic } from '../store/atomic.js';
import { type ResolvedArchive, choosePrefix, findArchive, identityNeeded, openArchiveManifest, openEncryptedManifest } from '../store/catalog.js';
import { acquireLock, logLockWarnings } from '../store/lock.js';
import { PRE_RESTORE_SUFFIX, manifestName, sha256Name } from '../store/naming.js';
import { aroundScaledDown, scaleBackAfterDone } from '../consistency/restore-scale-down.js';
import { backupUnderLock } from './backup.js';

/**
 * `pvc-backup restore`, as ordered steps:
 *
 *   lock DEST → request already done? → refuse mount points inside the target →
 *   resolve the archive and its sidecars (refuse unverified archives without --allow-unverified) →
 *   [--scale-down: record the replica counts in DEST, scale the workloads to 0, wait for their pods] →
 *   recover the target from an interrupted restore recorded in DEST →
 *   replace: [unverified: safety + decode pre-pass] → ONE pass that verifies (checksum, full
 *            decode, every entry against the manifest incl. per-file SHA-256) AND extracts into
 *            a staging directory inside the target, every entry path-checked before it is
 *            written → pre-restore snapshot → sync → journaled swap
 *   merge:   one verify + safety pass (no writes) → snapshot → extract over the live tree
 *   → record the request as done → [--scale-down: scale back to the recorded counts, also on failure]
 *   → summary line.
 *
 * Nothing in the target changes before the archive is fully verified: a failure during the
 * single pass only discards the staging directory (and puts the target's mtime back).
 */

/** How many pre-restore snapshots are kept (per prefix). */
export const SNAPSHOT_KEEP = 3;

export interface RestoreSummary {
  archive: string;
  target: string;
  mode: RestoreConfig['mode'];
  files: number;
  entries: number;
  bytes: number;
  archiveBytes: number;
  sha256: string;
  verified: boolean;
  snapshot: string | undefined;
  durationSeconds: number;
}

export function snapshotPrefix(prefix: string): string {
  return `${prefix}${PRE_RESTORE_SUFFIX}`;
}

export function doneMarkerName(requestId: string): string {
  return `${CONTROL_PREFIX}${requestId}.done`;
}

export interface ArchiveSource {
  name: string;
  /** The file in DEST; for a bucket, its `s3://` location (messages only: the bytes come from `open`). */
  file: string;
  /** Opens the archive's bytes for one read (a bucket object streamed, never written to disk). */
  open?: () => Promise<Readable>;
  compression: Compression;
  expectation: Expectation;
  /** Checksum and manifest present and used. */
  verified: boolean;
  manifest: Manifest | undefined;
  opened: OpenedManifest | undefined;
  info: ResolvedArchive;
  /** Encrypted with age: the identities that decrypt it (their header check already passed). */
  identities: readonly AgeIdentity[] | undefined;
  /** Removes what opening it made (an encrypted archive's decrypted manifest copy; a bucket's manifest copied into a scratch file). */
  release(): void;
}

const isRoot = (): boolean => process.getuid?.() === 0;

export async function runRestore(input: RestoreConfig | BucketRestoreConfig, ctx: RunContext): Promise<RestoreSummary | undefined> {
  const given = withDest(input);
  const { prefix, picked } = 'remote' in given ? { prefix: given.prefix, picked: undefined } : await choosePrefix(given.dest, given.prefix, given.prefixDefaulted);
  if (picked) ctx.log.info('restore.prefix', picked, { prefix });
  const config = { ...given, prefix };
  if (config.dryRun) {
    await runDryRun(config, ctx);
    return undefined;
  }
  const lock = await acquireLock(config.dest, { command: 'restore', staleSeconds: config.lockStaleSeconds, onWarning: logLockWarnings(ctx.log) });
  const forgetLock = ctx.cleanup.add('release the lock', () => lock.releaseSync());
  try {
    if (requestAlreadyDone(config, ctx.log)) {
      // Killed after recording the request, before scaling back: this retry only scales back.
      await scaleBackAfterDone(config.scaleDown, config.dest, ctx);
      return undefined;
    }
    refuseMounts(config.target);
    // The archive is found (and an encrypted one opened with the identity) before the
    // application is stopped: a wrong name or key stops nothing.
    const source = await openArchive(config, ctx);
    let summary: RestoreSummary;
    try {
      checkPathsInManifest(config, source);
      summary = await aroundScaledDown(config.scaleDown, config.dest, ctx, async () => {
        recoverInterrupted(config.dest, config.target, ctx.log);
        const restored = config.mode === 'replace' ? await restoreReplace(config, ctx, source) : await restoreMerge(config, ctx, source);
        if (config.requestId) await recordDone(config, restored);
        return restored;
      });
    } finally {
      source.release();
    }
    ctx.log.info(
      'restore.done',
      `restored ${summary.archive} into ${summary.target} (${summary.mode}): ${humanBytes(summary.bytes)} in ${count(summary.files, 'file')}, ` +
        `${count(summary.entries, 'entry')} in ${summary.durationSeconds}s (${humanBytes(summary.durationSeconds > 0 ? summary.bytes / summary.durationSeconds : summary.bytes)}/s)` +
        (summary.snapshot ? `; previous contents saved as ${summary.snapshot}` : ''),
      { ...summary },
    );
    return summary;
  } finally {
    await lock.release();
    forgetLock();
  }
}

// ---------------------------------------------------------------- request ids

/** What DEST records about a completed request (`.pvc-backup-restore-<request id>.done`). */
interface DoneRecord {
  requestId?: string;
  jobUid?: string;
  archive?: string;
  mode?: string;
  target?: string;
  sha256?: string;
  snapshot?: string;
  completedAt?: string;
}

/**
 * A request runs once. Found done in DEST: a retry of the same Job (a pod restarted after the
 * restore completed) exits 0; any other run of it — a Job recreated with the same values, the
 * documented steps repeated later — fails, saying when it ran and how to ask again. It never
 * ends as a success that restored nothing. A dry run only says so.
 */
function requestAlreadyDone(config: RestoreConfig, log: Logger): boolean {
  if (!config.requestId) return false;
  const marker = path.join(config.dest, doneMarkerName(config.requestId));
  let recorded: DoneRecord = {};
  try {
    const value: unknown = JSON.parse(fs.readFileSync(marker, 'utf8'));
    if (value && typeof value === 'object') recorded = value as DoneRecord;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    // Unreadable: it still says the request ran.
  }
  const when = `${recorded.completedAt ? ` at ${recorded.completedAt}` : ''}${recorded.archive ? ` from ${recorded.archive}` : ''}`;
  const fields = { requestId: config.requestId, marker, ...recorded };
  if (config.jobUid && recorded.jobUid === config.jobUid) {
    log.info('restore.already-done', `restore request ${config.requestId} was already completed by this Job${when}; nothing to do`, fields);
    return true;
  }
  const message =
    `restore request ${config.requestId} already ran${when}${recorded.jobUid ? ` (Job ${recorded.jobUid})` : ''}, so this run restores nothing; ` +
    'set restore.nonce to a new value (e.g. --set restore.nonce=$(date +%s)) to restore again (without the chart: another --request-id)';
  if (config.dryRun) {
    log.warn('restore.already-done', message, fields);
    return false;
  }
  throw new UsageError(message, 'ALREADY_RESTORED');
}

async function recordDone(config: RestoreConfig, summary: RestoreSummary): Promise<void> {
  const record: DoneRecord = {
    requestId: config.requestId,
    jobUid: config.jobUid,
    archive: summary.archive,
    mode: summary.mode,
    target: summary.target,
    sha256: summary.sha256,
    snapshot: summary.snapshot,
    completedAt: new Date().toISOString(),
  };
  await writeFileAtomic(config.dest, doneMarkerName(config.requestId!), JSON.stringify(record, null, 2) + '\n');
}

/** Mount points inside the target: refused before anything changes (see mountsInside). */
function refuseMounts(target: string): void {
  const mounts = mountsInside(target);
  if (mounts.length === 0) return;
  throw new OperationError(
    `cannot restore into ${target}: ${mounts[0]} is a separate mount inside it${mounts.length > 1 ? ` (and ${count(mounts.length - 1, 'more')}: ${mounts.slice(1).join(', ')})` : ''}; ` +
      `a replace would move it aside and a merge could delete what it holds, so nothing was changed; unmount it first (and restore into it on its own with --target ${mounts[0]} if it needs restoring too)`,
    'TARGET_MOUNT',
  );
}

// ---------------------------------------------------------------- the archive

/**
 * An encrypted archive (by its name, or for one made by other tools, by its first bytes) needs
 * the identity, and the identity must open its header: both are settled before anything else.
 */
function openEncryption(config: ArchiveRequest, info: ResolvedArchive, file: string): readonly AgeIdentity[] | undefined {
  const encrypted = info.foreign ? isAgeFile(file) : info.encrypted;
  if (!encrypted) return undefined;
  if (!config.identities) throw identityNeeded(info.name, 'restoring it');
  try {
    checkAgeHeader(readHead(file), config.identities);
  } catch (error) {
    throw namingArchive(error, info.name);
  }
  return config.identities;
}

/** Finds an archive and opens its sidecars (and, encrypted, its key) for reading; also used by `cat`. */
export async function openArchive(config: ArchiveRequest, ctx: RunContext): Promise<ArchiveSource> {
  const { log } = ctx;
  if ('remote' in config && config.remote) return openBucketArchive(config as ArchiveRequest & { remote: S3Settings }, ctx);
  const info = await findArchive(config.dest, config.prefix, config.archive);
  const file = path.join(config.dest, info.name);
  const identities = openEncryption(config, info, file);
  let sha256: string | undefined;
  if (info.hasSha256) sha256 = parseChecksumFile(fs.readFileSync(path.join(config.dest, sha256Name(info.name)), 'utf8'), info.name);
  let opened: OpenedManifest | undefined;
  let release = () => undefined as void;
  if (info.hasManifest) {
    try {
      if (identities) {
        const decrypted = await openEncryptedManifest(config.dest, info.name, identities);
        if (decrypted) {
          const forget = ctx.cleanup.add('remove the decrypted manifest', decrypted.close);
          release = () => {
            decrypted.close();
            forget();
          };
        }
        opened = decrypted;
      } else {
        opened = openArchiveManifest(config.dest, info.name);
      }
    } catch (error) {
      if (!(error instanceof IntegrityError) || !config.allowUnverified || error.code === 'AGE_NO_MATCH') throw error;
      log.warn('restore.manifest-ignored', `${error.message}; ignored because of --allow-unverified`, { archive: info.name });
    }
  }
  const manifest = opened?.manifest;
  // Parsing a large manifest leaves tens of MiB of garbage; collect it before the long read.
  if (opened?.layout === 'whole') collectAllGarbage();
  const verified = !info.foreign && sha256 !== undefined && manifest !== undefined;
  if (!verified) {
    const missing = [sha256 === undefined ? sha256Name(info.name) : '', manifest === undefined ? manifestName(info.name) : ''].filter(Boolean).join(' and ');
    if (!config.allowUnverified) {
      throw new IntegrityError(
        `${info.name} cannot be verified: ${missing || 'its sidecars'} ${missing.includes(' and ') ? 'are' : 'is'} missing (made by another tool, or the sidecars were deleted); ` +
          'pass --allow-unverified to restore it anyway (every path-safety rule still applies)',
        'UNVERIFIED',
      );
    }
    log.warn('restore.unverified', `restoring ${info.name} WITHOUT integrity verification (--allow-unverified): ${missing} missing; only decompression, the tar structure${sha256 ? ', the checksum' : ''} and path safety are checked`, {
      archive: info.name,
      missing,
    });
  }
  const compression = verified ? info.compression : ((await sniffFile(file, identities)) ?? info.compression);
  return {
    name: info.name,
    file,
    compression,
    expectation: { label: info.name, sha256, manifest: opened },
    verified,
    manifest,
    opened,
    info,
    identities,
    release,
  };
}

/** The compression of an archive from its first (decrypted) bytes. */
async function sniffFile(file: string, identities: readonly AgeIdentity[] | undefined): Promise<Compression | undefined> {
  const head = identities ? await decryptedHead(file, identities).catch((error: unknown) => Promise.reject(namingArchive(error, path.basename(file)))) : readHead(file, 512);
  return sniffCompression(head.subarray(0, 512));
}

/**
 * One full read of the archive (checksum, decode, manifest, per-file hashes) with a visitor
 * riding along, then the visitor's whole-archive checks (`finish`). Every failure names the archive.
 */
async function readPass(
  config: RestoreConfig,
  ctx: RunContext,
  source: ArchiveSource,
  visitor: TarVisitor & { finish(): void | Promise<void> },
  what: { event: string; verb: string; progress?: () => { bytes: number; files: number } },
) {
  let read: ReadProgress = { archiveBytes: 0, tarBytes: 0, entries: 0 };
  const started = Date.now();
  const total = source.manifest?.tarBytes;
  const reporter = new ProgressReporter(ctx.log, what.event, config.progressSeconds, () => {
    // The extractor counts the files it wrote; a read-only pass only knows entries.
    const p = what.progress?.();
    const bytes = p?.bytes ?? read.tarBytes;
    const seconds = (Date.now() - started) / 1000;
    return {
      bytes,
      files: p?.files ?? read.entries,
      message:
        `${what.verb} ${source.name}: ${humanBytes(bytes)} in ${p ? count(p.files, 'file') : count(read.entries, 'entry')}, read ${humanBytes(read.archiveBytes)} of ${humanBytes(source.info.size)}` +
        `${total ? ` (${Math.floor((read.tarBytes / total) * 100)}%)` : ''}, ${humanBytes(seconds > 0 ? bytes / seconds : 0)}/s`,
    };
  }).start();
  try {
    const result = await checkArchive(source.open ? await source.open() : source.file, source.compression, source.expectation, {
      visitor,
      onProgress: (p) => (read = p),
      identities: source.identities,
    });
    await visitor.finish();
    return result;
  } catch (error) {
    throw namingArchive(error, source.name);
  } finally {
    reporter.stop();
  }
}

/** Decompression and tar errors do not know the file they came from; the message must name it. */
function namingArchive(error: unknown, name: string): unknown {
  if (!(error instanceof RunnerError) || error.message.includes(name)) return error;
  return new RunnerError(`${name}: ${error.message}`, error.exitCode, error.code, { cause: error });
}

// ---------------------------------------------------------------- --path

/**
 * `--path`: the selection checked against the manifest right after the archive is opened, before
 * any workload is stopped or anything is read or written. An archive without a manifest is
 * checked against the index its verify pass builds, still before anything is written.
 */
function checkPathsInManifest(config: RestoreConfig, source: ArchiveSource): void {
  if (!config.paths || !source.opened) return;
  const index = indexFromManifest(source.opened);
  try {
    checkSelection(config.paths, index.entries(), source.name);
  } finally {
    index.close();
  }
}

/** The safety visitor of a read-only pass, building the index `--path` is checked against when there is no manifest. */
function selectionVisitor(config: RestoreConfig, source: ArchiveSource): { visitor: SafetyRules | IndexBuilder; rules: SafetyRules; check(): void } {
  if (!config.paths || source.opened) {
    const rules = new SafetyRules(safetyOptions(config));
    return { visitor: rules, rules, check: () => undefined };
  }
  const builder = new IndexBuilder(safetyOptions(config));
  const paths = config.paths;
  return {
    visitor: builder,
    rules: builder.rules,
    check: () => {
      const index = builder.index();
      try {
        checkSelection(paths, index.entries(), source.name);
      } finally {
        index.close();
      }
    },
  };
}

/** Text naming the selection, for log lines (empty without --path). */
function pathsText(config: RestoreConfig): string {
  return config.paths ? ` (only ${config.paths.describe()})` : '';
}

// ---------------------------------------------------------------- replace

async function restoreReplace(config: RestoreConfig, ctx: RunContext, source: ArchiveSource): Promise<RestoreSummary> {
  const { log, cleanup } = ctx;
  const started = Date.now();
  const target = config.target;
  const chown = isRoot();
  if (!chown) warnNotRoot(log);

  // Sparse files count by the data they hold, not their apparent size.
  let expectedBytes = source.manifest ? (source.manifest.storedBytes ?? source.manifest.totalBytes) : undefined;
  if (!source.verified) expectedBytes = await safetyPrePass(config, ctx, source);
  checkSwapPossible(target);
  checkTargetSpace(target, expectedBytes ?? 0, 'replace');

  const before = fs.statSync(target);
  const run = RestoreRun.begin(config.dest, target, { mode: 'replace', archive: source.name, chown });
  log.info('restore.start', `restoring ${source.name} into ${target} (replace): verifying and extracting into ${run.topLevelNames[0]} in one pass`, {
    archive: source.name,
    target,
    mode: 'replace',
    sidecars: source.verified,
    bytes: expectedBytes,
    entries: source.manifest?.entryCount,
  });
  const discard = () => {
    run.discard();
    // The target looks exactly as before, its own mtime included.
    try {
      fs.utimesSync(target, before.atime, before.mtime);
    } catch {
      // best effort
    }
  };
  const forgetStaging = cleanup.add('remove the staging directory', discard);
  const helper = startHelper(ctx);
  const extractor = new Extractor({
    root: run.stagingPath,
    merge: false,
    chown,
    helper,
    xattrs: config.xattrs,
    safety: safetyOptions(config),
    onWarning: warnAttribute(log),
  });
  let result;
  let snapshot: string | undefined;
  try {
    try {
      if (helper && config.xattrs) await dropInheritedAcls(run.stagingPath, helper, log);
      result = await extractPass(config, ctx, source, extractor);
    } finally {
      extractor.close();
    }
    log.info('restore.verified', `${source.name} ${source.verified ? 'verified' : 'read completely'} and staged: ${count(extractor.files, 'file')}, ${humanBytes(extractor.bytes)}, sha256 ${result.sha256}`, {
      archive: source.name,
      verified: source.verified,
      sha256: result.sha256,
      files: extractor.files,
      bytes: extractor.bytes,
      seconds: round((Date.now() - started) / 1000),
    });
    snapshot = await takeSnapshot(config, ctx, run.topLevelNames, source);
    if (!syncFileSystem(target)) log.warn('restore.sync-failed', 'could not run sync; the restored data may not be on disk yet if the node loses power now');
  } catch (error) {
    // The helpers may still be creating files in staging: let them finish before it is removed.
    await extractor.settle();
    helper?.close();
    discard();
    forgetStaging();
    throw error;
  }
  forgetStaging();
  // From here on nothing is removed on failure: the journal lets the next run finish the swap.
  try {
    run.swapIn(extractor.rootMeta && plainMeta(extractor.rootMeta), log);
    await applyRootAttributes(target, extractor.rootMeta, config, helper, log);
  } finally {
    helper?.close();
  }
  return summarize('replace', { source, target, extractor, result, snapshot, started });
}

// ---------------------------------------------------------------- merge

async function restoreMerge(config: RestoreConfig, ctx: RunContext, source: ArchiveSource): Promise<RestoreSummary> {
  const { log, cleanup } = ctx;
  const started = Date.now();
  const target = config.target;
  const chown = isRoot();
  if (!chown) warnNotRoot(log);

  // Merge writes into the live tree, so the archive is verified and checked completely first.
  const expectedBytes = await safetyPrePass(config, ctx, source);
  checkTargetSpace(target, expectedBytes, 'merge');
  const snapshot = await takeSnapshot(config, ctx, [], source);

  const run = RestoreRun.begin(config.dest, target, { mode: 'merge', archive: source.name, chown });
  log.info('restore.start', `restoring ${source.name} into ${target} (merge)${pathsText(config)}: extracting over the existing tree`, {
    archive: source.name,
    target,
    mode: 'merge',
    paths: config.paths?.paths,
    sidecars: source.verified,
    bytes: expectedBytes,
  });
  const helper = startHelper(ctx);
  const extractor = new Extractor({
    root: target,
    merge: true,
    chown,
    helper,
    xattrs: config.xattrs,
    tempPrefix: tempPrefix(run.id),
    select: config.paths && ((rel) => config.paths!.includes(rel)),
    safety: safetyOptions(config),
    onWarning: warnAttribute(log),
  });
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    extractor.close();
    helper?.close();
    run.discard();
  };
  const forgetRun = cleanup.add('remove the temporary file', finish);
  let result;
  try {
    result = await extractPass(config, ctx, source, extractor);
    finish();
    // After the run's marker is gone: removing it changes the target's mtime.
    if (extractor.rootMeta) applyMeta(target, extractor.rootMeta, chown);
  } catch (error) {
    await extractor.settle();
    if (error instanceof RunnerError) {
      throw new OperationError(
        `${error.message}; the merge stopped part-way, so the target now holds a mix of old and restored files` +
          (snapshot ? ` (its previous contents are in ${snapshot})` : ''),
        error.code,
        { cause: error },
      );
    }
    throw error;
  } finally {
    forgetRun();
    finish();
  }
  return summarize('merge', { source, target, extractor, result, snapshot, started });
}

// ---------------------------------------------------------------- shared steps

function safetyOptions(config: RestoreConfig): SafetyOptions {
  return { allowAbsoluteSymlinks: config.allowAbsoluteSymlinks };
}

/** One read of the archive that verifies it and feeds the extractor, with progress lines; then the extractor's own final checks. */
async function extractPass(config: RestoreConfig, ctx: RunContext, source: ArchiveSource, extractor: Extractor) {
  const result = await readPass(config, ctx, source, extractor, {
    event: 'restore.progress',
    verb: 'restoring',
    progress: () => ({ bytes: extractor.bytes, files: extractor.files }),
  });
  return result;
}

/**
 * The helper process for xattrs and exact times (syscall-helper.ts). Without it the restore
 * still runs: times to within a microsecond, and a warning for every entry whose xattrs are lost.
 */
function startHelper(ctx: RunContext): HelperPool | undefined {
  // Three processes: they create the small files, set attributes and exact times, in parallel.
  const helper = HelperPool.start(3);
  if (typeof helper === 'string') {
    ctx.log.warn('restore.no-helper', `extended attributes, ACLs and file capabilities cannot be restored and mtimes are set to within a microsecond: ${helper}`, { reason: helper });
    return undefined;
  }
  // On a signal this runs before the staging directory is removed: nothing may be created in it afterwards.
  ctx.cleanup.add('stop the system-call helpers', () => helper.killSync());
  return helper;
}

/**
 * The staging directory inherits the target's default ACL, and would pass it on to every entry
 * created below it (a 0640 file readable by another user): it loses both ACLs before extraction.
 */
async function dropInheritedAcls(staging: string, helper: HelperPool, log: Logger): Promise<void> {
  // Through "/.": the staging path is a descriptor's /proc link, which `apply` would not follow.
  const failures = await helper.for('').apply(Buffer.from(`${staging}/.`), { dropAccessAcl: true, dropDefaultAcl: true });
  for (const f of failures) {
    log.warn('restore.attribute', `the target's default ACL could not be kept from the restored entries (${errnoName(f.errno)}); they may carry ACL entries the archive does not have`, { path: './', problem: f.step });
  }
}

/**
 * The target directory's own xattrs (e.g. a default ACL) and exact mtime, from the archive's root
 * entry; ACLs the root entry does not have are removed, so the target ends up as the archive's root.
 */
async function applyRootAttributes(target: string, root: EntryMeta | undefined, config: RestoreConfig, helper: HelperPool | undefined, log: Logger): Promise<void> {
  if (!root || !helper) return;
  const xattrs = config.xattrs ? root.xattrs : undefined;
  const drops = config.xattrs ? aclsToDrop(xattrs, true) : undefined;
  if (!xattrs && !drops && !root.mtimeNsec) return;
  const failures = await helper.for('').apply(Buffer.from(target), { ...drops, xattrs, mtime: { sec: root.mtime, nsec: root.mtimeNsec ?? 0 } });
  for (const f of failures) {
    const what = f.step === 'xattr' ? `its extended attribute ${xattrs?.[f.index]?.name}` : f.step === 'dropAcl' ? `the removal of its ${f.index === 0 ? 'access' : 'default'} ACL, which the archive's root does not have,` : 'its exact mtime';
    log.warn('restore.attribute', `./: ${what} was not restored (${errnoName(f.errno)})`, { path: './', problem: f.step });
  }
}

/** What the swap journal records of the root entry (JSON, no binary attributes). */
function plainMeta(meta: EntryMeta): EntryMeta {
  const { xattrs: _xattrs, ...rest } = meta;
  return rest;
}

function warnAttribute(log: Logger): (entryPath: string, problem: string) => void {
  return (p, problem) => log.warn('restore.attribute', `${p}: ${problem}`, { path: p, problem });
}

function summarize(
  mode: RestoreConfig['mode'],
  run: { source: ArchiveSource; target: string; extractor: Extractor; result: { archiveBytes: number; sha256: string }; snapshot: string | undefined; started: number },
): RestoreSummary {
  return {
    archive: run.source.name,
    target: run.target,
    mode,
    files: run.extractor.files,
    entries: run.extractor.rules.entries,
    bytes: run.extractor.bytes,
    archiveBytes: run.result.archiveBytes,
    sha256: run.result.sha256,
    verified: run.source.verified,
    snapshot: run.snapshot,
    durationSeconds: round((Date.now() - run.started) / 1000),
  };
}

/**
 * A full read that writes nothing: checksum and manifest (whatever sidecars exist), complete
 * decompression to the tar end marker, and every path-safety rule. Returns the file bytes.
 */
async function safetyPrePass(config: RestoreConfig, ctx: RunContext, source: ArchiveSource): Promise<number> {
  const { visitor, rules, check } = selectionVisitor(config, source);
  const started = Date.now();
  const result = await readPass(config, ctx, source, visitor, { event: 'restore.verify-progress', verb: 'verifying' });
  check();
  ctx.log.info('restore.verified', `${source.name} ${source.verified ? 'verified' : 'read completely (unverified)'}: ${count(rules.entries, 'entry')}, ${humanBytes(rules.totalBytes)}, every path safe, sha256 ${result.sha256}`, {
    archive: source.name,
    verified: source.verified,
    sha256: result.sha256,
    entries: rules.entries,
    bytes: rules.totalBytes,
    seconds: round((Date.now() - started) / 1000),
  });
  return rules.totalBytes;
}

function warnNotRoot(log: Logger): void {
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  log.warn('restore.not-root', `running as uid ${uid}, not root: owners cannot be restored, every restored file will belong to ${uid}:${gid} (modes and mtimes are restored)`, { uid, gid });
}

function checkTargetSpace(target: string, bytes: number, mode: RestoreConfig['mode']): void {
  let free: number;
  try {
    const st = fs.statfsSync(target);
    // A file system that reports no size at all (ramfs) has no limit to check.
    if (st.blocks === 0) return;
    free = st.bavail * st.bsize;
  } catch {
    return;
  }
  if (bytes <= free) return;
  throw new OperationError(
    `the target volume is too full for this restore: the archive holds ${humanBytes(bytes)} but ${target} has ${humanBytes(free)} free` +
      (mode === 'replace'
        ? '; a replace restore stages the whole archive next to the current data before swapping, so free space, enlarge the volume, or use --mode merge into an emptied target'
        : '; free space or enlarge the volume'),
    'NO_SPACE',
  );
}

/** Whether the target holds anything besides lost+found and the run's own entries (`own`). */
function targetHasData(target: string, own: readonly string[]): boolean {
  for (const name of sortedNames(target)) if (!own.includes(name) && !KEEP_IN_PLACE.includes(name)) return true;
  return false;
}

/**
 * The pre-restore snapshot: a normal pvc-backup archive of the target (zstd) under the prefix
 * `<prefix>-pre-restore`, written while this run holds the DEST lock, then pruned to the newest
 * SNAPSHOT_KEEP of that prefix. lost+found and this run's own entries (`own`: the staging
 * directory of a replace) are left out; everything else in the target is data and goes in.
 */
async function takeSnapshot(config: RestoreConfig, ctx: RunContext, own: readonly string[], source: ArchiveSource): Promise<string | undefined> {
  const { log } = ctx;
  if (!config.snapshot) {
    log.warn('restore.no-snapshot', `no pre-restore snapshot (--no-snapshot): the current contents of ${config.target} cannot be brought back by pvc-backup`, { target: config.target });
    return undefined;
  }
  if (!targetHasData(config.target, own)) {
    log.info('restore.no-snapshot', `${config.target} is empty; no pre-restore snapshot needed`, { target: config.target });
    return undefined;
  }
  // Bucket only (restore --remote without --dest): the snapshot goes to the bucket, with the same backup steps.
  if (isBucketOnly(config)) return snapshotToBucket(config, ctx, [...own, ...KEEP_IN_PLACE]);
  const partials = await removeLeftoverPartials(config.dest);
  for (const name of partials) log.warn('backup.leftover-removed', `removed ${name}, left over by an interrupted run`, { file: name });
  const prefix = snapshotPrefix(config.prefix);
  log.info('restore.snapshot', `saving the current contents of ${config.target} as a pre-restore snapshot (prefix ${prefix}, newest ${SNAPSHOT_KEEP} kept)`, {
    target: config.target,
    prefix,
  });
  const snapshotConfig: BackupConfig = {
    ...snapshotSettings(config, [...own, ...KEEP_IN_PLACE]),
    dest: config.dest,
    retention: { last: SNAPSHOT_KEEP },
    ...snapshotRecipients(source),
  };
  try {
    const summary = await backupUnderLock(snapshotConfig, ctx);
    return summary.archive;
  } catch (error) {
    throw snapshotFailed(config, error);
  }
}

/**
 * Restoring from an encrypted archive: the snapshot of the data it replaces is encrypted too, to
 * the public keys of the identities given (so the same identity file restores it).
 */
function snapshotRecipients(source: ArchiveSource): { recipients?: AgeRecipient[] } {
  if (!source.identities) return {};
  const recipients = source.identities.flatMap((identity) => ('recipient' in identity ? [identity.recipient as AgeRecipient] : []));
  return recipients.length > 0 ? { recipients } : {};
}

// ---------------------------------------------------------------- dry run

async function runDryRun(config: RestoreConfig, ctx: RunContext): Promise<RestorePlan | undefined> {
  const { log } = ctx;
  requestAlreadyDone(config, log);
  refuseMounts(config.target);
  const pending = pendingRecovery(config.dest, config.target);
  if (pending.length > 0) {
    log.warn('restore.pending-recovery', `${config.target} holds leftovers of an interrupted restore (${pending.join(', ')}); the next real restore completes or removes them first; the plan below ignores them`, {
      entries: pending,
    });
  }
  const source = await openArchive(config, ctx);
  try {
    checkPathsInManifest(config, source);
    return await planDryRun(config, ctx, source, pending);
  } finally {
    source.release();
  }
}

/** The dry run's read of the opened archive, and the plan it prints. */
async function planDryRun(config: RestoreConfig, ctx: RunContext, source: ArchiveSource, pending: string[]): Promise<RestorePlan> {
  const { log } = ctx;
  const builder = source.opened ? undefined : new IndexBuilder(safetyOptions(config));
  const rules = builder?.rules ?? new SafetyRules(safetyOptions(config));
  const result = await readPass(config, ctx, source, builder ?? rules, { event: 'restore.verify-progress', verb: 'verifying' });
  log.info('restore.verified', `${source.name} ${source.verified ? 'verified' : 'read completely (unverified)'}: ${count(rules.entries, 'entry')}, every path safe, sha256 ${result.sha256}`, {
    archive: source.name,
    verified: source.verified,
    sha256: result.sha256,
  });
  const whole = source.opened ? indexFromManifest(source.opened) : builder!.index();
  const paths = config.paths;
  if (paths && !source.opened) {
    try {
      checkSelection(paths, whole.entries(), source.name);
    } catch (error) {
      whole.close();
      throw error;
    }
  }
  const index: IndexSource = paths ? { entries: () => onlySelected(whole.entries(), paths), close: () => whole.close() } : whole;
  const ignoreTopLevel = (name: string) => pending.includes(name) || (config.mode === 'replace' && KEEP_IN_PLACE.includes(name));
  const words: Record<PlanAction, string> = { add: 'would add', replace: 'would replace', remove: 'would remove' };
  const plan = planRestore(config.target, index, config.mode, {
    ignoreTopLevel,
    onItem: (action, item) =>
      log.info(`restore.plan.${action}`, `${words[action]} ${item.path}${item.kind === 'file' && action !== 'remove' ? ` (${humanBytes(item.bytes)})` : ''}`, { path: item.path, kind: item.kind, bytes: item.bytes }),
  });
  if (config.snapshot && targetHasData(config.target, pending)) {
    log.info('restore.plan.snapshot', `would first save the current contents of ${config.target} as a pre-restore snapshot (prefix ${snapshotPrefix(config.prefix)})`, {
      prefix: snapshotPrefix(config.prefix),
    });
  }
  log.info(
    'restore.plan',
    `dry run of ${source.name} into ${config.target} (${config.mode})${pathsText(config)}: would add ${plan.add} (${humanBytes(plan.addBytes)}), ` +
      `replace ${plan.replace} (${humanBytes(plan.replaceBytes)}), remove ${plan.remove} (${humanBytes(plan.removeBytes)}); ${plan.unchanged} unchanged; nothing was changed`,
    {
      archive: source.name,
      target: config.target,
      mode: config.mode,
      add: plan.add,
      addBytes: plan.addBytes,
      replace: plan.replace,
      replaceBytes: plan.replaceBytes,
      remove: plan.remove,
      removeBytes: plan.removeBytes,
      unchanged: plan.unchanged,
      paths: config.paths?.paths,
      dryRun: true,
    },
  );
  return plan;
}

/** A failed pre-restore snapshot: nothing was restored, and what to do about it. */
export function snapshotFailed(config: RestoreConfig, error: unknown): OperationError {
  const message = error instanceof RunnerError ? error.message : describeSystemError(error);
  return new OperationError(
    `the pre-restore snapshot of ${config.target} failed, nothing was restored: ${message}; fix that, or pass --no-snapshot to restore without saving the current contents`,
    error instanceof RunnerError ? error.code : 'SNAPSHOT',
    { cause: error },
  );
}

/**
 * What a pre-restore snapshot backs up and how, wherever it goes (DEST, or the bucket): the
 * whole target except `leaveOut` (top-level names), zstd, nothing left out silently.
 */
export function snapshotSettings(config: RestoreConfig, leaveOut: readonly string[]) {
  return {
    command: 'backup' as const,
    prefix: snapshotPrefix(config.prefix),
    logFormat: config.logFormat,
    lockStaleSeconds: config.lockStaleSeconds,
    progressSeconds: config.progressSeconds,
    source: config.target,
    compression: 'zstd' as const,
    level: 3,
    excludes: leaveOut.map((n) => `/${n}`),
    allowEmpty: true,
    skipUnreadable: false,
    sqlite: [],
    dumps: undefined,
    xattrs: true,
  };
}

function* onlySelected(entries: Iterable<IndexEntry>, paths: PathSelection): Generator<IndexEntry> {
  for (const entry of entries) if (paths.includes(entry.rel)) yield entry;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
