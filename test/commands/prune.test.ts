import { mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runPrune, pruneArchives } from '../../runner/commands/prune.js';
import type { PruneConfig } from '../../runner/config.js';
import { ExitCode, LockHeldError, OperationError } from '../../runner/errors.js';
import { createLogger, memoryLogger } from '../../runner/log.js';
import { acquireLock } from '../../runner/store/lock.js';
import { LOCK_FILE } from '../../runner/store/naming.js';
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
