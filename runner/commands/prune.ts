import type { PruneConfig } from '../config.js';
import { OperationError, describeSystemError } from '../errors.js';
import { type Logger, humanBytes } from '../log.js';
import {
  type KeepReason,
  type PlannedArchive,
  type RetentionArchive,
  type RetentionHealth,
  type RetentionPolicy,
  type Tier,
  describePolicy,
  describeReason,
  planRetention,
} from '../retention.js';
import { fsyncDirectory, removeLeftoverPartials } from '../store/atomic.js';
import { type ArchiveInfo, listArchives, readManifest } from '../store/catalog.js';
import { acquireLock, logLockWarnings } from '../store/lock.js';
import { manifestName, sha256Name } from '../store/naming.js';
import { deleteArchive, findOrphanedSidecars, removeFiles } from '../store/prune.js';

export interface PruneOptions {
  /** Print what would be deleted; delete nothing. */
  dryRun: boolean;
  log: Logger;
}

/** One archive in the plan, as `prune --json` prints it. Field names are part of the public interface. */
export interface PrunedArchive {
  name: string;
  /** UTC time from the name: `YYYY-MM-DDTHH:MM:SSZ`. */
  createdAt: string;
  bytes: number;
  health: RetentionHealth;
  /** Why the archive counts as failed (then it counts toward no calendar tier); null otherwise. */
  problem: string | null;
  action: 'keep' | 'delete';
  /** The rules that keep it; empty for a deletion. */
  reasons: KeepReason[];
  /** The same, as text. */
  why: string;
  /** Real runs: whether the deletion succeeded (null for kept archives and on a dry run). */
  deleted: boolean | null;
}

export interface PruneResult {
  prefix: string;
  /** Every tier, 0 = off. */
  policy: Record<Tier, number>;
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
  /** Every archive with its decision, newest first. */
  archives: PrunedArchive[];
}

type Candidate = ArchiveInfo & RetentionArchive;

function archives(n: number): string {
  return `${n} archive${n === 1 ? '' : 's'}`;
}

function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * An archive's health for retention, from its sidecars without reading the archive: failed when
 * a sidecar is missing, the manifest is unreadable, the file is not as long as the manifest says
 * or the manifest records a failed verification; verified when it records a passed one.
 */
export async function healthOf(dest: string, archive: ArchiveInfo): Promise<{ health: RetentionHealth; problem?: string }> {
  if (!archive.hasSha256) return { health: 'failed', problem: `its checksum file ${sha256Name(archive.name)} is missing` };
  if (!archive.hasManifest) return { health: 'failed', problem: `its manifest ${manifestName(archive.name)} is missing` };
  let manifest;
  try {
    manifest = await readManifest(dest, archive.name);
  } catch (error) {
    return { health: 'failed', problem: `its manifest cannot be read (${describeSystemError(error)})` };
  }
  if (!manifest) return { health: 'failed', problem: `its manifest ${manifestName(archive.name)} is missing` };
  if (manifest.archiveBytes !== archive.size) {
    return {
      health: 'failed',
      problem: typeof manifest.archiveBytes === 'number' ? `it is ${archive.size} bytes but its manifest says ${manifest.archiveBytes} (truncated or replaced)` : 'its manifest does not record the archive size',
    };
  }
  const v = manifest.verification;
  if (v && typeof v === 'object' && v.ok !== true) return { health: 'failed', problem: `its last verification failed${typeof v.error === 'string' ? `: ${v.error}` : ''}` };
  return { health: v?.ok === true ? 'verified' : 'unverified' };
}

/** Whether health decides anything: only calendar tiers skip failed archives (keep-last counts every archive). */
function hasCalendarTiers(policy: Record<Tier, number>): boolean {
  return Object.entries(policy).some(([tier, n]) => tier !== 'last' && n > 0);
}

function describeDecision(planned: PlannedArchive<Candidate>, calendar: boolean): string {
  if (planned.keep) return planned.reasons.map(describeReason).join(', ');
  return calendar && planned.archive.health === 'failed' ? 'failed verification, so it counts toward no calendar tier, and no --keep-last slot keeps it' : 'no rule keeps it';
}

function toPruned(planned: PlannedArchive<Candidate>, calendar: boolean): PrunedArchive {
  const { archive } = planned;
  return {
    name: archive.name,
    createdAt: isoSeconds(archive.time),
    bytes: archive.size,
    health: archive.health,
    problem: archive.problem ?? null,
    action: planned.keep ? 'keep' : 'delete',
    reasons: planned.reasons,
    why: describeDecision(planned, calendar),
    deleted: null,
  };
}

/** `keeping …` in the summary: the count alone for keep-last (as it always read), the tiers otherwise. */
function keepingText(policy: Record<Tier, number>): string {
  return hasCalendarTiers(policy) ? describePolicy(policy) : String(policy.last);
}

/**
 * Applies the retention policy to the archives of `prefix`: deletes the archives no rule keeps,
 * each with its sidecars (archive first), oldest first, then orphaned sidecars of that prefix.
 * Takes no lock: the caller holds it (the backup command prunes under the lock it already has),
 * or it is a dry run. Files that do not follow the naming pattern with exactly this prefix are
 * never touched. A deletion that fails is logged; the others still run, and the call then
 * throws (exit 1).
 */
export async function pruneArchives(dest: string, prefix: string, policy: RetentionPolicy, options: PruneOptions): Promise<PruneResult> {
  const { result, failures } = await applyPolicy(dest, prefix, policy, options);
  throwFailures(dest, result, failures);
  return result;
}

