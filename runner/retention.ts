import { UsageError } from './errors.js';
import { type ArchiveName, compareNewestFirst } from './store/naming.js';

/**
 * Which archives of one prefix to keep and which to delete. Pure: no I/O, no clock.
 *
 * Order is by the UTC time in the name, then by the same-second sequence number (`-2`,
 * `-3`, … `-10`, numerically: `-10` is newer than `-9`). File mtimes and raw string order are
 * never used: an archive copied or touched later does not become "newer". Two names with the
 * same time and sequence (possible only across compressions, e.g. `….tar.gz` and `….tar.zst`
 * from different tools or clock skew) are ordered by name so the plan is deterministic; both
 * count toward `keepLast`.
 *
 * Guarantees: the newest `keepLast` archives are kept; the newest archive is never removed; a
 * non-empty input never yields an empty `keep`; only archives given are planned (the caller
 * passes archives of one prefix, already filtered by the naming pattern).
 */

export interface PrunePlan<T extends ArchiveName> {
  /** Newest first. */
  keep: T[];
  /** Newest first; delete oldest first. */
  remove: T[];
}

export function compareForRetention(a: ArchiveName, b: ArchiveName): number {
  return compareNewestFirst(a, b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

export function planPrune<T extends ArchiveName>(archivesNewestFirst: readonly T[], keepLast: number): PrunePlan<T> {
  if (!Number.isInteger(keepLast) || keepLast < 1) {
    throw new UsageError(`--keep-last must be a whole number of at least 1 (the newest archive is always kept), got ${keepLast}`);
  }
  const prefixes = new Set(archivesNewestFirst.map((a) => a.prefix));
  if (prefixes.size > 1) throw new Error(`planPrune: archives of several prefixes given (${[...prefixes].join(', ')}); plan one prefix at a time`);
  const names = new Set(archivesNewestFirst.map((a) => a.name));
  if (names.size !== archivesNewestFirst.length) throw new Error('planPrune: the same archive was given twice');

  // Sort a copy: the plan must not depend on the caller having sorted correctly.
  const ordered = [...archivesNewestFirst].sort(compareForRetention);
  const keep = ordered.slice(0, keepLast);
  const remove = ordered.slice(keepLast);
  if (ordered.length > 0 && keep.length === 0) throw new Error('planPrune: refusing to remove every archive');
  return { keep, remove };
}
