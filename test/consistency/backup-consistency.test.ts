import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DUMP_COMPLETE_SUFFIX } from '../../runner/consistency/dumps.js';
import { type JsonChild, startJsonChild } from '../helpers/child.js';
import { archivesIn, jsonLines, runCli, tarList } from '../helpers/cli.js';
import { useTempDirs, writeTree } from '../helpers/tree.js';
import { expectConsistentLedger } from './ledger-expect.js';
import { readLedger } from './sqlite-ledger.js';

/**
 * `pvc-backup backup --sqlite` and `--dump` through the real CLI: SQLite databases under a
 * writer in another process archived as consistent copies (then restored and opened the way the
 * application would), pre-backup dumps archived under ./.pvc-backup-dumps/NAME/, with or without
 * a source, and a failed or empty dump stopping the backup before anything is written or pruned.
 */

const here = path.dirname(fileURLToPath(import.meta.url));
const WRITER = path.join(here, 'sqlite-writer.ts');
const tempDir = useTempDirs();

function lastCommitted(writer: JsonChild): number {
  for (let i = writer.events.length - 1; i >= 0; i--) if (writer.events[i]!.event === 'committed') return writer.events[i]!.seq as number;
  return 0;
}

/** A finished dump as the dump wrapper leaves it: its directory with files, and its completion marker. */
function writeDump(dumpsDir: string, name: string, files: Record<string, string>): void {
  writeTree(path.join(dumpsDir, name), files);
  fs.writeFileSync(path.join(dumpsDir, name + DUMP_COMPLETE_SUFFIX), JSON.stringify({ name, startedAt: '2026-01-01T00:00:00Z', finishedAt: '2026-01-01T00:00:05Z' }));
}

function failureLine(stdout: string): string {
  return jsonLines(stdout).filter((l) => l.level === 'error').at(-1)?.msg ?? '';
}

describe('backup --sqlite through the CLI, under a concurrent writer', () => {
  for (const mode of ['wal', 'delete'] as const) {
    it(`archives a consistent copy (${mode === 'wal' ? 'WAL' : 'rollback journal'}), leaves the -wal/-shm/-journal out, and restores to a prefix of the commits`, async () => {
      const [source, dest, target] = [await tempDir('source'), await tempDir('dest'), await tempDir('target')];
      writeTree(source, { 'notes.txt': 'plain file\n' });
      fs.mkdirSync(path.join(source, 'data'));
      const writer = startJsonChild(WRITER, [path.join(source, 'data', 'app.db'), mode, 'write', '3000']);
      await writer.next('ready');
      while (lastCommitted(writer) < 100) await writer.next('committed');
      fs.chmodSync(path.join(source, 'data', 'app.db'), 0o640);
      const before = lastCommitted(writer);
      // The patterns as a flag, and (rollback journal) as the variable, one per line.
      const patterns = mode === 'wal' ? { args: ['--sqlite', '*.db'], env: {} } : { args: [], env: { PVC_BACKUP_SQLITE: 'data/app.db\n*.sqlite3' } };
      if (mode === 'delete') writeTree(source, { 'empty.sqlite3': '' });
      const backup = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'app', ...patterns.args, '--log-format', 'json'], { timeoutMs: 120_000, env: patterns.env });
      const afterBackup = lastCommitted(writer);
      writer.proc.stdin.end();
      const done = await writer.next('done');
      expect(await writer.exited).toBe(0);
      expect(backup.code, backup.stdout + backup.stderr).toBe(0);
      expect(done.busy).toBe(0);

      const [archive] = archivesIn(dest);
      const names = tarList(path.join(dest, archive!));
      expect(names).toContain('./data/app.db');
      expect(names.filter((n) => /app\.db-(wal|shm|journal)$/.test(n))).toEqual([]);
      const copied = jsonLines(backup.stdout).find((l) => l.event === 'backup.sqlite');
      expect(copied).toMatchObject({ rel: 'data/app.db', journalMode: mode === 'wal' ? 'wal' : 'rollback' });

      expect((await runCli(['verify', '--dest', dest, '--prefix', 'app'])).code).toBe(0);
      const restore = await runCli(['restore', '--dest', dest, '--prefix', 'app', '--target', target, '--no-snapshot']);
      expect(restore.code, restore.stderr).toBe(0);
      expect(fs.readdirSync(path.join(target, 'data'))).toEqual(['app.db']);
      // The copy's bytes under the live file's own mode.
      expect(fs.statSync(path.join(target, 'data', 'app.db')).mode & 0o777).toBe(0o640);
      // Opened the way the application would open the restored file.
      const ledger = readLedger(path.join(target, 'data', 'app.db'), { asApplication: true });
      expectConsistentLedger(ledger);
      expect(ledger.lastSeq).toBeGreaterThanOrEqual(before);
      expect(ledger.lastSeq).toBeLessThanOrEqual(Math.max(afterBackup, done.seq as number));
      expect(fs.readFileSync(path.join(target, 'notes.txt'), 'utf8')).toBe('plain file\n');
    });
  }

  it('refuses a pattern that matches nothing, and a file that is not a database, archiving nothing', async () => {
    const [source, dest] = [await tempDir('source'), await tempDir('dest')];
    writeTree(source, { 'fake.db': 'not sqlite at all, but long enough to hold a header of one hundred bytes ..........................................\n' });
    const none = await runCli(['backup', '--source', source, '--dest', dest, '--sqlite', '*.sqlite', '--log-format', 'json']);
    expect(none.code).toBe(2);
    expect(failureLine(none.stdout)).toMatch(/--sqlite "\*\.sqlite" matched no file under/);
    const fake = await runCli(['backup', '--source', source, '--dest', dest, '--sqlite', '*.db', '--log-format', 'json']);
    expect(fake.code).toBe(2);
    expect(failureLine(fake.stdout)).toMatch(/--sqlite selected fake\.db, which is not an SQLite database/);
    expect(fs.readdirSync(dest).filter((n) => !n.startsWith('.pvc-backup-lock'))).toEqual([]);
  });
});

