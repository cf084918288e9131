import type { PruneConfig } from '../config.js';
import { OperationError, describeSystemError } from '../errors.js';
import { type Logger, humanBytes } from '../log.js';
import { type PrunePlan, planPrune } from '../retention.js';
import { fsyncDirectory, removeLeftoverPartials } from '../store/atomic.js';
import { type ArchiveInfo, listArchives, readManifest } from '../store/catalog.js';
import { acquireLock, logLockWarnings } from '../store/lock.js';
import { deleteArchive, findOrphanedSidecars, removeFiles } from '../store/prune.js';

export interface PruneOptions {
  /** Print what would be deleted; delete nothing. */
  dryRun: boolean;
  log: Logger;
}

export interface PruneResult {
  prefix: string;
  keepLast: number;
  dryRun: boolean;
  /** Archives of the prefix before pruning. */
  total: number;
  /** Names kept, newest first. */
  kept: string[];
  /** Archives deleted (or that would be, on a dry run), oldest first. */
  removed: string[];
  /** Bytes of the archives deleted (or that would be). */
  removedBytes: number;
  /** Orphaned sidecars deleted (or that would be). */
  orphans: string[];
}

function archives(n: number): string {
  return `${n} archive${n === 1 ? '' : 's'}`;
}

/**
 * Deletes the archives of `prefix` beyond the newest `keepLast`, each with its sidecars
 * (archive first), oldest first, then orphaned sidecars of that prefix. Takes no lock: the
 * caller holds it (the backup command prunes under the lock it already has), or it is a dry
 * run. Files that do not follow the naming pattern with exactly this prefix are never touched.
 * A deletion that fails is logged; the others still run, and the call then throws (exit 1).
 */
export async function pruneArchives(dest: string, prefix: string, keepLast: number, options: PruneOptions): Promise<PruneResult> {
  const { dryRun, log } = options;
  const all = await listArchives(dest, prefix);
  const plan = planPrune(all, keepLast);
  await keepNewestSound(dest, plan, keepLast, log);
  const oldestFirst = [...plan.remove].reverse();
  const removed: string[] = [];
  let removedBytes = 0;
  const failures: { name: string; error: unknown }[] = [];

  for (const archive of oldestFirst) {
    const fields = { archive: archive.name, bytes: archive.size, createdAt: archive.time.toISOString().replace(/\.\d{3}Z$/, 'Z') };
    if (dryRun) {
      log.info('prune.would-delete', `would delete ${archive.name} (${humanBytes(archive.size)})`, fields);
      removed.push(archive.name);
      removedBytes += archive.size;
      continue;
    }
    try {
      const files = await deleteArchive(dest, archive.name);
      log.info('prune.delete', `deleted ${archive.name} (${humanBytes(archive.size)})`, { ...fields, files });
      removed.push(archive.name);
      removedBytes += archive.size;
    } catch (error) {
      failures.push({ name: archive.name, error });
      log.error('prune.delete-failed', `could not delete ${archive.name}: ${describeSystemError(error)}`, { archive: archive.name });
    }
  }

  const orphanCandidates = await findOrphanedSidecars(dest, prefix);
  let orphans: string[];
  if (dryRun) {
    orphans = orphanCandidates;
    for (const name of orphans) log.info('prune.would-delete-orphan', `would delete ${name} (its archive is gone)`, { file: name });
  } else {
    const outcome = await removeFiles(dest, orphanCandidates);
    orphans = outcome.removed;
    for (const name of orphans) log.info('prune.delete-orphan', `deleted ${name} (its archive is gone)`, { file: name });
    // A leftover sidecar is untidy, not dangerous: warn and let the next prune retry.
    for (const { name, error } of outcome.failed) {
      log.warn('prune.orphan-failed', `could not delete ${name} (its archive is gone): ${describeSystemError(error)}`, { file: name });
    }
  }
  if (!dryRun && (removed.length > 0 || orphans.length > 0)) await fsyncDirectory(dest);

  const result: PruneResult = {
    prefix,
    keepLast,
    dryRun,
    total: all.length,
    kept: plan.keep.map((a) => a.name),
    removed,
    removedBytes,
    orphans,
  };
  const summaryFields = {
    prefix,
    dest,
    total: result.total,
    keepLast,
    kept: result.kept.length,
    removed: removed.length,
    removedBytes,
    orphans: orphans.length,
    dryRun,
  };
  if (plan.remove.length === 0) {
    log.info('prune.summary', `Nothing to prune (${archives(all.length)}, keeping ${keepLast})`, summaryFields);
  } else if (dryRun) {
    log.info('prune.summary', `Would prune ${removed.length} of ${archives(all.length)}, keeping ${result.kept.length} (dry run: nothing deleted)`, summaryFields);
  } else {
    log.info('prune.summary', `Pruned ${removed.length} of ${archives(all.length)}, kept ${result.kept.length}, freed ${humanBytes(removedBytes)}`, summaryFields);
  }

  if (failures.length > 0) {
    const first = failures[0]!;
    throw new OperationError(
      `could not delete ${failures.length} of ${archives(plan.remove.length)} in ${dest} (first: ${first.name}: ${describeSystemError(first.error)})`,
      'PRUNE',
      { cause: first.error },
    );
  }
  return result;
}

