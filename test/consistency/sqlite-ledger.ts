import { createHash } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { pathToFileURL } from 'node:url';

/** The ledger that test/consistency/sqlite-writer.ts writes, and what a consistent copy of it holds. */

export const ACCOUNTS = 16;

export const digest = (seq: number): string => createHash('sha256').update(`commit ${seq}`).digest('hex');

export interface LedgerState {
  /** The newest commit in the file (meta.last_seq). */
  lastSeq: number;
  commits: number;
  maxSeq: number;
  /** Commits whose digest is not digest(seq): torn or foreign rows. */
  badDigests: number;
  balanceSum: number;
  integrity: string[];
}

/**
 * Reads a ledger file. By default without changing it (opened immutable: the file is a copy
 * nothing else writes); `asApplication` opens it read-write the way an application starting on
 * restored files would, which rolls back a hot journal or replays a -wal first.
 */
export function readLedger(file: string, options: { asApplication?: boolean } = {}): LedgerState {
  const url = pathToFileURL(file);
  if (!options.asApplication) url.searchParams.set('immutable', '1');
  const db = new DatabaseSync(url, { readOnly: !options.asApplication });
  try {
    const integrity = (db.prepare('PRAGMA integrity_check').all() as { integrity_check: string }[]).map((r) => r.integrity_check);
    const { lastSeq } = db.prepare('SELECT last_seq AS lastSeq FROM meta WHERE id = 1').get() as { lastSeq: number };
    const { commits, maxSeq } = db.prepare('SELECT count(*) AS commits, coalesce(max(seq), 0) AS maxSeq FROM commits').get() as { commits: number; maxSeq: number };
    let badDigests = 0;
    for (const row of db.prepare('SELECT seq, digest FROM commits').iterate() as Iterable<{ seq: number; digest: string }>) {
      if (row.digest !== digest(row.seq)) badDigests++;
    }
    const { balanceSum } = db.prepare('SELECT sum(balance) AS balanceSum FROM accounts').get() as { balanceSum: number };
    return { lastSeq, commits, maxSeq, badDigests, balanceSum, integrity };
  } finally {
    db.close();
  }
}
