import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs, writeTree } from '../helpers/tree.js';
import { cli, describe as describeRun, listing, treeState, writeArchive } from './support.js';

/** `restore --path`: only the selected files and subtrees are written, merged into the target; bad selections change nothing. */

const tempDir = useTempDirs();

async function backedUp() {
  const source = await tempDir('src');
  const dest = await tempDir('dest');
  const target = await tempDir('target');
  writeTree(source, {
    'etc/app.conf': 'archived config\n',
    'etc/other.conf': 'archived other\n',
    'data/db/a.bin': 'A'.repeat(5000),
    'data/db/deep/b.bin': 'B'.repeat(70_000),
    'data/cache/c.tmp': 'cache\n',
    'top.txt': 'archived top\n',
  });
  fs.chmodSync(path.join(source, 'etc/app.conf'), 0o600);
  fs.symlinkSync('data', path.join(source, 'link-to-data'));
  const backup = await cli(['backup', '--source', source, '--dest', dest]);
  expect(backup.code, describeRun(backup)).toBe(0);
  writeTree(target, {
    'etc/app.conf': 'changed since\n',
    'etc/other.conf': 'changed too\n',
    'top.txt': 'live top\n',
    'new-since.txt': 'written after the backup\n',
  });
  return { source, dest, target };
}

const read = (root: string, rel: string) => fs.readFileSync(path.join(root, rel), 'utf8');

