import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { excludeMatcher } from '../../runner/archive/walk.js';
import {
  copySqliteDatabase,
  copySqliteDatabases,
  findSqliteDatabases,
  sqliteCompanionExclude,
  sqliteCompanionNames,
  sqliteMatcher,
} from '../../runner/consistency/sqlite.js';
import { ExitCode, IntegrityError, OperationError, RunnerError, UsageError } from '../../runner/errors.js';
import { type JsonChild, type JsonEvent, startJsonChild } from '../helpers/child.js';
import { isRoot, useTempDirs } from '../helpers/tree.js';
import { expectConsistentLedger } from './ledger-expect.js';
import { readLedger } from './sqlite-ledger.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const WRITER = path.join(here, 'sqlite-writer.ts');
const COPY_CHILD = path.join(here, 'sqlite-copy-child.ts');
const tempDir = useTempDirs();

/** The newest committed sequence number the writer has reported so far. */
function lastCommitted(writer: JsonChild): number {
  for (let i = writer.events.length - 1; i >= 0; i--) if (writer.events[i]!.event === 'committed') return writer.events[i]!.seq as number;
  return 0;
}

async function startWriter(file: string, mode: 'wal' | 'delete', fillerRows?: number): Promise<JsonChild> {
  const writer = startJsonChild(WRITER, [file, mode, 'write', ...(fillerRows ? [String(fillerRows)] : [])]);
  await writer.next('ready');
  // Let it commit for a while, so the WAL (or the file) has moved on from its initial state.
  while (lastCommitted(writer) < 200) await writer.next('committed');
  return writer;
}

async function stopWriter(writer: JsonChild): Promise<JsonEvent> {
  writer.proc.stdin.end();
  const done = await writer.next('done');
  expect(await writer.exited).toBe(0);
  return done;
}

/** Every file in a directory with its size, mtime and content hash. */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const file = path.join(dir, name);
    const s = fs.statSync(file, { bigint: true });
    out[name] = `${s.size}:${s.mtimeNs}:${createHash('sha256').update(fs.readFileSync(file)).digest('hex')}`;
  }
  return out;
}

function makeDatabase(file: string, mode: 'wal' | 'delete', rows = 200): void {
  const db = new DatabaseSync(file);
  db.exec(`PRAGMA journal_mode=${mode}`);
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT NOT NULL); CREATE INDEX t_body ON t(body)');
  const insert = db.prepare('INSERT INTO t(body) VALUES (?)');
  db.exec('BEGIN');
  for (let i = 0; i < rows; i++) insert.run(`row ${i} ${'x'.repeat(200)}`);
  db.exec('COMMIT');
  db.close();
}

async function expectRunnerError(promise: Promise<unknown>, type: new (...args: never[]) => RunnerError, code: string): Promise<RunnerError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(type);
  expect((error as RunnerError).code).toBe(code);
  expect((error as Error).message).not.toContain('\n');
  return error as RunnerError;
}

