import type { OnBucket, PruneConfig } from '../config.js';
import { OperationError, describeSystemError } from '../errors.js';
import { type Logger, humanBytes } from '../log.js';
import {
  type KeepReason,
  type PlannedArchive,
  type RetentionArchive,
  type RetentionHealth,
  type RetentionPlan,
  type RetentionPolicy,
  type Tier,
  describePolicy,
  describeReason,
  planRetention,
} from '../retention.js';
import { catalogOf, readRepositoryRecord } from '../repository/catalog.js';
import { LocalRepository } from '../repository/local.js';
import { openRepository, targetOf } from '../repository/open.js';
import type { Repository } from '../repository/repository.js';
import { fsyncDirectory } from '../store/atomic.js';
import type { ArchiveInfo } from '../store/catalog.js';
import { logLockWarnings } from '../store/lock.js';
import { judgeHealth } from '../store/prune.js';

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
  /** The same as text, or why it goes. */
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
type Failure = { name: string; error: unknown };

function archives(n: number): string {
  return `${n} archive${n === 1 ? '' : 's'}`;
}

function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Whether health decides anything: only calendar tiers skip failed archives (keep-last counts every archive). */
function hasCalendarTiers(policy: Record<Tier, number>): boolean {
  return Object.entries(policy).some(([tier, n]) => tier !== 'last' && n > 0);
}

/** For a failed archive, why no calendar tier counted it (said only when the policy has calendar tiers). */
function failureNote(archive: Candidate, calendar: boolean): string | undefined {
  return calendar && archive.health === 'failed' ? `${archive.problem}, so it counts toward no calendar tier` : undefined;
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
    why: planned.keep ? planned.reasons.map(describeReason).join(', ') : (failureNote(archive, calendar) ?? 'no rule keeps it'),
    deleted: null,
  };
}

/** The archives of `prefix`, each with its health, planned by the policy. */
async function planPrefix(repository: Repository, prefix: string, policy: RetentionPolicy): Promise<RetentionPlan<Candidate>> {
  const candidates: Candidate[] = [];
  // A bucket's archives without a manifest object (incomplete uploads) are not among them: never counted, never deleted here.
  for (const archive of (await catalogOf(repository, prefix)).archives) {
    candidates.push({ ...archive, ...(await judgeHealth(archive, () => readRepositoryRecord(repository, archive))) });
  }
  return planRetention(candidates, policy);
}

function warnKeepingValid(plan: RetentionPlan<Candidate>, log: Logger): void {
  const saved = plan.archives.find((entry) => entry.reasons.some((r) => r.rule === 'newest-valid'));
  if (!saved) return;
  log.warn(
    'prune.keeping-valid',
    `no rule of the policy (${describePolicy(plan.policy)}) keeps an archive that looks valid (not truncated, sidecars present, no failed verification, a readable manifest); also keeping ${saved.archive.name}, the newest that does`,
    { archive: saved.archive.name },
  );
}

/**
 * One line per archive, oldest first (the order deletions happen in, and the order restic lists
 * its plan in): on a dry run, what would be kept and why, and what would be deleted; otherwise
 * each deletion as it happens. A failed deletion is logged and the others still run.
 */
async function carryOut(repository: Repository, plan: RetentionPlan<Candidate>, entries: Map<string, PrunedArchive>, { dryRun, log }: PruneOptions) {
  const calendar = hasCalendarTiers(plan.policy);
  const removed: string[] = [];
  let removedBytes = 0;
  const failures: Failure[] = [];
  for (const { archive, keep, reasons } of [...plan.archives].reverse()) {
    const entry = entries.get(archive.name)!;
    const note = failureNote(archive, calendar);
    const fields = { archive: archive.name, bytes: archive.size, createdAt: entry.createdAt, ...(note ? { problem: archive.problem } : {}) };
    const suffix = note ? `; ${note}` : '';
    if (keep) {
      if (dryRun) log.info('prune.would-keep', `would keep ${archive.name}: ${entry.why}${suffix}`, { ...fields, rules: reasons.map((r) => r.rule) });
      continue;
    }
    if (dryRun) {
      log.info('prune.would-delete', `would delete ${archive.name} (${humanBytes(archive.size)})${suffix}`, fields);
    } else {
      try {
        const outcome = await repository.deleteArchive(archive.name);
        if (outcome.status === 'retained') {
          // Object Lock / WORM, or credentials without delete: the data is safe, only retention is not applied.
          log.warn('prune.retained', `${repository.location} refused to delete ${archive.name}: ${outcome.reason}; it stays (Object Lock or credentials without delete?)`, {
            ...fields,
            files: outcome.removed,
          });
          entry.deleted = false;
          continue;
        }
        log.info('prune.delete', `deleted ${archive.name} (${humanBytes(archive.size)})${suffix}`, { ...fields, files: outcome.removed });
        entry.deleted = true;
      } catch (error) {
        failures.push({ name: archive.name, error });
        entry.deleted = false;
        log.error('prune.delete-failed', `could not delete ${archive.name}: ${describeSystemError(error)}`, { archive: archive.name });
        continue;
      }
    }
    removed.push(archive.name);
    removedBytes += archive.size;
  }
  return { removed, removedBytes, failures };
}