async function applyPolicy(dest: string, prefix: string, policy: RetentionPolicy, options: PruneOptions) {
  const { dryRun, log } = options;
  const all = await listArchives(dest, prefix);
  const candidates: Candidate[] = [];
  for (const archive of all) candidates.push({ ...archive, ...(await healthOf(dest, archive)) });
  const plan = planRetention(candidates, policy);
  const calendar = hasCalendarTiers(plan.policy);
  const pruned = new Map(plan.archives.map((p) => [p.archive.name, toPruned(p, calendar)]));

  for (const entry of plan.archives) {
    if (entry.reasons.some((r) => r.rule === 'newest-valid')) {
      log.warn(
        'prune.keeping-valid',
        `no rule of the policy (${describePolicy(plan.policy)}) keeps an archive that looks valid (truncated, missing sidecars, failed verification or unreadable manifest); also keeping ${entry.archive.name}, the newest that does`,
        { archive: entry.archive.name },
      );
    }
  }

  const removed: string[] = [];
  let removedBytes = 0;
  const failures: { name: string; error: unknown }[] = [];
  // Oldest first: the order deletions happen in, and the order restic lists its plan in.
  for (const entry of [...plan.archives].reverse()) {
    const { archive } = entry;
    const item = pruned.get(archive.name)!;
    const fields = { archive: archive.name, bytes: archive.size, createdAt: item.createdAt, ...(calendar && archive.problem ? { problem: archive.problem } : {}) };
    const failedNote = calendar && archive.health === 'failed' ? `; ${archive.problem}, so it counts toward no calendar tier` : '';
    if (entry.keep) {
      if (dryRun) log.info('prune.would-keep', `would keep ${archive.name}: ${item.why}${failedNote}`, { ...fields, rules: entry.reasons.map((r) => r.rule) });
      continue;
    }
    if (dryRun) {
      log.info('prune.would-delete', `would delete ${archive.name} (${humanBytes(archive.size)})${failedNote}`, fields);
      removed.push(archive.name);
      removedBytes += archive.size;
      continue;
    }
    try {
      const files = await deleteArchive(dest, archive.name);
      log.info('prune.delete', `deleted ${archive.name} (${humanBytes(archive.size)})${failedNote}`, { ...fields, files });
      removed.push(archive.name);
      removedBytes += archive.size;
      item.deleted = true;
    } catch (error) {
      failures.push({ name: archive.name, error });
      item.deleted = false;
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
    policy: plan.policy,
    dryRun,
    total: all.length,
    kept: plan.keep.map((a) => a.name),
    removed,
    removedBytes,
    orphans,
    archives: [...pruned.values()],
  };
  const summaryFields = {
    prefix,
    dest,
    total: result.total,
    policy: Object.fromEntries(Object.entries(plan.policy).filter(([, n]) => n > 0)),
    kept: result.kept.length,
    removed: removed.length,
    removedBytes,
    orphans: orphans.length,
    dryRun,
  };
  const keeping = keepingText(plan.policy);
  if (plan.remove.length === 0) {
    log.info('prune.summary', `Nothing to prune (${archives(all.length)}, keeping ${keeping})`, summaryFields);
  } else if (dryRun) {
    log.info('prune.summary', `Would prune ${removed.length} of ${archives(all.length)}, keeping ${result.kept.length} (dry run: nothing deleted)`, summaryFields);
  } else {
    log.info('prune.summary', `Pruned ${removed.length} of ${archives(all.length)}, kept ${result.kept.length}, freed ${humanBytes(removedBytes)}`, summaryFields);
  }
  return { result, failures };
}

function throwFailures(dest: string, result: PruneResult, failures: { name: string; error: unknown }[]): void {
  if (failures.length === 0) return;
  const first = failures[0]!;
  const planned = result.archives.filter((a) => a.action === 'delete').length;
  throw new OperationError(
    `could not delete ${failures.length} of ${archives(planned)} in ${dest} (first: ${first.name}: ${describeSystemError(first.error)})`,
    'PRUNE',
    { cause: first.error },
  );
}

/** The document `prune --json` prints: the policy and every archive with its decision, newest first. */
export function pruneReport(result: PruneResult) {
  return {
    prefix: result.prefix,
    dryRun: result.dryRun,
    policy: result.policy,
    total: result.total,
    kept: result.kept.length,
    removed: result.removed.length,
    removedBytes: result.removedBytes,
    orphans: result.orphans,
    archives: result.archives,
  };
}

/**
 * `pvc-backup prune`: takes the directory lock (exit 4 when another run holds it), removes
 * leftover partials of killed runs, and prunes. A dry run takes no lock and changes nothing,
 * so it can be run while a backup is in progress. With `--json` the plan is printed through
 * `out` (also when a deletion failed, before the failure is reported).
 */
export async function runPrune(config: PruneConfig, log: Logger, out: (text: string) => void = () => {}): Promise<PruneResult> {
  const report = (result: PruneResult, failures: { name: string; error: unknown }[]) => {
    if (config.json) out(JSON.stringify(pruneReport(result), null, 2));
    throwFailures(config.dest, result, failures);
    return result;
  };
  if (config.dryRun) {
    const { result, failures } = await applyPolicy(config.dest, config.prefix, config.retention, { dryRun: true, log });
    return report(result, failures);
  }
  const lock = await acquireLock(config.dest, { command: 'prune', staleSeconds: config.lockStaleSeconds, onWarning: logLockWarnings(log) });
  try {
    const partials = await removeLeftoverPartials(config.dest);
    if (partials.length > 0) {
      log.info('store.partials-removed', `removed ${partials.length} leftover partial file${partials.length === 1 ? '' : 's'} of an interrupted run`, { files: partials });
    }
    const { result, failures } = await applyPolicy(config.dest, config.prefix, config.retention, { dryRun: false, log });
    return report(result, failures);
  } finally {
    await lock.release();
  }
}