describe('SQLite online copy under a concurrent writer', () => {
  for (const mode of ['wal', 'delete'] as const) {
    it(`copies a database another process is writing (${mode === 'wal' ? 'WAL' : 'rollback journal'}): integrity ok, a prefix of the commits`, async () => {
      const src = await tempDir('sqlite-src');
      const scratch = await tempDir('sqlite-scratch');
      const writer = await startWriter(path.join(src, 'app.db'), mode);

      const before = lastCommitted(writer);
      const copy = await copySqliteDatabase(src, 'app.db', path.join(scratch, 'app.db'));
      const seenWhenDone = lastCommitted(writer);
      // Keep writing after the copy, then stop: the writer must never have been refused.
      const target = seenWhenDone + 100;
      while (lastCommitted(writer) < target) await writer.next('committed');
      const done = await stopWriter(writer);

      expect(copy).toMatchObject({ rel: 'app.db', journalMode: mode === 'wal' ? 'wal' : 'rollback', openedAs: 'read-only' });
      expect(copy.bytes).toBe(fs.statSync(copy.copy).size);
      expect(copy.bytes).toBeGreaterThan(40e6);
      const ledger = readLedger(copy.copy);
      // A prefix: commits 1..S, every one intact, the counter and the balances of that same instant.
      expectConsistentLedger(ledger);
      // ... holding everything committed before the copy started, nothing that was never committed.
      expect(ledger.lastSeq).toBeGreaterThanOrEqual(before);
      expect(ledger.lastSeq).toBeLessThanOrEqual(done.seq as number);
      expect(done.busy).toBe(0);
      expect(done.seq as number).toBeGreaterThan(ledger.lastSeq);
      if (mode === 'wal') {
        // WAL readers do not block the writer: it committed while the copy was being made.
        expect(seenWhenDone).toBeGreaterThan(ledger.lastSeq);
      }
      // Only the copy is in the scratch directory: no -wal/-shm/-journal of its own.
      expect(fs.readdirSync(scratch)).toEqual(['app.db']);
      // The live database is whole and holds every commit.
      expect(readLedger(path.join(src, 'app.db'))).toMatchObject({ integrity: ['ok'], lastSeq: done.seq, commits: done.seq });
    });
  }

  it('control: raw copies of the same files (as tar reads them, -journal included) under the same writer fail these checks', async () => {
    const src = await tempDir('sqlite-src');
    const scratch = await tempDir('sqlite-raw');
    const writer = await startWriter(path.join(src, 'app.db'), 'delete');
    let inconsistent = 0;
    for (let attempt = 0; attempt < 10 && inconsistent === 0; attempt++) {
      const out = path.join(scratch, String(attempt));
      fs.mkdirSync(out);
      for (const name of fs.readdirSync(src)) {
        try {
          fs.copyFileSync(path.join(src, name), path.join(out, name), fs.constants.COPYFILE_FICLONE);
        } catch (error) {
          // The writer removes its -journal at each commit: gone between readdir and copy, as tar sees it.
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        }
      }
      try {
        const l = readLedger(path.join(out, 'app.db'), { asApplication: true });
        if (l.integrity.join() !== 'ok' || l.commits !== l.maxSeq || l.lastSeq !== l.maxSeq || l.balanceSum !== 0 || l.badDigests !== 0) inconsistent++;
      } catch {
        inconsistent++; // "database disk image is malformed"
      }
    }
    await stopWriter(writer);
    expect(inconsistent).toBeGreaterThan(0);
  });

  it.skipIf(!isRoot)('copies from a read-only mount while the application writes (WAL), and a WAL database at rest there', async () => {
    const src = await tempDir('sqlite-src');
    const mount = await tempDir('sqlite-ro');
    const scratch = await tempDir('sqlite-scratch');
    makeDatabase(path.join(src, 'rest.db'), 'wal');
    expect(fs.existsSync(path.join(src, 'rest.db-wal'))).toBe(false);
    const writer = await startWriter(path.join(src, 'live.db'), 'wal', 4000);
    const before = lastCommitted(writer);

    const child = startJsonChild(COPY_CHILD, [mount, scratch, 'live.db', 'rest.db'], {
      launcher: ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && shift 2 && exec "$@"', 'sh', src, mount],
    });
    const live = await child.next('copied', 'failed');
    const rest = await child.next('copied', 'failed');
    expect(await child.exited, child.stderr()).toBe(0);
    const done = await stopWriter(writer);

    expect(live, JSON.stringify(live)).toMatchObject({ event: 'copied', journalMode: 'wal', openedAs: 'read-only' });
    const ledger = readLedger(live.copy as string);
    expectConsistentLedger(ledger);
    expect(ledger.lastSeq).toBeGreaterThanOrEqual(before);
    expect(ledger.lastSeq).toBeLessThanOrEqual(done.seq as number);

    expect(rest, JSON.stringify(rest)).toMatchObject({ event: 'copied', journalMode: 'wal', openedAs: 'immutable' });
    const copy = new DatabaseSync(rest.copy as string, { readOnly: true });
    expect(copy.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 200 });
    copy.close();
  });
});

