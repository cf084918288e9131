import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync, backup } from 'node:sqlite';
import { pathToFileURL } from 'node:url';
import { type ExcludeMatcher, excludeMatcher, walkTree } from '../archive/walk.js';
import { IntegrityError, OperationError, UsageError, describeSystemError } from '../errors.js';

/**
 * Consistent online copies of SQLite databases that an application may be writing while the
 * backup runs. Each copy is one read transaction on the live file (SQLite's backup API, all
 * pages in a single step), taken through a read-only connection, then proven with
 * `PRAGMA integrity_check` before anything may archive it.
 *
 * What the live database sees: a reader. The copy never checkpoints, never truncates or
 * deletes the -wal or -shm, and never rolls back a hot journal (it refuses instead). While the
 * copy's read transaction is open, a WAL database's checkpoints cannot move past the copy's
 * snapshot, so the -wal grows by what the application writes meanwhile; the application's next
 * checkpoint catches up. A rollback-journal database holds its writers back for the duration
 * of the copy (they wait in their busy handler, and see SQLITE_BUSY if that is shorter).
 */

/** Everything a single step can copy: sqlite3_backup_step() with more pages than exist never restarts. */
const ALL_PAGES = 2 ** 31 - 1;
const DEFAULT_BUSY_TIMEOUT_MS = 30_000;
const HEADER_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/** The files SQLite keeps beside a database; they belong to the live file, never to its copy. */
export const SQLITE_COMPANION_SUFFIXES = ['-wal', '-shm', '-journal'] as const;

export type JournalMode = 'wal' | 'rollback';

/** How the live file was opened: shared read-only (locks, -shm), or immutable because it was at rest. */
export type OpenedAs = 'read-only' | 'immutable';

export interface SqliteCopy {
  /** The database's path relative to the source root, '/'-separated (its name in the archive). */
  rel: string;
  /** The live database file. */
  source: string;
  /** The consistent copy (the bytes the archive should hold under `rel`). */
  copy: string;
  bytes: number;
  pages: number;
  journalMode: JournalMode;
  openedAs: OpenedAs;
  copySeconds: number;
  checkSeconds: number;
}

export interface SqliteCopyOptions {
  /** How long to wait for a lock held by a writer before giving up. Default 30 s. */
  busyTimeoutMs?: number;
}

/** Names (relative, like `rel`) of the companion files a database at `rel` can have. */
export function sqliteCompanionNames(rel: string): string[] {
  return SQLITE_COMPANION_SUFFIXES.map((suffix) => `${rel}${suffix}`);
}

/** An exclude matcher for the companions of the copied databases, to leave them out of the archive. */
export function sqliteCompanionExclude(databaseRels: readonly string[]): ExcludeMatcher {
  const companions = new Set(databaseRels.flatMap(sqliteCompanionNames));
  return (rel, isDirectory) => !isDirectory && companions.has(rel);
}

/**
 * Which files `--sqlite GLOB` patterns select: the same glob rules as `--exclude` (a pattern
 * without "/" matches a name at any depth, one with "/" the whole path relative to the source).
 */
export function sqliteMatcher(patterns: readonly string[]): (rel: string) => boolean {
  const matches = excludeMatcher(patterns);
  return (rel) => matches(rel, false);
}

/**
 * The regular files under `root` that `patterns` select, sorted, skipping what `exclude` leaves
 * out and the companion files of another selected database (`*.db*` must not select `app.db-wal`).
 * A pattern that selects nothing is a usage error: the raw bytes of a database it was meant to
 * catch would otherwise be archived without a word.
 */
export function findSqliteDatabases(root: string, patterns: readonly string[], exclude: ExcludeMatcher = () => false): string[] {
  if (patterns.length === 0) return [];
  const compiled = patterns.map((p) => ({ pattern: p, matches: sqliteMatcher([p]) }));
  const used = new Set<string>();
  const files = new Set<string>();
  const selected: string[] = [];
  for (const entry of walkTree(root, exclude)) {
    if (!entry.stat?.isFile()) continue;
    files.add(entry.rel);
    const hits = compiled.filter((c) => c.matches(entry.rel));
    if (hits.length === 0) continue;
    for (const hit of hits) used.add(hit.pattern);
    selected.push(entry.rel);
  }
  const databases = selected.filter((rel) => !SQLITE_COMPANION_SUFFIXES.some((s) => rel.endsWith(s) && files.has(rel.slice(0, -s.length))));
  const unused = patterns.filter((p) => !used.has(p));
  if (unused.length > 0) {
    throw new UsageError(
      `--sqlite ${unused.map((p) => JSON.stringify(p)).join(', ')} matched no file under ${root}; patterns are relative to the source directory (e.g. "*.db" or "data/app.sqlite")`,
      'SQLITE_NO_MATCH',
    );
  }
  return databases.sort();
}