/** Sidecars of the prefix whose archive is gone (an interrupted prune's leftovers). */
async function removeOrphans(repository: Repository, prefix: string, { dryRun, log }: PruneOptions): Promise<string[]> {
  const candidates = (await repository.list(prefix)).orphans;
  if (dryRun) {
    for (const name of candidates) log.info('prune.would-delete-orphan', `would delete ${name} (its archive is gone)`, { file: name });
    return candidates;
  }
  const outcome = await repository.deleteFiles(candidates);
  for (const name of outcome.removed) log.info('prune.delete-orphan', `deleted ${name} (its archive is gone)`, { file: name });
  // A leftover sidecar is untidy, not dangerous: warn and let the next prune retry.
  for (const { name, error } of outcome.failed) {
    log.warn('prune.orphan-failed', `could not delete ${name} (its archive is gone): ${describeSystemError(error)}`, { file: name });
  }
  return outcome.removed;
}

function logSummary(location: string, plan: RetentionPlan<Candidate>, result: PruneResult, log: Logger): void {
  const fields = {
    prefix: result.prefix,
    dest: location,
    total: result.total,
    policy: Object.fromEntries(Object.entries(plan.policy).filter(([, n]) => n > 0)),
    kept: result.kept.length,
    removed: result.removed.length,
    removedBytes: result.removedBytes,
    orphans: result.orphans.length,
    dryRun: result.dryRun,
  };
  const of = `${result.removed.length} of ${archives(result.total)}`;
  if (plan.remove.length === 0) {
    // The count alone for keep-last, as it always read; the tiers otherwise.
    const keeping = hasCalendarTiers(plan.policy) ? describePolicy(plan.policy) : String(plan.policy.last);
    log.info('prune.summary', `Nothing to prune (${archives(result.total)}, keeping ${keeping})`, fields);
  } else if (result.dryRun) {
    log.info('prune.summary', `Would prune ${of}, keeping ${result.kept.length} (dry run: nothing deleted)`, fields);
  } else {
    log.info('prune.summary', `Pruned ${of}, kept ${result.kept.length}, freed ${humanBytes(result.removedBytes)}`, fields);
  }
}

/** The steps of a prune, under a lock the caller holds (or none, on a dry run). Failed deletions are returned, not thrown. */
async function applyPolicy(repository: Repository, prefix: string, policy: RetentionPolicy, options: PruneOptions): Promise<{ result: PruneResult; failures: Failure[] }> {
  const plan = await planPrefix(repository, prefix, policy);
  warnKeepingValid(plan, options.log);
  const calendar = hasCalendarTiers(plan.policy);
  const entries = new Map(plan.archives.map((p) => [p.archive.name, toPruned(p, calendar)]));
  const { removed, removedBytes, failures } = await carryOut(repository, plan, entries, options);
  const orphans = await removeOrphans(repository, prefix, options);
  if (!options.dryRun && (removed.length > 0 || orphans.length > 0) && repository instanceof LocalRepository) await fsyncDirectory(repository.dir);
  const result: PruneResult = {
    prefix,
    policy: plan.policy,
    dryRun: options.dryRun,
    total: plan.archives.length,
    kept: plan.keep.map((a) => a.name),
    removed,
    removedBytes,
    orphans,
    archives: [...entries.values()],
  };
  logSummary(repository.location, plan, result, options.log);
  return { result, failures };
}

function throwFailures(dest: string, result: PruneResult, failures: Failure[]): void {
  if (failures.length === 0) return;
  const first = failures[0]!;
  const planned = result.archives.filter((a) => a.action === 'delete').length;
  throw new OperationError(
    `could not delete ${failures.length} of ${archives(planned)} in ${dest} (first: ${first.name}: ${describeSystemError(first.error)})`,
    'PRUNE',
    { cause: first.error },
  );
}

/**
 * Applies the retention policy to the archives of `prefix`: deletes the archives no rule keeps,
 * each with its sidecars (archive first), oldest first, then orphaned sidecars of that prefix.
 * Takes no lock: the caller holds it (the backup command prunes under the lock it already has),
 * or it is a dry run. Files that do not follow the naming pattern with exactly this prefix are
 * never touched. A deletion that fails is logged; the others still run, and the call then
 * throws (exit 1).
 */
export async function pruneArchives(where: string | Repository, prefix: string, policy: RetentionPolicy, options: PruneOptions): Promise<PruneResult> {
  const repository = typeof where === 'string' ? new LocalRepository(where) : where;
  const { result, failures } = await applyPolicy(repository, prefix, policy, options);
  throwFailures(repository.location, result, failures);
  return result;
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
 * `out`, also when a deletion failed (before that failure is reported).
 */
export async function runPrune(config: PruneConfig | OnBucket<PruneConfig>, log: Logger, out: (text: string) => void = () => {}): Promise<PruneResult> {
  const repository = await openRepository(targetOf(config));
  const finish = ({ result, failures }: { result: PruneResult; failures: Failure[] }) => {
    if (config.json) out(JSON.stringify(pruneReport(result), null, 2));
    throwFailures(repository.location, result, failures);
    return result;
  };
  if (config.dryRun) return finish(await applyPolicy(repository, config.prefix, config.retention, { dryRun: true, log }));
  const lock = await repository.lock({ command: 'prune', staleSeconds: config.lockStaleSeconds, onWarning: logLockWarnings(log) });
  try {
    const partials = await repository.removeLeftovers();
    if (partials.length > 0) {
      const what = repository.kind === 'bucket' ? 'unfinished upload' : 'leftover partial file';
      log.info('store.partials-removed', `removed ${partials.length} ${what}${partials.length === 1 ? '' : 's'} of an interrupted run`, { files: partials });
    }
    return finish(await applyPolicy(repository, config.prefix, config.retention, { dryRun: false, log }));
  } finally {
    await lock.release();
  }
}
