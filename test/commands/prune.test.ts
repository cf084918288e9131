import { mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pruneArchives, type pruneReport, runPrune } from '../../runner/commands/prune.js';
import type { PruneConfig } from '../../runner/config.js';
import { ExitCode, LockHeldError, OperationError } from '../../runner/errors.js';
import { createLogger, memoryLogger } from '../../runner/log.js';
import { acquireLock } from '../../runner/store/lock.js';
import { LOCK_FILE, archiveFileName } from '../../runner/store/naming.js';
import { archivesIn, jsonLines, runCli } from '../helpers/cli.js';
import { exactState } from '../helpers/tree.js';
import { makeArchive, names, useTempDirs } from '../store/support.js';

const tempDir = useTempDirs();

function config(dest: string, keepLast: number, extra: Partial<PruneConfig> = {}): PruneConfig {
  return { command: 'prune', dest, prefix: 'backup', logFormat: 'text', lockStaleSeconds: 600, progressSeconds: 10, retention: { last: keepLast }, dryRun: false, json: false, ...extra };
}

const ours = [
  'backup-20260102T030405Z-10.tar.gz',
  'backup-20260102T030405Z-3.tar.gz',
  'backup-20260102T030405Z-2.tar.gz',
  'backup-20260102T030405Z.tar.gz',
  'backup-20260101T000000Z.tar.zst',
];

/** Files prune must never touch, whatever it keeps. */
const decoys = [
  'notes.txt',
  'backup-latest.tar.gz',
  'other-20260101T000000Z.tar.gz',
  'other-20260101T000000Z.tar.gz.sha256',
  'backup-pre-restore-20250101T000000Z.tar.gz',
  'backup-pre-restore-20250101T000000Z.tar.gz.sha256',
  'backup-pre-restore-20250101T000000Z.tar.gz.manifest.json',
  'backup-20260101T000000Z.tar.gz.bak',
  'backup-2026-01-01.tar.gz',
  'notes.sha256',
];

async function populate(dir: string): Promise<void> {
  // mtimes contradict the names: prune must order by name time and sequence only.
  let i = 0;
  for (const name of ours) await makeArchive(dir, name, { bytes: 100, mtime: new Date(Date.UTC(2020, 0, 1 + i++)) });
  for (const name of decoys) await writeFile(path.join(dir, name), 'decoy');
}

const sidecars = (name: string) => [name, `${name}.manifest.json`, `${name}.sha256`];

