import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runList } from '../../runner/commands/list.js';
import type { ListConfig } from '../../runner/config.js';
import { memoryLogger } from '../../runner/log.js';
import { LOCK_FILE } from '../../runner/store/naming.js';
import { makeArchive, names, useTempDirs } from '../store/support.js';

const tempDir = useTempDirs();

function config(dest: string, json: boolean, prefix = 'backup'): ListConfig {
  return { command: 'list', dest, prefix, json, logFormat: 'text', lockStaleSeconds: 600, progressSeconds: 10 };
}

async function populate(dir: string): Promise<void> {
  // 12 entries: 9 regular files, 2 directories, 1 symlink.
  const files = [...Array.from({ length: 9 }, () => ({ type: 'file' })), { type: 'dir' }, { type: 'dir' }, { type: 'symlink' }];
  await makeArchive(dir, 'backup-20260101T000000Z.tar.gz', { bytes: 2048, manifest: { entryCount: 12, totalBytes: 9000, files, verification: { at: '2026-01-01T00:01:00Z', ok: true } } });
  await makeArchive(dir, 'backup-20260102T030405Z.tar.zst', { bytes: 10, manifest: { entryCount: 3, totalBytes: 30 } });
  await makeArchive(dir, 'backup-20260102T030405Z-2.tar.gz', { bytes: 10, manifest: { verification: { at: '2026-01-03T00:00:00Z', ok: false, error: 'checksum mismatch' } } });
  await makeArchive(dir, 'backup-20260102T030405Z-10.tar', { bytes: 3 * 1024 * 1024, sha256: false, manifest: false });
  await makeArchive(dir, 'backup-pre-restore-20260105T000000Z.tar.gz');
  await makeArchive(dir, 'other-20260105T000000Z.tar.gz');
  await writeFile(path.join(dir, 'notes.txt'), 'x');
  await writeFile(path.join(dir, '.backup-20260106T000000Z.tar.gz.partial'), 'x');
}

describe('list', () => {
  it('prints JSON newest first with the documented fields', async () => {
    const dir = await tempDir('list');
    await populate(dir);
    const out: string[] = [];
    await runList(config(dir, true), memoryLogger(), (l) => out.push(l));
    expect(out).toHaveLength(1);
    const rows = JSON.parse(out[0]!) as Record<string, unknown>[];
    expect(rows.map((r) => r.name)).toEqual([
      'backup-20260102T030405Z-10.tar',
      'backup-20260102T030405Z-2.tar.gz',
      'backup-20260102T030405Z.tar.zst',
      'backup-20260101T000000Z.tar.gz',
    ]);
    expect(rows[0]).toEqual({
      name: 'backup-20260102T030405Z-10.tar',
      createdAt: '2026-01-02T03:04:05Z',
      bytes: 3 * 1024 * 1024,
      files: null,
      entries: null,
      totalBytes: null,
      compression: 'none',
      verified: 'no-manifest',
      verifiedAt: null,
      sha256File: null,
      manifestFile: null,
      encrypted: false,
      infoFile: null,
    });
    expect(rows[1]).toMatchObject({ verified: 'failed', verifiedAt: '2026-01-03T00:00:00Z' });
    expect(rows[2]).toMatchObject({ verified: 'unverified', files: 0, entries: 3, totalBytes: 30, compression: 'zstd' });
    expect(rows[3]).toEqual({
      name: 'backup-20260101T000000Z.tar.gz',
      createdAt: '2026-01-01T00:00:00Z',
      bytes: 2048,
      files: 9,
      entries: 12,
      totalBytes: 9000,
      compression: 'gzip',
      verified: 'verified',
      verifiedAt: '2026-01-01T00:01:00Z',
      sha256File: 'backup-20260101T000000Z.tar.gz.sha256',
      manifestFile: 'backup-20260101T000000Z.tar.gz.manifest.json',
      encrypted: false,
      infoFile: null,
    });
  });

  it('prints a table newest first for people, with sizes, files and verified state', async () => {
    const dir = await tempDir('list');
    await populate(dir);
    const out: string[] = [];
    const log = memoryLogger();
    await runList(config(dir, false), log, (l) => out.push(l));
    expect(out[0]).toMatch(/^NAME\s+CREATED \(UTC\)\s+SIZE\s+FILES\s+VERIFIED$/);
    expect(out.slice(1, 5).map((l) => l.split(/\s+/)[0])).toEqual([
      'backup-20260102T030405Z-10.tar',
      'backup-20260102T030405Z-2.tar.gz',
      'backup-20260102T030405Z.tar.zst',
      'backup-20260101T000000Z.tar.gz',
    ]);
    expect(out[1]).toMatch(/2026-01-02 03:04:05\s+3\.0 MiB\s+-\s+no-manifest$/);
    expect(out[4]).toMatch(/2026-01-01 00:00:00\s+2\.0 KiB\s+9\s+verified$/);
    expect(out[5]).toBe('4 archives, 3.0 MiB');
    expect(out).toHaveLength(6);
    // Columns line up: every row starts its CREATED column at the same offset.
    const offset = out[0]!.indexOf('CREATED');
    for (const line of out.slice(1, 5)) expect(line.slice(offset, offset + 4)).toBe('2026');
    expect(log.lines).toEqual([]); // data goes to out, not the log
  });

  it('lists only the exact prefix', async () => {
    const dir = await tempDir('list');
    await populate(dir);
    const out: string[] = [];
    await runList(config(dir, true, 'backup-pre-restore'), memoryLogger(), (l) => out.push(l));
    expect((JSON.parse(out[0]!) as { name: string }[]).map((r) => r.name)).toEqual(['backup-pre-restore-20260105T000000Z.tar.gz']);
  });

  it('says so clearly when there are no archives (and prints [] as JSON)', async () => {
    const dir = await tempDir('list');
    await writeFile(path.join(dir, 'other-20260105T000000Z.tar.gz'), 'x');
    const text: string[] = [];
    await runList(config(dir, false), memoryLogger(), (l) => text.push(l));
    expect(text).toEqual([`no archives with prefix backup in ${dir}; ${dir} holds archives with prefix other (1): pick one with --prefix NAME (or PVC_BACKUP_PREFIX)`]);
    const json: string[] = [];
    await runList(config(dir, true), memoryLogger(), (l) => json.push(l));
    expect(JSON.parse(json.join('\n'))).toEqual([]);
  });

  it('warns about an unreadable manifest but still lists everything, and writes nothing', async () => {
    const dir = await tempDir('list');
    await makeArchive(dir, 'backup-20260101T000000Z.tar.gz', { manifest: '{ broken' });
    await makeArchive(dir, 'backup-20260102T000000Z.tar.gz');
    const before = await names(dir);
    const out: string[] = [];
    const log = memoryLogger();
    const rows = await runList(config(dir, false), log, (l) => out.push(l));
    expect(rows.map((r) => [r.name, r.verified])).toEqual([
      ['backup-20260102T000000Z.tar.gz', 'unverified'],
      ['backup-20260101T000000Z.tar.gz', 'failed'],
    ]);
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]).toMatchObject({ level: 'warn', event: 'list.manifest-unreadable', fields: { archive: 'backup-20260101T000000Z.tar.gz' } });
    expect(await names(dir)).toEqual(before);
    expect(before).not.toContain(LOCK_FILE);
  });
});
