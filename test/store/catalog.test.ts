import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode, IntegrityError, UsageError } from '../../runner/errors.js';
import { findArchive, listArchives, readManifest, summarizeManifest } from '../../runner/store/catalog.js';
import { makeArchive, useTempDirs } from './support.js';

const tempDir = useTempDirs();

describe('listArchives', () => {
  it('orders newest first by name time then sequence, numerically, never by mtime or string order', async () => {
    const dir = await tempDir('catalog');
    const future = new Date('2030-01-01T00:00:00Z');
    const past = new Date('2000-01-01T00:00:00Z');
    // mtimes deliberately contradict the names.
    await makeArchive(dir, 'backup-20260101T000000Z.tar.gz', { mtime: future });
    await makeArchive(dir, 'backup-20260102T000000Z.tar.gz', { mtime: past });
    await makeArchive(dir, 'backup-20260102T000000Z-2.tar.zst', { mtime: past });
    await makeArchive(dir, 'backup-20260102T000000Z-10.tar', { mtime: past });
    await makeArchive(dir, 'backup-20260102T000000Z-9.tar.gz', { mtime: future });
    const list = await listArchives(dir, 'backup');
    expect(list.map((a) => a.name)).toEqual([
      'backup-20260102T000000Z-10.tar',
      'backup-20260102T000000Z-9.tar.gz',
      'backup-20260102T000000Z-2.tar.zst',
      'backup-20260102T000000Z.tar.gz',
      'backup-20260101T000000Z.tar.gz',
    ]);
    expect(list[0]).toMatchObject({ prefix: 'backup', sequence: 10, compression: 'none' });
    expect(list[2]!.compression).toBe('zstd');
    expect(list[4]!.time.toISOString()).toBe('2026-01-01T00:00:00.000Z');
  });

  it('includes only names of exactly this prefix that follow the pattern', async () => {
    const dir = await tempDir('catalog');
    await makeArchive(dir, 'backup-20260101T000000Z.tar.gz');
    await makeArchive(dir, 'backup-pre-restore-20260102T000000Z.tar.gz');
    await makeArchive(dir, 'other-20260103T000000Z.tar.gz');
    await makeArchive(dir, 'backup-latest.tar.gz');
    await makeArchive(dir, 'backup-20261301T000000Z.tar.gz'); // month 13
    await writeFile(path.join(dir, 'notes.txt'), 'x');
    await writeFile(path.join(dir, '.backup-20260104T000000Z.tar.gz.partial'), 'x');
    await mkdir(path.join(dir, 'backup-20260105T000000Z.tar.gz')); // a directory, not an archive
    expect((await listArchives(dir, 'backup')).map((a) => a.name)).toEqual(['backup-20260101T000000Z.tar.gz']);
    expect((await listArchives(dir, 'backup-pre-restore')).map((a) => a.name)).toEqual(['backup-pre-restore-20260102T000000Z.tar.gz']);
    expect(await listArchives(dir, 'nothing')).toEqual([]);
  });

  it('reports size, sidecars and (on request) the manifest summary and verification state', async () => {
    const dir = await tempDir('catalog');
    await makeArchive(dir, 'b-20260101T000000Z.tar.gz', { bytes: 1234, manifest: { entryCount: 7, totalBytes: 4096, verification: { at: '2026-01-02T00:00:00Z', ok: true } } });
    await makeArchive(dir, 'b-20260102T000000Z.tar.gz', { manifest: { verification: { at: '2026-01-03T00:00:00Z', ok: false, error: 'checksum mismatch' } } });
    await makeArchive(dir, 'b-20260103T000000Z.tar.gz', { sha256: false });
    await makeArchive(dir, 'b-20260104T000000Z.tar.gz', { manifest: false });
    await makeArchive(dir, 'b-20260105T000000Z.tar.gz', { manifest: '{ not json' });

    const plain = await listArchives(dir, 'b');
    expect(plain.every((a) => a.summary === undefined)).toBe(true);

    const list = await listArchives(dir, 'b', { manifests: true });
    const byName = Object.fromEntries(list.map((a) => [a.name.slice(2, 10), a]));
    expect(byName['20260101']).toMatchObject({ size: 1234, hasSha256: true, hasManifest: true, summary: { entryCount: 7, totalBytes: 4096, verification: 'verified', verifiedAt: '2026-01-02T00:00:00Z' } });
    expect(byName['20260102']!.summary).toMatchObject({ verification: 'failed', error: 'checksum mismatch' });
    expect(byName['20260103']).toMatchObject({ hasSha256: false, hasManifest: true, summary: { verification: 'unverified', entryCount: 3 } });
    expect(byName['20260104']).toMatchObject({ hasSha256: true, hasManifest: false, summary: { verification: 'no-manifest', entryCount: undefined } });
    expect(byName['20260105']!.summary).toMatchObject({ verification: 'failed' });
    expect(byName['20260105']!.summary!.manifestError).toMatch(/not valid JSON/);
  });
});

