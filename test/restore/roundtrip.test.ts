import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { OTHER_UID, buildRichTree, exactState, isRoot, snapshotTree, useTempDirs, writeTree } from '../helpers/tree.js';
import { tool } from '../helpers/cli.js';
import { cli, controlEntries, describe as describeRun, dirAndLinkTimes, listing } from './support.js';

/**
 * Real round trips through the CLI: pvc-backup backup → pvc-backup restore, compared entry by
 * entry (content, modes incl. setgid, owners when root, file/directory/symlink mtimes, symlink
 * targets, hard links, empty directories, long and unicode names), plus replace vs merge
 * semantics, the pre-restore snapshot and its retention, request ids and non-root restores.
 */

const tempDir = useTempDirs();

async function backup(source: string, dest: string, extra: string[] = []): Promise<string> {
  const run = await cli(['backup', '--source', source, '--dest', dest, '--allow-empty', ...extra]);
  expect(run.code, describeRun(run)).toBe(0);
  return run.lines.find((l) => l.event === 'backup.done')!.archive as string;
}

async function restore(args: string[], expectCode = 0, options: { uid?: number; gid?: number } = {}) {
  const run = await cli(['restore', ...args], options);
  expect(run.code, describeRun(run)).toBe(expectCode);
  return run;
}

describe('replace into an empty directory', () => {
  it.each(['gzip', 'zstd', 'none'])('reproduces the tree exactly (%s)', async (compression) => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    const tree = buildRichTree(source, { bigFileBytes: 512 * 1024 });
    fs.chmodSync(source, 0o751);
    const archive = await backup(source, dest, ['--compression', compression]);
    const inode = fs.statSync(target).ino;
    const run = await restore(['--dest', dest, '--archive', archive, '--target', target]);
    expect(snapshotTree(target, { owner: isRoot })).toEqual(snapshotTree(source, { owner: isRoot }));
    expect(dirAndLinkTimes(target)).toEqual(dirAndLinkTimes(source));
    expect(fs.statSync(target).ino).toBe(inode);
    expect(fs.statSync(target).mode & 0o7777).toBe(0o751);
    expect(controlEntries(target)).toEqual([]);
    expect(fs.readFileSync(path.join(target, tree.unicodeName), 'utf8')).toBe('unicode\n');
    expect(fs.statSync(path.join(target, 'modes/setgid-dir')).mode & 0o7777).toBe(0o2755);
    if (isRoot) expect(fs.statSync(path.join(target, 'hello.txt')).uid).toBe(OTHER_UID);
    // Summary line with name, bytes, files; an empty target needs no snapshot.
    const done = run.lines.find((l) => l.event === 'restore.done')!;
    expect(done).toMatchObject({ archive, mode: 'replace', verified: true });
    expect(done.files).toBeGreaterThan(10);
    expect(run.lines.some((l) => l.event === 'restore.no-snapshot')).toBe(true);
    expect(listing(dest).filter((n) => n.includes('pre-restore'))).toEqual([]);
  });

  it('prints progress lines while it runs and restores setuid bits as root', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    writeTree(source, { 'big.bin': Buffer.alloc(24 * 1024 * 1024, 7), 'tool': '#!/bin/sh\n' });
    fs.chmodSync(path.join(source, 'tool'), 0o4755);
    const archive = await backup(source, dest);
    const run = await restore(['--dest', dest, '--archive', archive, '--target', target, '--progress-interval', '1ms']);
    expect(run.lines.filter((l) => l.event === 'restore.progress').length).toBeGreaterThan(0);
    expect(run.lines.at(-1)!.event).toBe('restore.done');
    if (isRoot) expect(fs.statSync(path.join(target, 'tool')).mode & 0o7777).toBe(0o4755);
  });
});