describe('backup --dump through the CLI', () => {
  it('archives each dump under ./.pvc-backup-dumps/NAME/ beside the source, without markers or other dumps', async () => {
    const [source, dest, dumps] = [await tempDir('source'), await tempDir('dest'), await tempDir('dumps')];
    writeTree(source, { 'a.txt': 'alpha\n', '.pvc-backup-dumps/old/stale.sql': 'from an earlier restore\n' });
    writeDump(dumps, 'postgres', { 'shop.dump': 'PGDMP…', 'globals/roles.sql': 'CREATE ROLE shop;\n' });
    writeDump(dumps, 'redis', { 'dump.rdb': 'REDIS0011' });
    writeDump(dumps, 'unlisted', { 'x.sql': 'not asked for\n' });
    const result = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop', '--dumps-dir', dumps, '--dump', 'postgres', '--dump', 'redis', '--log-format', 'json']);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    const names = tarList(path.join(dest, archivesIn(dest)[0]!));
    expect(names.filter((n) => n.includes('pvc-backup-dumps'))).toEqual([
      './.pvc-backup-dumps/',
      './.pvc-backup-dumps/postgres/',
      './.pvc-backup-dumps/postgres/globals/',
      './.pvc-backup-dumps/postgres/globals/roles.sql',
      './.pvc-backup-dumps/postgres/shop.dump',
      './.pvc-backup-dumps/redis/',
      './.pvc-backup-dumps/redis/dump.rdb',
    ]);
    expect(names).toContain('./a.txt');
    expect(jsonLines(result.stdout).map((l) => l.event)).toContain('backup.dumps-dir-in-source');
    expect((await runCli(['verify', '--dest', dest, '--prefix', 'shop'])).code).toBe(0);
  });

  it('backs up dumps alone, without a source', async () => {
    const [dest, dumps, target] = [await tempDir('dest'), await tempDir('dumps'), await tempDir('target')];
    writeDump(dumps, 'postgres', { 'all.sql': 'CREATE TABLE t();\n' });
    const result = await runCli(['backup', '--dest', dest, '--prefix', 'db', '--dumps-dir', dumps, '--dump', 'postgres']);
    expect(result.code, result.stderr).toBe(0);
    const names = tarList(path.join(dest, archivesIn(dest)[0]!));
    expect(names).toEqual(['./', './.pvc-backup-dumps/', './.pvc-backup-dumps/postgres/', './.pvc-backup-dumps/postgres/all.sql']);
    expect((await runCli(['restore', '--dest', dest, '--prefix', 'db', '--target', target, '--no-snapshot'])).code).toBe(0);
    expect(fs.readFileSync(path.join(target, '.pvc-backup-dumps/postgres/all.sql'), 'utf8')).toBe('CREATE TABLE t();\n');
  });

  it.each([
    ['failed (no marker)', (dumps: string) => writeTree(path.join(dumps, 'postgres'), { 'shop.dump': 'half' }), /pre-backup dump "postgres" did not complete: .*postgres\.complete is missing/],
    ['empty', (dumps: string) => writeDump(dumps, 'postgres', { 'shop.dump': '' }), /pre-backup dump "postgres" is empty: its command exited 0 but wrote only empty files/],
    ['missing', () => {}, /pre-backup dump "postgres" is missing: .* does not exist/],
  ])('a %s dump fails the backup: no archive, nothing pruned', async (_name, prepare, message) => {
    const [source, dest, dumps] = [await tempDir('source'), await tempDir('dest'), await tempDir('dumps')];
    writeTree(source, { 'a.txt': 'alpha\n' });
    const first = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop']);
    expect(first.code, first.stderr).toBe(0);
    const existing = fs.readdirSync(dest).sort();
    prepare(dumps);
    const result = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop', '--keep-last', '1', '--dumps-dir', dumps, '--dump', 'postgres', '--log-format', 'json']);
    expect(result.code).toBe(1);
    expect(failureLine(result.stdout)).toMatch(message);
    expect(failureLine(result.stdout)).toMatch(/no backup is made$/);
    expect(fs.readdirSync(dest).sort()).toEqual(existing);
  });
});