describe('summarizeManifest', () => {
  it('maps the optional verification field to a state', () => {
    expect(summarizeManifest(undefined).verification).toBe('no-manifest');
    const base = { entryCount: 1, totalBytes: 2 } as Parameters<typeof summarizeManifest>[0];
    expect(summarizeManifest(base).verification).toBe('unverified');
    expect(summarizeManifest({ ...base!, verification: { at: 't', ok: true } }).verification).toBe('verified');
    expect(summarizeManifest({ ...base!, verification: { at: 't', ok: false } }).verification).toBe('failed');
  });
});

describe('findArchive', () => {
  it('resolves latest to the newest archive of the prefix only', async () => {
    const dir = await tempDir('catalog');
    await makeArchive(dir, 'backup-20260101T000000Z.tar.gz');
    await makeArchive(dir, 'backup-20260101T000000Z-2.tar.gz');
    await makeArchive(dir, 'backup-pre-restore-20260301T000000Z.tar.gz');
    await makeArchive(dir, 'other-20260401T000000Z.tar.gz');
    expect((await findArchive(dir, 'backup', 'latest')).name).toBe('backup-20260101T000000Z-2.tar.gz');
    expect((await findArchive(dir, 'other', 'latest')).name).toBe('other-20260401T000000Z.tar.gz');
  });

  it('throws a one-line usage error when there is no archive', async () => {
    const dir = await tempDir('catalog');
    await makeArchive(dir, 'other-20260401T000000Z.tar.gz');
    const latest = await findArchive(dir, 'backup', 'latest').catch((e: unknown) => e);
    expect(latest).toBeInstanceOf(UsageError);
    expect((latest as UsageError).exitCode).toBe(ExitCode.usage);
    expect((latest as Error).message).toBe(`no archive with prefix backup in ${dir}; ${dir} holds archives with prefix other (1): pick one with --prefix NAME (or PVC_BACKUP_PREFIX)`);
    const empty = await tempDir('catalog');
    expect(((await findArchive(empty, 'backup', 'latest').catch((e: unknown) => e)) as Error).message).toBe(`no archive with prefix backup in ${empty}; run pvc-backup list --dest ${empty}`);
    const named = await findArchive(dir, 'backup', 'backup-20260101T000000Z.tar.gz').catch((e: unknown) => e);
    expect((named as Error).message).toBe(`no archive named backup-20260101T000000Z.tar.gz in ${dir}; run pvc-backup list --dest ${dir}`);
    await expect(findArchive(dir, 'backup', '../etc/passwd')).rejects.toBeInstanceOf(UsageError);
  });

  it('resolves an explicit name, also of another prefix or made by another tool', async () => {
    const dir = await tempDir('catalog');
    await makeArchive(dir, 'backup-pre-restore-20260301T000000Z.tar.gz');
    await makeArchive(dir, 'nightly.tgz', { sha256: false, manifest: false, bytes: 5 });
    await writeFile(path.join(dir, 'notes.txt'), 'x');
    expect(await findArchive(dir, 'backup', 'backup-pre-restore-20260301T000000Z.tar.gz')).toMatchObject({
      prefix: 'backup-pre-restore',
      foreign: false,
      hasSha256: true,
      hasManifest: true,
    });
    expect(await findArchive(dir, 'backup', 'nightly.tgz')).toMatchObject({ foreign: true, compression: 'gzip', size: 5, hasSha256: false, hasManifest: false });
    await expect(findArchive(dir, 'backup', 'notes.txt')).rejects.toThrow(/not a tar archive/);
  });
});

describe('readManifest', () => {
  it('returns the parsed manifest, undefined when absent, and an integrity error when unreadable', async () => {
    const dir = await tempDir('catalog');
    await makeArchive(dir, 'b-20260101T000000Z.tar.gz', { manifest: { entryCount: 42 } });
    await makeArchive(dir, 'b-20260102T000000Z.tar.gz', { manifest: false });
    await makeArchive(dir, 'b-20260103T000000Z.tar.gz', { manifest: '{"truncated": ' });
    await makeArchive(dir, 'b-20260104T000000Z.tar.gz', { manifest: '[1, 2]' });
    expect((await readManifest(dir, 'b-20260101T000000Z.tar.gz'))?.entryCount).toBe(42);
    expect(await readManifest(dir, 'b-20260102T000000Z.tar.gz')).toBeUndefined();
    const bad = await readManifest(dir, 'b-20260103T000000Z.tar.gz').catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(IntegrityError);
    expect((bad as IntegrityError).exitCode).toBe(ExitCode.integrity);
    await expect(readManifest(dir, 'b-20260104T000000Z.tar.gz')).rejects.toBeInstanceOf(IntegrityError);
  });
});