describe('prune', () => {
  it('keeps exactly the newest N across same-second names, deletes sidecars with their archives, never touches other files', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    const log = memoryLogger();
    const result = await runPrune(config(dir, 2), log);

    expect(await names(dir)).toEqual([...decoys, ...sidecars(ours[0]!), ...sidecars(ours[1]!)].sort());
    expect(result.kept).toEqual([ours[0], ours[1]]);
    expect(result.removed).toEqual([ours[4], ours[3], ours[2]]); // oldest first
    expect(result.removedBytes).toBe(300);

    const deleted = log.lines.filter((l) => l.event === 'prune.delete');
    expect(deleted.map((l) => l.fields?.archive)).toEqual([ours[4], ours[3], ours[2]]);
    expect(deleted[0]!.message).toBe(`deleted ${ours[4]} (100 B)`);
    expect(deleted[0]!.fields?.files).toEqual([ours[4], `${ours[4]}.sha256`, `${ours[4]}.manifest.json`]); // archive first
    const summary = log.lines.find((l) => l.event === 'prune.summary')!;
    expect(summary.message).toBe('Pruned 3 of 5 archives, kept 2, freed 300 B');
    expect(summary.fields).toMatchObject({ total: 5, kept: 2, removed: 3, dryRun: false });
  });

  it('dry-run deletes nothing, says what it would delete, and takes no lock', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    await writeFile(path.join(dir, '.backup-20260103T000000Z.tar.gz.partial'), 'in progress');
    // Another run holds the lock: a dry run must still work, and leave the lock alone.
    const lockFile = path.join(dir, LOCK_FILE);
    await writeFile(lockFile, JSON.stringify({ host: 'other-host', pid: 1, command: 'backup', startedAt: new Date().toISOString() }));
    const before = await names(dir);
    const log = memoryLogger();
    const result = await runPrune(config(dir, 1, { dryRun: true }), log);

    expect(await names(dir)).toEqual(before);
    expect(JSON.parse(await readFile(lockFile, 'utf8')).host).toBe('other-host');
    expect(result.removed).toEqual([ours[4], ours[3], ours[2], ours[1]]);
    expect(log.lines.filter((l) => l.event === 'prune.would-delete').map((l) => l.message)).toEqual(
      [ours[4], ours[3], ours[2], ours[1]].map((n) => `would delete ${n} (100 B)`),
    );
    expect(log.lines.some((l) => l.event === 'prune.delete')).toBe(false);
    expect(log.lines.find((l) => l.event === 'prune.summary')!.message).toBe('Would prune 4 of 5 archives, keeping 1 (dry run: nothing deleted)');
  });

  it('says there is nothing to prune when there are no more than N archives', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    const before = await names(dir);
    const log = memoryLogger();
    const result = await runPrune(config(dir, 5), log);
    expect(result.removed).toEqual([]);
    expect(await names(dir)).toEqual(before);
    expect(log.lines.find((l) => l.event === 'prune.summary')!.message).toBe('Nothing to prune (5 archives, keeping 5)');

    const empty = await tempDir('prune');
    const log2 = memoryLogger();
    await runPrune(config(empty, 3), log2);
    expect(log2.lines.find((l) => l.event === 'prune.summary')!.message).toBe('Nothing to prune (0 archives, keeping 3)');
    expect(await names(empty)).toEqual([]); // lock released
  });

  it('fails with exit 4 and deletes nothing while another run holds the lock', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    await writeFile(path.join(dir, LOCK_FILE), JSON.stringify({ host: 'other-host', pid: 1, command: 'backup', startedAt: '2026-01-01T00:00:00.000Z' }));
    const before = await names(dir);
    const error = await runPrune(config(dir, 1), memoryLogger()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockHeldError);
    expect((error as LockHeldError).exitCode).toBe(ExitCode.locked);
    expect((error as Error).message).toContain('backup pid 1 on host other-host, started 2026-01-01T00:00:00.000Z');
    expect(await names(dir)).toEqual(before);
  });

  it('breaks a stale lock with a warning, then prunes and releases the lock', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    const lockFile = path.join(dir, LOCK_FILE);
    await writeFile(lockFile, JSON.stringify({ host: 'other-host', pid: 1, command: 'backup', startedAt: '2026-01-01T00:00:00.000Z' }));
    const old = new Date(Date.now() - 3600_000);
    await utimes(lockFile, old, old);
    const log = memoryLogger();
    await runPrune(config(dir, 4), log);
    expect(log.lines.find((l) => l.event === 'lock.warning')).toMatchObject({ level: 'warn' });
    expect((await names(dir)).filter((n) => n === LOCK_FILE || n.endsWith('.tar.zst'))).toEqual([]);
  });

  it('removes leftover partials under the lock, but not on a dry run', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    const partial = '.backup-20260103T000000Z.tar.gz.partial';
    await writeFile(path.join(dir, partial), 'killed run');
    await runPrune(config(dir, 10, { dryRun: true }), memoryLogger());
    expect(await names(dir)).toContain(partial);
    const log = memoryLogger();
    await runPrune(config(dir, 10), log);
    expect(await names(dir)).not.toContain(partial);
    expect(log.lines.find((l) => l.event === 'store.partials-removed')?.fields?.files).toEqual([partial]);
  });

  it('cleans orphaned sidecars of the prefix left by an interrupted prune', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    const orphan = 'backup-20250101T000000Z.tar.gz.manifest.json';
    await writeFile(path.join(dir, orphan), '{}');
    const dry = await runPrune(config(dir, 10, { dryRun: true }), memoryLogger());
    expect(dry.orphans).toEqual([orphan]);
    expect(await names(dir)).toContain(orphan);
    const result = await runPrune(config(dir, 10), memoryLogger());
    expect(result.orphans).toEqual([orphan]);
    expect(await names(dir)).not.toContain(orphan);
    for (const decoy of decoys) expect(await names(dir)).toContain(decoy);
  });

  it('keeps going when one deletion fails, then fails with exit 1 and releases the lock', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    // The oldest archive's checksum sidecar is a non-empty directory: it cannot be unlinked.
    const stuck = `${ours[4]}.sha256`;
    await rm(path.join(dir, stuck));
    await mkdir(path.join(dir, stuck));
    await writeFile(path.join(dir, stuck, 'x'), 'x');
    const log = memoryLogger();
    const error = await runPrune(config(dir, 2), log).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OperationError);
    expect((error as OperationError).exitCode).toBe(ExitCode.failed);
    expect((error as Error).message).toContain(`could not delete 1 of 3 archives in ${dir} (first: ${ours[4]}:`);
    const left = await names(dir);
    expect(left).not.toContain(ours[4]); // the archive went first
    expect(left).toContain(stuck);
    expect(left).not.toContain(ours[3]);
    expect(left).not.toContain(ours[2]);
    expect(left).not.toContain(LOCK_FILE);
    expect(log.lines.filter((l) => l.level === 'error').map((l) => l.event)).toEqual(['prune.delete-failed']);
    // The next prune does not trip over the stuck directory either.
    await expect(runPrune(config(dir, 2), memoryLogger())).resolves.toMatchObject({ removed: [], orphans: [] });
  });

  it('pruneArchives works without taking the lock, for a caller that already holds it', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    const lock = await acquireLock(dir, { command: 'backup', staleSeconds: 600 });
    try {
      const result = await pruneArchives(dir, 'backup', { last: 3 }, { dryRun: false, log: memoryLogger() });
      expect(result.removed).toEqual([ours[4], ours[3]]);
      expect(await names(dir)).toContain(LOCK_FILE);
    } finally {
      await lock.release();
    }
    expect(await names(dir)).not.toContain(LOCK_FILE);
  });

  it('logs one JSON object per line with --log-format json', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    const lines: string[] = [];
    await runPrune(config(dir, 4), createLogger('json', (l) => lines.push(l)));
    const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e.event)).toEqual(['prune.delete', 'prune.summary']);
    expect(events[0]).toMatchObject({ level: 'info', archive: ours[4], bytes: 100 });
  });
});