describe('SQLite copy leaves the live database alone', () => {
  for (const mode of ['wal', 'delete'] as const) {
    it(`a ${mode === 'wal' ? 'WAL' : 'rollback-journal'} database at rest: no file created, changed or removed`, async () => {
      const src = await tempDir('sqlite-src');
      const scratch = await tempDir('sqlite-scratch');
      makeDatabase(path.join(src, 'app.db'), mode);
      fs.utimesSync(path.join(src, 'app.db'), new Date('2022-01-01T00:00:00Z'), new Date('2022-01-01T00:00:00Z'));
      const before = fingerprint(src);
      const copy = await copySqliteDatabase(src, 'app.db', path.join(scratch, 'app.db'));
      expect(fingerprint(src)).toEqual(before);
      expect(copy.openedAs).toBe(mode === 'wal' ? 'immutable' : 'read-only');
      expect(copy.journalMode).toBe(mode === 'wal' ? 'wal' : 'rollback');
      // The copy keeps the journal mode and content of the original.
      const db = new DatabaseSync(copy.copy);
      expect(db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: mode });
      expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 200 });
      db.close();
    });
  }

  it('a WAL database with an un-checkpointed -wal: the copy holds its commits, the -wal stays as it was', async () => {
    const src = await tempDir('sqlite-src');
    const scratch = await tempDir('sqlite-scratch');
    const file = path.join(src, 'app.db');
    makeDatabase(file, 'wal');
    // A writer that committed into the WAL and then died without checkpointing (as after SIGKILL).
    const writer = new DatabaseSync(file);
    writer.exec('PRAGMA wal_autocheckpoint=0');
    writer.exec("INSERT INTO t(body) VALUES ('only in the wal')");
    const before = fingerprint(src);
    expect(Object.keys(before)).toEqual(['app.db', 'app.db-shm', 'app.db-wal']);
    const copy = await copySqliteDatabase(src, 'app.db', path.join(scratch, 'app.db'));
    expect(copy.openedAs).toBe('read-only');
    // The database and its -wal are untouched; like every reader, the copy marks its snapshot in the -shm (shared memory).
    const after = fingerprint(src);
    expect(after['app.db']).toBe(before['app.db']);
    expect(after['app.db-wal']).toBe(before['app.db-wal']);
    expect(Object.keys(after)).toEqual(Object.keys(before));
    writer.close();
    const db = new DatabaseSync(copy.copy, { readOnly: true });
    expect(db.prepare("SELECT count(*) AS n FROM t WHERE body = 'only in the wal'").get()).toEqual({ n: 1 });
    db.close();
  });

  it('refuses a database with a hot journal (a writer died mid-transaction) and leaves the journal for the application', async () => {
    const src = await tempDir('sqlite-src');
    const scratch = await tempDir('sqlite-scratch');
    const file = path.join(src, 'app.db');
    makeDatabase(file, 'delete', 2000);
    // A child that spills a big uncommitted change into the file and is killed before COMMIT.
    const script = `const { DatabaseSync } = require('node:sqlite'); const db = new DatabaseSync(${JSON.stringify(file)});
      db.exec('PRAGMA cache_size=5'); db.exec('BEGIN'); db.exec("UPDATE t SET body = body || 'changed'"); process.kill(process.pid, 'SIGKILL');`;
    const { spawnSync } = await import('node:child_process');
    const killed = spawnSync(process.execPath, ['-e', script]);
    expect(killed.signal).toBe('SIGKILL');
    expect(fs.statSync(`${file}-journal`).size).toBeGreaterThan(0);
    const before = fingerprint(src);

    const error = await expectRunnerError(copySqliteDatabase(src, 'app.db', path.join(scratch, 'app.db')), OperationError, 'SQLITE_HOT_JOURNAL');
    expect(error.message).toMatch(/app\.db has a hot journal .*start the application once/);
    expect(fingerprint(src)).toEqual(before);
    expect(fs.readdirSync(scratch)).toEqual([]);
  });
});