interface Header {
  journalMode: JournalMode;
}

/** Reads the 100-byte database header; undefined for an empty file (SQLite's empty database). */
function readHeader(file: string, rel: string): Header | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    throw new OperationError(`cannot open SQLite database ${rel}: ${describeSystemError(error)}`, 'SQLITE_CANTOPEN', { cause: error });
  }
  try {
    const header = Buffer.alloc(100);
    const read = fs.readSync(fd, header, 0, 100, 0);
    if (read === 0) return undefined;
    if (read < 100 || !header.subarray(0, 16).equals(HEADER_MAGIC)) {
      throw new UsageError(`--sqlite selected ${rel}, which is not an SQLite database (it does not start with "SQLite format 3"); narrow the pattern`, 'SQLITE_NOT_A_DATABASE');
    }
    // Bytes 18 and 19 are the file format write/read versions: 2 means WAL, 1 rollback journal.
    return { journalMode: header[18] === 2 || header[19] === 2 ? 'wal' : 'rollback' };
  } finally {
    fs.closeSync(fd);
  }
}

function immutableUrl(file: string): URL {
  const url = pathToFileURL(file);
  url.searchParams.set('immutable', '1');
  return url;
}

interface SqliteFailure {
  errcode?: number;
  message?: string;
}

/** One line per SQLite failure, saying what happened and what to do. */
function explain(error: unknown, rel: string, busyTimeoutMs: number): Error {
  const e = error as SqliteFailure;
  const code = typeof e?.errcode === 'number' ? e.errcode : undefined;
  const detail = e?.message ?? String(error);
  switch (code === undefined ? undefined : code & 0xff) {
    case 5: // SQLITE_BUSY
    case 6: // SQLITE_LOCKED
      return new OperationError(
        `SQLite database ${rel} stayed locked by a writer for more than ${busyTimeoutMs / 1000} s; nothing was copied (retry when the application is less busy, or raise the busy timeout)`,
        'SQLITE_LOCKED',
      );
    case 8: // SQLITE_READONLY: the only writes a reader would need are recovery
      if (code === 776) {
        return new OperationError(
          `SQLite database ${rel} has a hot journal (${rel}-journal) from a writer that stopped mid-transaction; a read-only copy cannot roll it back: start the application once so SQLite recovers it, then back up again`,
          'SQLITE_HOT_JOURNAL',
        );
      }
      return new OperationError(
        `SQLite database ${rel} needs recovery of its -wal that a read-only connection cannot run (${detail}): start the application once so SQLite recovers it, then back up again`,
        'SQLITE_NEEDS_RECOVERY',
      );
    case 11: // SQLITE_CORRUPT
    case 26: // SQLITE_NOTADB
      return new IntegrityError(`SQLite database ${rel} is damaged (${detail}); refusing to back it up (repair it, e.g. with sqlite3 ${path.posix.basename(rel)} .recover)`, 'SQLITE_CORRUPT');
    case 14: // SQLITE_CANTOPEN
      return new OperationError(
        `cannot open SQLite database ${rel} read-only (${detail}); a WAL database whose -shm is missing needs a writable directory: start the application once, or make the copy where the volume is writable`,
        'SQLITE_CANTOPEN',
      );
    default:
      return new OperationError(`cannot copy SQLite database ${rel}: ${detail}`, 'SQLITE_FAILED');
  }
}

function companionsPresent(file: string): boolean {
  return ['-wal', '-shm'].some((suffix) => fs.existsSync(file + suffix));
}

