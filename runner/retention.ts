import { UsageError } from './errors.js';
import { type ArchiveName, compareNewestFirst } from './store/naming.js';

/**
 * Which archives of one prefix to keep and which to delete, and why. Pure: no I/O, no clock,
 * so the same plan serves the backup directory and a bucket.
 *
 * The policy has restic's semantics (`restic forget --keep-*`, as of restic 0.16):
 * - archives are taken newest first;
 * - `last N` keeps the newest N archives;
 * - each calendar tier (hourly, daily, weekly, monthly, yearly) walks the archives newest first
 *   and keeps one whenever its period (hour, day, ISO week, month, year, in UTC by the time in
 *   the name) differs from that of the last archive the tier kept, until its count is used up;
 *   so each tier keeps the newest archive of each of its N most recent periods that have one;
 * - one archive may be kept by several tiers, and then counts for each of them;
 * - when a tier still has room once it reaches the oldest archive, it keeps that one too, even
 *   if its period is already represented (the longest history the counts allow).
 *
 * Order is by the UTC time in the name, then by the same-second sequence number (`-2`, `-3`, …
 * `-10`, numerically), then by name for exact ties across compressions. File mtimes and raw
 * string order are never used.
 *
 * Guarantees beyond restic's:
 * - a policy that keeps nothing (every count 0 or missing) is refused with a usage error;
 * - an archive whose verification failed never counts toward a calendar tier (the plan says
 *   so); `last N` counts the newest N archives whatever their state, as keep-last always has;
 * - the newest archive that has not failed verification is always kept;
 * - a non-empty input never yields an empty keep: when nothing else would be kept (every
 *   archive failed verification and no `last` count), the newest archive is kept.
 */

export const TIERS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
export type Tier = (typeof TIERS)[number];
export type CalendarTier = Exclude<Tier, 'last'>;

/** How many archives each tier keeps; 0 or absent means the tier is off. */
export type RetentionPolicy = Partial<Record<Tier, number>>;

/** What retention knows of an archive's health (from its sidecars, or a bucket's listing). */
export type RetentionHealth = 'verified' | 'unverified' | 'failed';

/** The pure input: an archive's name (time, sequence) and whether it may count toward a tier. */
export interface RetentionArchive extends Pick<ArchiveName, 'name' | 'prefix' | 'time' | 'sequence'> {
  health: RetentionHealth;
  /** Why the archive counts as failed; shown in the plan. */
  problem?: string;
}

export type KeepRule = Tier | 'newest-valid' | 'newest';

export interface KeepReason {
  rule: KeepRule;
  /** The tier's period this archive stands for: `2026-01-05T10`, `2026-01-05`, `2026-W02`, `2026-01`, `2026`. */
  period?: string;
  /** This archive is the n-th one the tier keeps (1 = its newest). */
  n?: number;
  /** Of the tier's count. */
  of?: number;
  /** Kept only because the tier still had room when it reached the oldest archive. */
  oldest?: boolean;
}

export interface PlannedArchive<T> {
  archive: T;
  keep: boolean;
  /** Every rule that keeps it, in tier order; empty when it is deleted. */
  reasons: KeepReason[];
}

export interface RetentionPlan<T> {
  /** The policy with every tier spelled out. */
  policy: Record<Tier, number>;
  /** Every archive with its decision, newest first. */
  archives: PlannedArchive<T>[];
  /** Newest first. */
  keep: T[];
  /** Newest first; delete oldest first. */
  remove: T[];
}

/** Newest first, exactly as list and latest order archives. */
export const compareForRetention = compareNewestFirst;

/** The policy with every tier set (0 = off). Throws UsageError for a count that is not a whole number ≥ 0, or a policy that keeps nothing. */
export function normalizePolicy(policy: RetentionPolicy): Record<Tier, number> {
  const full = {} as Record<Tier, number>;
  for (const tier of TIERS) {
    const count = policy[tier] ?? 0;
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new UsageError(
        tier === 'last'
          ? `--keep-last must be at least 1 (or 0 beside another --keep-* above 0), got ${count}`
          : `--keep-${tier} must be 0 or more, got ${count}`,
      );
    }
    full[tier] = count;
  }
  if (TIERS.every((tier) => full[tier] === 0)) {
    throw new UsageError('--keep-last must be at least 1, or another --keep-* above 0: a policy that keeps nothing would delete every archive');
  }
  return full;
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** ISO 8601 week of a UTC time: weeks run Monday to Sunday; week 1 holds the year's first Thursday. */
export function isoWeek(time: Date): { year: number; week: number } {
  const day = Date.UTC(time.getUTCFullYear(), time.getUTCMonth(), time.getUTCDate());
  const weekday = new Date(day).getUTCDay() || 7; // Monday 1 … Sunday 7
  const thursday = new Date(day + (4 - weekday) * 86_400_000);
  const year = thursday.getUTCFullYear();
  const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * 86_400_000)) + 1;
  return { year, week };
}