describe('SQLite copy failures', () => {
  it('gives up with one line when a writer holds its lock longer than the busy timeout', async () => {
    const src = await tempDir('sqlite-src');
    const scratch = await tempDir('sqlite-scratch');
    const file = path.join(src, 'app.db');
    makeDatabase(file, 'delete');
    const holder = startJsonChild(WRITER, [file, 'delete', 'hold']);
    await holder.next('holding');
    const started = performance.now();
    const error = await expectRunnerError(copySqliteDatabase(src, 'app.db', path.join(scratch, 'app.db'), { busyTimeoutMs: 400 }), OperationError, 'SQLITE_LOCKED');
    expect(performance.now() - started).toBeGreaterThanOrEqual(350);
    expect(performance.now() - started).toBeLessThan(15_000);
    expect(error.message).toBe('SQLite database app.db stayed locked by a writer for more than 0.4 s; nothing was copied (retry when the application is less busy, or raise the busy timeout)');
    expect(error.exitCode).toBe(ExitCode.failed);
    expect(fs.readdirSync(scratch)).toEqual([]);
    holder.proc.stdin.end();
    expect(await holder.exited).toBe(0);
    // Once the lock is gone the same copy works.
    await copySqliteDatabase(src, 'app.db', path.join(scratch, 'app.db'), { busyTimeoutMs: 400 });
  });

  it('refuses a file that is not a database (usage error, before anything is copied)', async () => {
    const src = await tempDir('sqlite-src');
    const scratch = await tempDir('sqlite-scratch');
    fs.writeFileSync(path.join(src, 'notes.db'), 'these are notes, not a database\n'.repeat(10));
    const error = await expectRunnerError(copySqliteDatabase(src, 'notes.db', path.join(scratch, 'notes.db')), UsageError, 'SQLITE_NOT_A_DATABASE');
    expect(error.message).toBe('--sqlite selected notes.db, which is not an SQLite database (it does not start with "SQLite format 3"); narrow the pattern');
    expect(error.exitCode).toBe(ExitCode.usage);
    expect(fs.readdirSync(scratch)).toEqual([]);
  });

  it('refuses a database with a damaged page: integrity_check fails, no copy is left', async () => {
    const src = await tempDir('sqlite-src');
    const scratch = await tempDir('sqlite-scratch');
    const file = path.join(src, 'app.db');
    makeDatabase(file, 'delete', 2000);
    const pageSize = fs.readFileSync(file).readUInt16BE(16);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(pageSize, 0x5a), 0, pageSize, pageSize * 4); // page 5: a b-tree page of t or its index
    fs.closeSync(fd);
    const error = await expectRunnerError(copySqliteDatabase(src, 'app.db', path.join(scratch, 'app.db')), IntegrityError, 'SQLITE_INTEGRITY');
    expect(error.message).toMatch(/^SQLite database app\.db failed PRAGMA integrity_check \((\d+ problems?, first: ".+"|database disk image is malformed)\); refusing to back it up/);
    expect(error.exitCode).toBe(ExitCode.integrity);
    expect(fs.readdirSync(scratch)).toEqual([]);
  });

  it('refuses a database whose rows and index disagree (a few bytes changed): integrity_check lists the problems', async () => {
    const src = await tempDir('sqlite-src');
    const scratch = await tempDir('sqlite-scratch');
    const file = path.join(src, 'app.db');
    makeDatabase(file, 'delete', 2000);
    const pageSize = fs.readFileSync(file).readUInt16BE(16);
    const fd = fs.openSync(file, 'r+');
    // The end of a leaf page holds cell content: row text (or index keys) change, the b-tree stays readable.
    fs.writeSync(fd, Buffer.alloc(40, 'y'), 0, 40, pageSize * 5 - 60);
    fs.closeSync(fd);
    const error = await expectRunnerError(copySqliteDatabase(src, 'app.db', path.join(scratch, 'app.db')), IntegrityError, 'SQLITE_INTEGRITY');
    expect(error.message).toMatch(/^SQLite database app\.db failed PRAGMA integrity_check \(\d+ problems?, first: ".+"\); refusing to back it up/);
    expect(fs.readdirSync(scratch)).toEqual([]);
  });

  it('refuses a damaged schema page and a truncated database', async () => {
    const src = await tempDir('sqlite-src');
    const scratch = await tempDir('sqlite-scratch');
    makeDatabase(path.join(src, 'schema.db'), 'delete', 2000);
    const schema = fs.readFileSync(path.join(src, 'schema.db'));
    schema.fill(0x33, 100, 4096); // page 1 after the file header: sqlite_schema
    fs.writeFileSync(path.join(src, 'schema.db'), schema);
    makeDatabase(path.join(src, 'short.db'), 'delete', 2000);
    fs.truncateSync(path.join(src, 'short.db'), Math.floor(fs.statSync(path.join(src, 'short.db')).size / 2));

    const damaged = await expectRunnerError(copySqliteDatabase(src, 'schema.db', path.join(scratch, 'schema.db')), IntegrityError, 'SQLITE_CORRUPT');
    expect(damaged.message).toMatch(/^SQLite database schema\.db is damaged \(.+\); refusing to back it up/);
    const short = await copySqliteDatabase(src, 'short.db', path.join(scratch, 'short.db')).catch((e: unknown) => e);
    expect(short).toBeInstanceOf(IntegrityError);
    expect(fs.readdirSync(scratch)).toEqual([]);
  });

  it('copies a list all or nothing: a failing database removes the copies already made', async () => {
    const src = await tempDir('sqlite-src');
    const scratch = await tempDir('sqlite-scratch');
    fs.mkdirSync(path.join(src, 'a'));
    makeDatabase(path.join(src, 'a/first.db'), 'wal');
    fs.writeFileSync(path.join(src, 'second.db'), 'not a database at all, but long enough to have a header of 100 bytes'.repeat(3));
    const copies = await copySqliteDatabases(src, ['a/first.db'], scratch);
    expect(copies.map((c) => [c.rel, path.relative(scratch, c.copy)])).toEqual([['a/first.db', 'a/first.db']]);
    fs.rmSync(path.join(scratch, 'a'), { recursive: true });
    await expect(copySqliteDatabases(src, ['a/first.db', 'second.db'], scratch)).rejects.toThrow(UsageError);
    expect(fs.existsSync(path.join(scratch, 'a/first.db'))).toBe(false);
  });

  it('copies an empty file as the empty database it is', async () => {
    const src = await tempDir('sqlite-src');
    const scratch = await tempDir('sqlite-scratch');
    fs.writeFileSync(path.join(src, 'new.db'), '');
    const copy = await copySqliteDatabase(src, 'new.db', path.join(scratch, 'new.db'));
    expect(copy).toMatchObject({ pages: 0, journalMode: 'rollback' });
    const db = new DatabaseSync(copy.copy, { readOnly: true });
    expect(db.prepare('SELECT count(*) AS n FROM sqlite_schema').get()).toEqual({ n: 0 });
    db.close();
  });
});