describe('replace over existing data', () => {
  it('removes what the archive does not hold, keeps lost+found and the target inode, and snapshots the old data first', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    buildRichTree(source, { bigFileBytes: 64 * 1024 });
    const archive = await backup(source, dest);
    writeTree(target, { 'hello.txt': 'old content\n', 'extra.txt': 'not in the archive\n', 'extra-dir/x/y.txt': 'deep\n', 'lost+found/#1234': 'fsck found me\n' });
    fs.symlinkSync('extra-dir', path.join(target, 'data')); // where the archive has a directory
    const old = snapshotTree(target, { owner: true });
    const inode = fs.statSync(target).ino;

    const run = await restore(['--dest', dest, '--archive', archive, '--target', target]);
    const ignoreLostFound = { owner: isRoot, ignore: (rel: string) => rel === 'lost+found' };
    expect(snapshotTree(target, ignoreLostFound)).toEqual(snapshotTree(source, ignoreLostFound));
    expect(fs.readFileSync(path.join(target, 'lost+found/#1234'), 'utf8')).toBe('fsck found me\n');
    expect(fs.statSync(target).ino).toBe(inode);
    expect(controlEntries(target)).toEqual([]);

    // The snapshot is a normal, verifiable archive of the old data (lost+found excluded).
    const snapshot = run.lines.find((l) => l.event === 'restore.done')!.snapshot as string;
    expect(snapshot).toMatch(/^backup-pre-restore-\d{8}T\d{6}Z(-\d+)?\.tar\.zst$/);
    expect(listing(dest)).toEqual(expect.arrayContaining([snapshot, `${snapshot}.sha256`, `${snapshot}.manifest.json`]));
    const verify = await cli(['verify', '--dest', dest, snapshot]);
    expect(verify.code, describeRun(verify)).toBe(0);

    // Restoring the snapshot brings the old data back (lost+found stays the target's own).
    await restore(['--dest', dest, '--archive', snapshot, '--target', target, '--no-snapshot']);
    expect(snapshotTree(target, { owner: true })).toEqual(old);
  });

  it('keeps only the newest 3 snapshots, and a regular prune never touches them', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    writeTree(source, { 'a.txt': 'archive\n' });
    const archive = await backup(source, dest);
    for (let i = 0; i < 5; i++) {
      writeTree(target, { [`state-${i}.txt`]: `${i}\n` });
      await restore(['--dest', dest, '--archive', archive, '--target', target]);
    }
    const snapshots = listing(dest).filter((n) => /pre-restore.*\.tar\.zst$/.test(n));
    expect(snapshots).toHaveLength(3);
    // Another backup and a prune of the prefix keep all snapshots.
    await backup(source, dest);
    const prune = await cli(['prune', '--dest', dest, '--keep-last', '1']);
    expect(prune.code, describeRun(prune)).toBe(0);
    expect(listing(dest).filter((n) => /pre-restore.*\.tar\.zst$/.test(n))).toEqual(snapshots);
    expect(listing(dest).filter((n) => /^backup-\d.*\.tar\.gz$/.test(n))).toHaveLength(1);
  });

  it.skipIf(!isRoot)('a swap that fails on an ordinary error is undone (an immutable file cannot be moved)', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    writeTree(source, { 'new.txt': 'archive\n' });
    const archive = await backup(source, dest);
    writeTree(target, { 'a.txt': 'a\n', 'b.txt': 'b\n', 'c/d.txt': 'd\n', 'pinned.txt': 'immutable\n', 'z.txt': 'z\n' });
    const before = snapshotTree(target, { owner: true });
    const pinned = path.join(target, 'pinned.txt');
    try {
      tool('chattr', ['+i', pinned]);
    } catch {
      return; // file system without attributes
    }
    try {
      const run = await restore(['--dest', dest, '--archive', archive, '--target', target, '--no-snapshot'], 1);
      expect(run.lines.find((l) => l.level === 'error' && l.event === 'restore.failed')?.msg).toMatch(/previous contents were put back/);
      expect(snapshotTree(target, { owner: true })).toEqual(before);
      expect(controlEntries(target)).toEqual([]);
    } finally {
      tool('chattr', ['-i', pinned]);
    }
  });

  it('with --no-snapshot writes nothing to DEST and says so', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    writeTree(source, { 'a.txt': 'archive\n' });
    writeTree(target, { 'b.txt': 'current\n' });
    const archive = await backup(source, dest);
    const before = listing(dest);
    const run = await restore(['--dest', dest, '--archive', archive, '--target', target, '--no-snapshot']);
    expect(listing(dest)).toEqual(before);
    expect(run.lines.find((l) => l.event === 'restore.no-snapshot')?.level).toBe('warn');
    expect(listing(target)).toEqual(['a.txt']);
  });
});

describe('merge', () => {
  it('extracts over the tree: archive entries win, files absent from the archive stay', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    writeTree(source, { 'a.txt': 'archive a\n', 'dir/b.txt': 'archive b\n', 'file-here': 'was a dir in the target\n', 'linked/c.txt': 'c\n' });
    fs.chmodSync(path.join(source, 'a.txt'), 0o600);
    const archive = await backup(source, dest);
    writeTree(target, { 'a.txt': 'old a, longer than the new one\n', 'dir/b.txt': 'old b\n', 'dir/keep.txt': 'keep me\n', 'keep.txt': 'keep me too\n', 'file-here/inner.txt': 'x\n' });
    const outside = await tempDir('outside');
    fs.symlinkSync(outside, path.join(target, 'linked')); // the archive has a directory there
    fs.linkSync(path.join(target, 'keep.txt'), path.join(target, 'a-hardlink-of-keep'));
    const inode = fs.statSync(target).ino;
    const run = await restore(['--dest', dest, '--archive', archive, '--target', target, '--mode', 'merge']);
    expect(run.lines.find((l) => l.event === 'restore.done')).toMatchObject({ mode: 'merge' });
    const read = (rel: string) => fs.readFileSync(path.join(target, rel), 'utf8');
    expect(read('a.txt')).toBe('archive a\n');
    expect(fs.statSync(path.join(target, 'a.txt')).mode & 0o777).toBe(0o600);
    expect(read('dir/b.txt')).toBe('archive b\n');
    expect(read('dir/keep.txt')).toBe('keep me\n');
    expect(read('keep.txt')).toBe('keep me too\n');
    expect(read('file-here')).toBe('was a dir in the target\n');
    expect(fs.lstatSync(path.join(target, 'linked')).isDirectory()).toBe(true);
    expect(read('linked/c.txt')).toBe('c\n');
    expect(listing(outside)).toEqual([]);
    expect(fs.statSync(target).ino).toBe(inode);
    expect(controlEntries(target)).toEqual([]);
    expect(listing(dest).filter((n) => /pre-restore.*\.tar\.zst$/.test(n))).toHaveLength(1);
  });
});