describe('restore --path', () => {
  it('restores one file (with or without ./) and leaves everything else alone', async () => {
    const { dest, target } = await backedUp();
    const run = await cli(['restore', '--dest', dest, '--target', target, '--path', './etc/app.conf', '--no-snapshot']);
    expect(run.code, describeRun(run)).toBe(0);
    expect(read(target, 'etc/app.conf')).toBe('archived config\n');
    expect(fs.statSync(path.join(target, 'etc/app.conf')).mode & 0o777).toBe(0o600);
    expect(read(target, 'etc/other.conf')).toBe('changed too\n');
    expect(read(target, 'top.txt')).toBe('live top\n');
    expect(read(target, 'new-since.txt')).toBe('written after the backup\n');
    expect(fs.existsSync(path.join(target, 'data'))).toBe(false);
    const done = run.lines.find((l) => l.event === 'restore.done')!;
    expect(done.mode).toBe('merge');
    expect(done.files).toBe(1);
    // The whole archive was verified first.
    expect(run.lines.some((l) => l.event === 'restore.verified')).toBe(true);

    fs.writeFileSync(path.join(target, 'top.txt'), 'edited\n');
    const plain = await cli(['restore', '--dest', dest, '--target', target, '--path', 'top.txt', '--no-snapshot']);
    expect(plain.code, describeRun(plain)).toBe(0);
    expect(read(target, 'top.txt')).toBe('archived top\n');
  });

  it('restores directory subtrees given in PVC_BACKUP_PATH (one per line), into another --target', async () => {
    const { dest } = await backedUp();
    const elsewhere = await tempDir('elsewhere');
    const run = await cli(['restore', '--dest', dest, '--target', elsewhere], { env: { PVC_BACKUP_PATH: 'data/db/\n./etc' } });
    expect(run.code, describeRun(run)).toBe(0);
    expect(read(elsewhere, 'data/db/a.bin')).toBe('A'.repeat(5000));
    expect(read(elsewhere, 'data/db/deep/b.bin')).toBe('B'.repeat(70_000));
    expect(read(elsewhere, 'etc/app.conf')).toBe('archived config\n');
    expect(read(elsewhere, 'etc/other.conf')).toBe('archived other\n');
    expect(fs.existsSync(path.join(elsewhere, 'data/cache'))).toBe(false);
    expect(fs.existsSync(path.join(elsewhere, 'top.txt'))).toBe(false);
    expect(fs.existsSync(path.join(elsewhere, 'link-to-data'))).toBe(false);
  });

  it('a path not in the archive: exit 2 naming it, nothing written (no snapshot either)', async () => {
    const { dest, target } = await backedUp();
    const before = treeState(target);
    const destBefore = listing(dest);
    const run = await cli(['restore', '--dest', dest, '--target', target, '--path', 'etc/app.conf', '--path', 'etc/missing.conf']);
    expect(run.code, describeRun(run)).toBe(2);
    expect(run.stdout + run.stderr).toContain('./etc/missing.conf is not in');
    expect(treeState(target)).toBe(before);
    expect(listing(dest)).toEqual(destBefore);
  });

  it('a path through a symlink stored in the archive is refused (exit 2); the symlink itself can be restored', async () => {
    const { dest, target } = await backedUp();
    const before = treeState(target);
    const run = await cli(['restore', '--dest', dest, '--target', target, '--path', 'link-to-data/db/a.bin']);
    expect(run.code, describeRun(run)).toBe(2);
    expect(run.stdout + run.stderr).toContain('leads through ./link-to-data, which is a symlink');
    expect(treeState(target)).toBe(before);

    const link = await cli(['restore', '--dest', dest, '--target', target, '--path', 'link-to-data', '--no-snapshot']);
    expect(link.code, describeRun(link)).toBe(0);
    expect(fs.readlinkSync(path.join(target, 'link-to-data'))).toBe('data');
  });

  it('a path through a symlink is refused also in an archive without a manifest (--allow-unverified)', async () => {
    const dest = await tempDir('dest');
    const target = await tempDir('target');
    writeArchive(dest, 'foreign.tar', [
      { path: './', type: 'Directory' },
      { path: './dir/', type: 'Directory' },
      { path: './dir/sub/', type: 'Directory' },
      { path: './dir/escape', type: 'SymbolicLink', linkpath: 'sub' },
      { path: './dir/file', data: 'x\n' },
    ]);
    const before = treeState(target);
    const run = await cli(['restore', '--dest', dest, '--archive', 'foreign.tar', '--target', target, '--allow-unverified', '--path', 'dir/escape/passwd', '--no-snapshot']);
    expect(run.code, describeRun(run)).toBe(2);
    expect(run.stdout + run.stderr).toContain('leads through ./dir/escape, which is a symlink');
    expect(treeState(target)).toBe(before);

    const ok = await cli(['restore', '--dest', dest, '--archive', 'foreign.tar', '--target', target, '--allow-unverified', '--path', 'dir/file', '--no-snapshot']);
    expect(ok.code, describeRun(ok)).toBe(0);
    expect(read(target, 'dir/file')).toBe('x\n');
    expect(fs.existsSync(path.join(target, 'dir/escape'))).toBe(false);
  });

  it('--dry-run lists only what the selected paths would write, and changes nothing', async () => {
    const { dest, target } = await backedUp();
    const before = treeState(target);
    const run = await cli(['restore', '--dest', dest, '--target', target, '--path', 'etc', '--path', 'data/db', '--dry-run']);
    expect(run.code, describeRun(run)).toBe(0);
    const paths = (event: string) =>
      run.lines
        .filter((l) => l.event === event)
        .map((l) => l.path)
        .sort();
    expect(paths('restore.plan.add')).toEqual(['./data/db/', './data/db/a.bin', './data/db/deep/', './data/db/deep/b.bin']);
    expect(paths('restore.plan.replace')).toEqual(['./etc/app.conf', './etc/other.conf']);
    expect(paths('restore.plan.remove')).toEqual([]);
    const summary = run.lines.find((l) => l.event === 'restore.plan')!;
    expect(summary.mode).toBe('merge');
    expect(summary.paths).toEqual(['data/db', 'etc']);
    expect(treeState(target)).toBe(before);
  });

  it('the whole archive is still verified: damage outside the selected path fails with exit 3 and writes nothing', async () => {
    const { dest, target } = await backedUp();
    const archive = fs.readdirSync(dest).find((n) => /\.tar(\.[a-z]+)?$/.test(n))!;
    const file = path.join(dest, archive);
    const bytes = fs.readFileSync(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    fs.writeFileSync(file, bytes);
    const before = treeState(target);
    const run = await cli(['restore', '--dest', dest, '--target', target, '--path', 'etc/app.conf', '--no-snapshot']);
    expect(run.code, describeRun(run)).toBe(3);
    expect(treeState(target)).toBe(before);
  });

  it('refuses --mode replace with --path, and paths that are absolute, escape or name the whole archive', async () => {
    const { dest, target } = await backedUp();
    const cases: [string[], string][] = [
      [['--mode', 'replace', '--path', 'etc'], '--mode replace cannot be combined with --path'],
      [['--path', '/etc/app.conf'], 'is absolute'],
      [['--path', 'etc/../top.txt'], 'not a plain path'],
      [['--path', './'], 'names the whole archive'],
    ];
    for (const [extra, text] of cases) {
      const run = await cli(['restore', '--dest', dest, '--target', target, ...extra]);
      expect(run.code, describeRun(run)).toBe(2);
      expect(run.stdout + run.stderr).toContain(text);
    }
  });
});