/** An archive whose sidecars make it look sound (size as in the manifest), verified or failed as asked. */
async function soundArchive(dir: string, name: string, verification: { ok: boolean; error?: string } = { ok: true }): Promise<void> {
  await makeArchive(dir, name, { bytes: 100, manifest: { archiveBytes: 100, verification: { at: '2026-01-01T00:00:00.000Z', ...verification } } });
}

/** One archive a day at 12:00 UTC from `from` to `to`. */
function dailyNames(from: string, to: string): string[] {
  const names: string[] = [];
  for (let t = Date.parse(`${from}T12:00:00Z`); t <= Date.parse(`${to}T12:00:00Z`); t += 86_400_000) names.push(archiveFileName('backup', new Date(t), 'gzip'));
  return names;
}

const stamp = (name: string) => name.slice('backup-'.length, 'backup-'.length + 16);

describe('prune with calendar tiers', () => {
  // Thursday 2026-01-01 to Wednesday 2026-01-14, one failed verification on 2026-01-11 (a Sunday).
  const fortnight = dailyNames('2026-01-01', '2026-01-14');
  const failed = archiveFileName('backup', new Date('2026-01-11T12:00:00Z'), 'gzip');
  const sameDay = archiveFileName('backup', new Date('2026-01-11T06:00:00Z'), 'gzip');

  async function populateFortnight(dir: string): Promise<void> {
    for (const name of fortnight) await soundArchive(dir, name, name === failed ? { ok: false, error: 'checksum mismatch' } : undefined);
    await soundArchive(dir, sameDay);
    for (const name of decoys) await writeFile(path.join(dir, name), 'decoy');
  }

  it('dry-run prints per archive, oldest first, keep or delete and the rules that keep it', async () => {
    const dir = await tempDir('prune');
    await populateFortnight(dir);
    const before = await names(dir);
    const log = memoryLogger();
    const result = await runPrune(config(dir, 1, { dryRun: true, retention: { last: 1, daily: 3, weekly: 2, monthly: 2 } }), log);
    expect(await names(dir)).toEqual(before);
    const plan = log.lines.filter((l) => l.event === 'prune.would-keep' || l.event === 'prune.would-delete').map((l) => l.message);
    const failedNote = '; its last verification failed: checksum mismatch, so it counts toward no calendar tier';
    expect(plan).toEqual([
      'would keep backup-20260101T120000Z.tar.gz: monthly 2026-01 (2/2, oldest archive)',
      ...fortnight.slice(1, 10).map((n) => `would delete ${n} (100 B)`),
      // The newest of ISO week 2026-W02 failed verification: the one before it that day takes its slot.
      `would keep ${sameDay}: weekly 2026-W02 (2/2)`,
      `would delete ${failed} (100 B)${failedNote}`,
      'would keep backup-20260112T120000Z.tar.gz: daily 2026-01-12 (3/3)',
      'would keep backup-20260113T120000Z.tar.gz: daily 2026-01-13 (2/3)',
      'would keep backup-20260114T120000Z.tar.gz: last 1/1, daily 2026-01-14 (1/3), weekly 2026-W03 (1/2), monthly 2026-01 (1/2)',
    ]);
    expect(result.kept.map(stamp)).toEqual(['20260114T120000Z', '20260113T120000Z', '20260112T120000Z', '20260111T060000Z', '20260101T120000Z']);
    expect(log.lines.find((l) => l.event === 'prune.summary')!.message).toBe('Would prune 10 of 15 archives, keeping 5 (dry run: nothing deleted)');
    expect(log.lines.find((l) => l.event === 'prune.summary')!.fields?.policy).toEqual({ last: 1, daily: 3, weekly: 2, monthly: 2 });
  });

  it('a failed archive that keep-last keeps is still not counted for a tier, and the plan says so', async () => {
    const dir = await tempDir('prune');
    for (const name of fortnight.slice(9, 11)) await soundArchive(dir, name);
    await soundArchive(dir, sameDay);
    await soundArchive(dir, failed, { ok: false, error: 'checksum mismatch' });
    const log = memoryLogger();
    const result = await runPrune(config(dir, 1, { dryRun: true, retention: { last: 1, daily: 2 } }), log);
    expect(result.archives.map((a) => [stamp(a.name), a.action, a.why])).toEqual([
      ['20260111T120000Z', 'keep', 'last 1/1'],
      ['20260111T060000Z', 'keep', 'daily 2026-01-11 (1/2)'],
      ['20260110T120000Z', 'keep', 'daily 2026-01-10 (2/2)'],
    ]);
    expect(result.archives[0]).toMatchObject({ health: 'failed', problem: 'its last verification failed: checksum mismatch' });
    expect(log.lines.find((l) => l.fields?.archive === failed)!.message).toBe(
      `would keep ${failed}: last 1/1; its last verification failed: checksum mismatch, so it counts toward no calendar tier`,
    );
  });

  it('--json prints the plan as one JSON document on stdout (log lines on stderr), newest first', async () => {
    const dir = await tempDir('prune');
    await populateFortnight(dir);
    const before = await names(dir);
    const run = await runCli(['prune', '--dest', dir, '--keep-daily', '3', '--keep-weekly', '2', '--dry-run', '--json', '--log-format', 'json']);
    expect(run.code, run.stderr).toBe(0);
    expect(await names(dir)).toEqual(before);
    const report = JSON.parse(run.stdout) as ReturnType<typeof pruneReport>;
    expect(report).toMatchObject({ prefix: 'backup', dryRun: true, policy: { last: 0, hourly: 0, daily: 3, weekly: 2, monthly: 0, yearly: 0 }, total: 15, kept: 4, removed: 11 });
    expect(report.archives.map((a) => a.name)).toEqual([...fortnight.slice(11)].reverse().concat([failed, sameDay], [...fortnight.slice(0, 10)].reverse()));
    expect(report.archives[0]).toEqual({
      name: 'backup-20260114T120000Z.tar.gz',
      createdAt: '2026-01-14T12:00:00Z',
      bytes: 100,
      health: 'verified',
      problem: null,
      action: 'keep',
      reasons: [
        { rule: 'daily', period: '2026-01-14', n: 1, of: 3 },
        { rule: 'weekly', period: '2026-W03', n: 1, of: 2 },
      ],
      why: 'daily 2026-01-14 (1/3), weekly 2026-W03 (1/2)',
      deleted: null,
    });
    expect(report.archives.find((a) => a.name === failed)).toMatchObject({ health: 'failed', action: 'delete', reasons: [], problem: 'its last verification failed: checksum mismatch' });
    expect(report.archives.find((a) => a.name === sameDay)).toMatchObject({ action: 'keep', reasons: [{ rule: 'weekly', period: '2026-W02', n: 2, of: 2 }] });
    const events = run.stderr.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { event: string }).event);
    expect(events.filter((e) => e === 'prune.would-keep')).toHaveLength(4);
    expect(events.at(-1)).toBe('prune.summary');
  });

  it('deletes exactly the planned archives of three years of daily names, with their sidecars, and nothing else', async () => {
    const dir = await tempDir('prune');
    const all = dailyNames('2023-01-01', '2025-12-31');
    for (const name of all) await soundArchive(dir, name);
    for (const name of decoys) await writeFile(path.join(dir, name), `decoy ${name}`);
    await mkdir(path.join(dir, 'backup-20240101T000000Z.tar.gz.d'));
    const policy = ['--keep-daily', '7', '--keep-weekly', '4', '--keep-monthly', '12', '--keep-yearly', '3'];
    // Everything in DEST but DEST itself, whose mtime changes with every deletion.
    const state = () => (JSON.parse(exactState(dir)) as { path: string }[]).filter((e) => e.path !== '.');
    const before = state();

    const dry = await runCli(['prune', '--dest', dir, ...policy, '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    const planned = JSON.parse(dry.stdout) as ReturnType<typeof pruneReport>;
    expect(state()).toEqual(before);

    const run = await runCli(['prune', '--dest', dir, ...policy, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const done = JSON.parse(run.stdout) as ReturnType<typeof pruneReport>;
    expect(done.archives.map((a) => [a.name, a.action])).toEqual(planned.archives.map((a) => [a.name, a.action]));
    expect(done.archives.filter((a) => a.action === 'delete').every((a) => a.deleted === true)).toBe(true);

    // 7 dailies (Dec 25-31, Wednesday newest), weekly-only Dec 21 and 14 (Dec 28 is a daily too),
    // monthly-only Nov 30 back to Jan 31 2025, yearly-only Dec 31 of 2024 and 2023.
    const keptDays = planned.archives.filter((a) => a.action === 'keep').map((a) => a.createdAt.slice(0, 10));
    expect(keptDays).toEqual([
      ...['31', '30', '29', '28', '27', '26', '25', '21', '14'].map((d) => `2025-12-${d}`),
      ...['2025-11-30', '2025-10-31', '2025-09-30', '2025-08-31', '2025-07-31', '2025-06-30', '2025-05-31', '2025-04-30', '2025-03-31', '2025-02-28', '2025-01-31'],
      '2024-12-31',
      '2023-12-31',
    ]);
    const deletedNames = new Set(planned.archives.filter((a) => a.action === 'delete').flatMap((a) => [a.name, `${a.name}.sha256`, `${a.name}.manifest.json`]));
    expect(deletedNames.size).toBe((all.length - 22) * 3);
    expect(state()).toEqual(before.filter((e) => !deletedNames.has(e.path)));
  });

  it('refuses a policy that keeps nothing, and a prune without one, with exit 2 and nothing deleted', async () => {
    const dir = await tempDir('prune');
    await populate(dir);
    const before = exactState(dir);
    for (const args of [['--keep-daily', '0'], ['--keep-last', '0', '--keep-weekly', '0'], [], ['--keep-monthly', '-1'], ['--keep-yearly', 'all']]) {
      const run = await runCli(['prune', '--dest', dir, ...args]);
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(/^pvc-backup: [^\n]+\n$/);
      expect(run.stdout).toBe('');
    }
    expect((await runCli(['prune', '--dest', dir, '--keep-weekly', '0'])).stderr).toMatch(/--keep-last must be at least 1, or another --keep-\* above 0: a policy that keeps nothing would delete every archive/);
    expect((await runCli(['prune', '--dest', dir])).stderr).toMatch(/prune needs --keep-last N or another --keep-\*/);
    const env = await runCli(['prune', '--dest', dir], { env: { PVC_BACKUP_KEEP_DAILY: '0', PVC_BACKUP_KEEP_HOURLY: '0' } });
    expect(env.code).toBe(2);
    expect(exactState(dir)).toBe(before);
  });
});

describe('backup with calendar tiers', () => {
  it('prunes by the tiers only after a verified backup, keeping the new archive', async () => {
    const dir = await tempDir('dest');
    const source = await tempDir('src');
    await writeFile(path.join(source, 'a.txt'), 'a\n');
    const old = dailyNames('2025-12-01', '2025-12-31');
    for (const name of old) await soundArchive(dir, name);
    const args = ['backup', '--source', source, '--dest', dir, '--keep-daily', '2', '--keep-monthly', '3', '--log-format', 'json'];

    const empty = await tempDir('empty');
    const refused = await runCli(['backup', '--source', empty, ...args.slice(3)]);
    expect(refused.code, refused.stdout).toBe(1);
    expect(refused.stdout).not.toMatch(/"event":"prune\./);
    expect(archivesIn(dir)).toEqual(old);

    const run = await runCli(args);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const made = (jsonLines(run.stdout).find((l) => l.event === 'backup.done')!.archive as string);
    // The new archive is daily 1 and monthly 1 (now), Dec 31 daily 2 and monthly 2, Dec 1 the oldest with room left.
    expect(archivesIn(dir)).toEqual([old[0]!, old.at(-1)!, made].sort());
    expect(jsonLines(run.stdout).find((l) => l.event === 'prune.summary')).toMatchObject({ total: 32, kept: 3, removed: 29, policy: { daily: 2, monthly: 3 } });
  });

  it('refuses an all-zero policy before writing anything', async () => {
    const dir = await tempDir('dest');
    const source = await tempDir('src');
    await writeFile(path.join(source, 'a.txt'), 'a\n');
    const run = await runCli(['backup', '--source', source, '--dest', dir, '--keep-last', '0', '--keep-daily', '0']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^pvc-backup: --keep-last must be at least 1, or another --keep-\* above 0/);
    expect(await names(dir)).toEqual([]);
  });
});