describe('request ids', () => {
  it('a request runs once: a retry of the Job that completed it exits 0, any other run of it fails saying how to ask again', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    writeTree(source, { 'a.txt': 'archive\n' });
    const first = await backup(source, dest);
    await restore(['--dest', dest, '--archive', 'latest', '--target', target, '--request-id', 'req-1', '--job-uid', 'job-a']);
    const record = JSON.parse(fs.readFileSync(path.join(dest, '.pvc-backup-restore-req-1.done'), 'utf8')) as Record<string, string>;
    expect(record).toMatchObject({ requestId: 'req-1', jobUid: 'job-a', archive: first, completedAt: expect.any(String) });

    // The same Job's pod again (restarted after it had finished): nothing to do, success.
    writeTree(target, { 'written-after.txt': 'by the app\n' });
    const retry = await restore(['--dest', dest, '--archive', 'latest', '--target', target, '--request-id', 'req-1', '--job-uid', 'job-a']);
    expect(retry.lines.some((l) => l.event === 'restore.already-done' && l.level === 'info')).toBe(true);
    expect(listing(target)).toEqual(['a.txt', 'written-after.txt']);

    // Weeks later: a newer backup, the same documented steps, so the same request id from a new Job.
    await new Promise((r) => setTimeout(r, 1100));
    writeTree(source, { 'b.txt': 'newer\n' });
    const newer = await backup(source, dest);
    expect(newer).not.toBe(first);
    const before = exactState(target);
    for (const jobUid of [['--job-uid', 'job-b'], []]) {
      const repeated = await restore(['--dest', dest, '--archive', 'latest', '--target', target, '--request-id', 'req-1', ...jobUid], 2);
      const failure = repeated.lines.at(-1)!;
      expect(failure).toMatchObject({ level: 'error', event: 'restore.failed', exitCode: 2, code: 'ALREADY_RESTORED' });
      expect(failure.msg).toContain(`already ran at ${record.completedAt} from ${first}`);
      expect(failure.msg).toContain('set restore.nonce to a new value (e.g. --set restore.nonce=$(date +%s)) to restore again');
      expect(exactState(target)).toBe(before);
    }

    // A new request (what a new restore.nonce gives): the newest archive is restored.
    await restore(['--dest', dest, '--archive', 'latest', '--target', target, '--request-id', 'req-2', '--job-uid', 'job-c', '--no-snapshot']);
    expect(listing(target)).toEqual(['a.txt', 'b.txt']);
  });
});

describe.skipIf(!isRoot)('as non-root', () => {
  it('restores contents, modes and mtimes, leaves owners to the running user and warns once', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    buildRichTree(source, { bigFileBytes: 64 * 1024 });
    const archive = await backup(source, dest);
    writeTree(target, { 'old.txt': 'old\n', 'old-dir/x.txt': 'x\n' });
    fs.chmodSync(path.join(target, 'old-dir'), 0o555);
    const user = 65534;
    for (const dir of [dest, target]) {
      fs.chownSync(dir, user, user);
      for (const name of fs.readdirSync(dir)) fs.lchownSync(path.join(dir, name), user, user);
    }
    fs.chownSync(path.join(target, 'old-dir/x.txt'), user, user);
    const run = await restore(['--dest', dest, '--archive', archive, '--target', target], 0, { uid: user, gid: user });
    expect(run.lines.filter((l) => l.event === 'restore.not-root')).toHaveLength(1);
    expect(snapshotTree(target, { root: false })).toEqual(snapshotTree(source, { root: false }));
    expect(dirAndLinkTimes(target)).toEqual(dirAndLinkTimes(source));
    const owners = new Set(snapshotTree(target, { owner: true }).map((e) => `${e.uid}:${e.gid}`));
    expect([...owners]).toEqual([`${user}:${user}`]);
    expect(controlEntries(target)).toEqual([]);
  });
});