describe('which files --sqlite selects', () => {
  it('matches like --exclude, skips companions, symlinks and excluded paths, and refuses a pattern that matches nothing', async () => {
    const src = await tempDir('sqlite-src');
    for (const rel of ['app.db', 'app.db-wal', 'app.db-shm', 'data/users.db', 'data/users.db-journal', 'data/cache.sqlite', 'logs/old.db', 'other.db-wal']) {
      fs.mkdirSync(path.dirname(path.join(src, rel)), { recursive: true });
      fs.writeFileSync(path.join(src, rel), '');
    }
    fs.symlinkSync('app.db', path.join(src, 'link.db'));
    expect(findSqliteDatabases(src, ['*.db'])).toEqual(['app.db', 'data/users.db', 'logs/old.db']);
    // "*.db*" also sees app.db-wal, but that is app.db's companion; other.db-wal has no database beside it.
    expect(findSqliteDatabases(src, ['*.db*'], excludeMatcher(['logs/']))).toEqual(['app.db', 'data/users.db', 'other.db-wal']);
    expect(findSqliteDatabases(src, ['data/*.sqlite', 'app.db'])).toEqual(['app.db', 'data/cache.sqlite']);
    expect(findSqliteDatabases(src, [])).toEqual([]);
    let error: unknown;
    try {
      findSqliteDatabases(src, ['*.db', 'db/*.sqlite3']);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toBe(`--sqlite "db/*.sqlite3" matched no file under ${src}; patterns are relative to the source directory (e.g. "*.db" or "data/app.sqlite")`);

    expect(sqliteMatcher(['data/*.db'])('data/users.db')).toBe(true);
    expect(sqliteMatcher(['data/*.db'])('x/data/users.db')).toBe(false);
    expect(sqliteCompanionNames('data/users.db')).toEqual(['data/users.db-wal', 'data/users.db-shm', 'data/users.db-journal']);
    const companions = sqliteCompanionExclude(['app.db', 'data/users.db']);
    expect(['app.db', 'app.db-wal', 'app.db-shm', 'data/users.db-journal', 'other.db-wal', 'data/users.db'].filter((r) => companions(r, false))).toEqual([
      'app.db-wal',
      'app.db-shm',
      'data/users.db-journal',
    ]);
    expect(companions('app.db-wal', true)).toBe(false);
  });
});