/**
 * Whether an archive looks valid without reading it: both sidecars present, the manifest
 * readable, the file as long as the manifest says, and no failed verification recorded.
 */
async function looksSound(dest: string, archive: ArchiveInfo): Promise<boolean> {
  if (!archive.hasSha256 || !archive.hasManifest) return false;
  try {
    const manifest = await readManifest(dest, archive.name);
    return manifest !== undefined && manifest.archiveBytes === archive.size && manifest.verification?.ok !== false;
  } catch {
    return false;
  }
}

/**
 * Prune never deletes the only valid archive: when none of the newest N looks valid (truncated,
 * sidecars missing, a failed verification recorded, an unreadable manifest), the newest archive
 * that does is kept as well, with a warning.
 */
async function keepNewestSound(dest: string, plan: PrunePlan<ArchiveInfo>, keepLast: number, log: Logger): Promise<void> {
  if (plan.remove.length === 0) return;
  for (const kept of plan.keep) if (await looksSound(dest, kept)) return;
  const index = await (async () => {
    for (let i = 0; i < plan.remove.length; i++) if (await looksSound(dest, plan.remove[i]!)) return i;
    return -1;
  })();
  if (index === -1) return;
  const [saved] = plan.remove.splice(index, 1);
  plan.keep.push(saved!);
  log.warn(
    'prune.keeping-valid',
    `none of the newest ${keepLast} archive${keepLast === 1 ? '' : 's'} looks valid (truncated, missing sidecars, failed verification or unreadable manifest); also keeping ${saved!.name}, the newest that does`,
    { archive: saved!.name, keepLast },
  );
}

/**
 * `pvc-backup prune`: takes the directory lock (exit 4 when another run holds it), removes
 * leftover partials of killed runs, and prunes. A dry run takes no lock and changes nothing,
 * so it can be run while a backup is in progress.
 */
export async function runPrune(config: PruneConfig, log: Logger): Promise<PruneResult> {
  if (config.dryRun) return pruneArchives(config.dest, config.prefix, config.keepLast, { dryRun: true, log });
  const lock = await acquireLock(config.dest, { command: 'prune', staleSeconds: config.lockStaleSeconds, onWarning: logLockWarnings(log) });
  try {
    const partials = await removeLeftoverPartials(config.dest);
    if (partials.length > 0) {
      log.info('store.partials-removed', `removed ${partials.length} leftover partial file${partials.length === 1 ? '' : 's'} of an interrupted run`, { files: partials });
    }
    return await pruneArchives(config.dest, config.prefix, config.keepLast, { dryRun: false, log });
  } finally {
    await lock.release();
  }
}