function restingState(file: string): string {
  const s = fs.statSync(file, { bigint: true });
  return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

/**
 * One read transaction on the live file, copied in one step. The transaction is opened first
 * with an ordinary read (so waiting for a writer's lock is bounded by the busy timeout and fails
 * with SQLITE_BUSY), and the backup then copies that same snapshot without taking a lock of its own.
 */
async function copyOnce(source: string, copy: string, openedAs: OpenedAs, busyTimeoutMs: number): Promise<number> {
  const db = new DatabaseSync(openedAs === 'immutable' ? immutableUrl(source) : source, { readOnly: true, timeout: busyTimeoutMs });
  try {
    db.exec('BEGIN');
    try {
      db.prepare('SELECT count(*) FROM sqlite_schema').get();
      return await backup(db, copy, { rate: ALL_PAGES });
    } finally {
      db.exec('COMMIT');
    }
  } finally {
    db.close();
  }
}

function removeCopy(copy: string): void {
  for (const file of [copy, ...SQLITE_COMPANION_SUFFIXES.map((s) => copy + s)]) fs.rmSync(file, { force: true });
}

/** Runs PRAGMA integrity_check on the copy (opened immutable: nothing else touches it, so no -wal/-shm appears). */
function checkCopy(copy: string, rel: string): void {
  const failed = (what: string): IntegrityError =>
    new IntegrityError(
      `SQLite database ${rel} failed PRAGMA integrity_check (${what}); refusing to back it up (repair it, e.g. with sqlite3 ${path.posix.basename(rel)} .recover)`,
      'SQLITE_INTEGRITY',
    );
  const db = new DatabaseSync(immutableUrl(copy), { readOnly: true });
  try {
    let rows: { integrity_check: string }[];
    try {
      rows = db.prepare('PRAGMA integrity_check').all() as { integrity_check: string }[];
    } catch (error) {
      // Damage bad enough stops the check itself with SQLITE_CORRUPT or SQLITE_NOTADB.
      const code = (error as SqliteFailure).errcode;
      if (code !== undefined && ((code & 0xff) === 11 || (code & 0xff) === 26)) throw failed((error as Error).message);
      throw error;
    }
    const problems = rows.map((r) => r.integrity_check).filter((line) => line !== 'ok');
    if (problems.length > 0) throw failed(`${problems.length === 1 ? '1 problem' : `${problems.length} problems`}, first: ${JSON.stringify(problems[0])}`);
  } finally {
    db.close();
  }
}

/**
 * Copies the live database `root/rel` consistently to `copy` (replaced if present) and proves
 * the copy with PRAGMA integrity_check. Throws a RunnerError with one line on every failure;
 * no copy is left behind then.
 *
 * A WAL database with neither -wal nor -shm is at rest (no connection is open: an open WAL
 * connection always has its -shm). Opening it read-only the ordinary way would create both files
 * in the application's directory (or fail on a read-only mount), so it is opened immutable, and
 * after the copy the file must still be at rest and unchanged; if the application opened it
 * meanwhile, it is copied again the ordinary way.
 */
export async function copySqliteDatabase(root: string, rel: string, copy: string, options: SqliteCopyOptions = {}): Promise<SqliteCopy> {
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  const source = path.join(root, ...rel.split('/'));
  const header = readHeader(source, rel);
  const journalMode = header?.journalMode ?? 'rollback';
  fs.mkdirSync(path.dirname(copy), { recursive: true });
  removeCopy(copy);
  const started = performance.now();
  let openedAs: OpenedAs = journalMode === 'wal' && !companionsPresent(source) ? 'immutable' : 'read-only';
  let pages: number;
  try {
    if (openedAs === 'immutable') {
      const before = restingState(source);
      pages = await copyOnce(source, copy, 'immutable', busyTimeoutMs);
      if (companionsPresent(source) || restingState(source) !== before) {
        openedAs = 'read-only';
        removeCopy(copy);
        pages = await copyOnce(source, copy, 'read-only', busyTimeoutMs);
      }
    } else {
      pages = await copyOnce(source, copy, 'read-only', busyTimeoutMs);
    }
  } catch (error) {
    removeCopy(copy);
    throw explain(error, rel, busyTimeoutMs);
  }
  const copied = performance.now();
  try {
    checkCopy(copy, rel);
  } catch (error) {
    removeCopy(copy);
    throw error instanceof IntegrityError ? error : explain(error, rel, busyTimeoutMs);
  }
  const checked = performance.now();
  return {
    rel,
    source,
    copy,
    bytes: fs.statSync(copy).size,
    pages,
    journalMode,
    openedAs,
    copySeconds: (copied - started) / 1000,
    checkSeconds: (checked - copied) / 1000,
  };
}

/**
 * Copies every database (`rels`, from findSqliteDatabases) into `scratchDir` under its own
 * relative path, one after the other. All or nothing: on the first failure the copies made so
 * far are removed and the error is rethrown. Each copy is consistent on its own; two databases
 * are not copied at one instant.
 */
export async function copySqliteDatabases(root: string, rels: readonly string[], scratchDir: string, options: SqliteCopyOptions = {}): Promise<SqliteCopy[]> {
  const copies: SqliteCopy[] = [];
  try {
    for (const rel of rels) copies.push(await copySqliteDatabase(root, rel, path.join(scratchDir, ...rel.split('/')), options));
    return copies;
  } catch (error) {
    for (const c of copies) removeCopy(c.copy);
    throw error;
  }
}