/** The period of a calendar tier that a UTC time falls in, as text that also serves as its key. */
export function periodOf(tier: CalendarTier, time: Date): string {
  const y = pad(time.getUTCFullYear(), 4);
  const m = pad(time.getUTCMonth() + 1);
  const d = pad(time.getUTCDate());
  switch (tier) {
    case 'hourly':
      return `${y}-${m}-${d}T${pad(time.getUTCHours())}`;
    case 'daily':
      return `${y}-${m}-${d}`;
    case 'weekly': {
      const { year, week } = isoWeek(time);
      return `${pad(year, 4)}-W${pad(week)}`;
    }
    case 'monthly':
      return `${y}-${m}`;
    case 'yearly':
      return y;
  }
}

function checkInput(archives: readonly RetentionArchive[]): void {
  const prefixes = new Set(archives.map((a) => a.prefix));
  if (prefixes.size > 1) throw new Error(`planRetention: archives of several prefixes given (${[...prefixes].join(', ')}); plan one prefix at a time`);
  const names = new Set(archives.map((a) => a.name));
  if (names.size !== archives.length) throw new Error('planRetention: the same archive was given twice');
}

/** Applies `policy` to the archives of one prefix (in any order). Does not modify its input. */
export function planRetention<T extends RetentionArchive>(archives: readonly T[], policy: RetentionPolicy): RetentionPlan<T> {
  const full = normalizePolicy(policy);
  checkInput(archives);
  // Sort a copy: the plan must not depend on the caller having sorted correctly.
  const ordered = [...archives].sort(compareForRetention);
  const reasons = new Map<T, KeepReason[]>(ordered.map((a) => [a, []]));

  ordered.slice(0, full.last).forEach((archive, i) => reasons.get(archive)!.push({ rule: 'last', n: i + 1, of: full.last }));

  const countable = ordered.filter((a) => a.health !== 'failed');
  for (const tier of TIERS) {
    if (tier === 'last' || full[tier] === 0) continue;
    let lastKept: string | undefined;
    let used = 0;
    for (const [i, archive] of countable.entries()) {
      if (used === full[tier]) break;
      const period = periodOf(tier, archive.time);
      const isOldest = i === countable.length - 1;
      if (period === lastKept && !isOldest) continue;
      used++;
      reasons.get(archive)!.push({ rule: tier, period, n: used, of: full[tier], ...(period === lastKept ? { oldest: true } : {}) });
      lastKept = period;
    }
  }

  const newestValid = countable[0];
  if (newestValid && reasons.get(newestValid)!.length === 0) reasons.get(newestValid)!.push({ rule: 'newest-valid' });
  if (ordered.length > 0 && ordered.every((a) => reasons.get(a)!.length === 0)) reasons.get(ordered[0]!)!.push({ rule: 'newest' });

  const planned = ordered.map((archive) => ({ archive, keep: reasons.get(archive)!.length > 0, reasons: reasons.get(archive)! }));
  return {
    policy: full,
    archives: planned,
    keep: planned.filter((p) => p.keep).map((p) => p.archive),
    remove: planned.filter((p) => !p.keep).map((p) => p.archive),
  };
}

/** One reason as a person reads it: `last 1/3`, `daily 2026-01-05 (2/7)`, `yearly 2019 (3/3, oldest archive)`. */
export function describeReason(reason: KeepReason): string {
  switch (reason.rule) {
    case 'last':
      return `last ${reason.n}/${reason.of}`;
    case 'newest-valid':
      return 'newest archive that has not failed verification';
    case 'newest':
      return 'newest archive (every archive failed verification; prune never deletes them all)';
    default:
      return `${reason.rule} ${reason.period} (${reason.n}/${reason.of}${reason.oldest ? ', oldest archive' : ''})`;
  }
}

/** The policy's tiers above 0, as on the command line: `last 3, daily 7, weekly 4`. */
export function describePolicy(policy: RetentionPolicy): string {
  return TIERS.filter((t) => (policy[t] ?? 0) > 0)
    .map((t) => `${t} ${policy[t]}`)
    .join(', ');
}

export interface PrunePlan<T extends ArchiveName> {
  /** Newest first. */
  keep: T[];
  /** Newest first; delete oldest first. */
  remove: T[];
}

/** Keep-last alone over names only (no health known): the newest `keepLast` archives. */
export function planPrune<T extends ArchiveName>(archivesNewestFirst: readonly T[], keepLast: number): PrunePlan<T> {
  if (!Number.isInteger(keepLast) || keepLast < 1) {
    throw new UsageError(`--keep-last must be a whole number of at least 1 (the newest archive is always kept), got ${keepLast}`);
  }
  const plan = planRetention(
    archivesNewestFirst.map((archive) => ({ ...archive, health: 'unverified' as const, archive })),
    { last: keepLast },
  );
  return { keep: plan.keep.map((p) => p.archive), remove: plan.remove.map((p) => p.archive) };
}
