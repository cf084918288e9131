import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tool } from '../helpers/cli.js';
import { useTempDirs, writeTree } from '../helpers/tree.js';
import { type Run, cli, describe as describeRun, listing, rootMtimeMs, treeState } from './support.js';

/** `restore --dry-run`: the right adds, replacements and removals with totals, and nothing changes anywhere. */

const tempDir = useTempDirs();

function plan(run: Run) {
  const paths = (event: string) =>
    run.lines
      .filter((l) => l.event === event)
      .map((l) => l.path as string)
      .sort();
  return {
    add: paths('restore.plan.add'),
    replace: paths('restore.plan.replace'),
    remove: paths('restore.plan.remove'),
    summary: run.lines.find((l) => l.event === 'restore.plan')!,
  };
}

async function scene() {
  const source = await tempDir('src');
  const dest = await tempDir('dest');
  const target = await tempDir('target');
  writeTree(source, {
    'same.txt': 'identical\n',
    'same-size.txt': 'AAAA\n',
    'other-size.txt': 'the archive version\n',
    'new.txt': 'only in the archive\n',
    'dir/same.txt': 'same\n',
    'dir/new-inside.txt': 'new\n',
    'new-dir/a.txt': 'a\n',
    'was-dir': 'a file in the archive\n',
    'empty-dir/': '',
  });
  fs.symlinkSync('same.txt', path.join(source, 'link'));
  fs.linkSync(path.join(source, 'same.txt'), path.join(source, 'hard.txt'));
  writeTree(target, {
    'same.txt': 'identical\n',
    'hard.txt': 'identical\n',
    'same-size.txt': 'BBBB\n',
    'other-size.txt': 'old\n',
    'dir/same.txt': 'same\n',
    'dir/extra.txt': 'only in the target\n',
    'extra-dir/x.txt': 'x\n',
    'extra-dir/y/z.txt': 'z\n',
    'was-dir/inside.txt': 'i\n',
    'empty-dir/': '',
    'lost+found/': '',
  });
  fs.symlinkSync('dir', path.join(target, 'link'));
  return { source, dest, target };
}

async function dryRun(dest: string, target: string, extra: string[]) {
  const before = treeState(target);
  const mtime = rootMtimeMs(target);
  const destBefore = listing(dest);
  const run = await cli(['restore', '--dest', dest, '--archive', 'latest', '--target', target, '--dry-run', ...extra]);
  expect(run.code, describeRun(run)).toBe(0);
  expect(treeState(target)).toBe(before);
  expect(rootMtimeMs(target)).toBe(mtime);
  expect(listing(dest)).toEqual(destBefore);
  return run;
}

describe('dry run', () => {
  it('replace: lists adds, content changes and removals with totals, changes nothing', async () => {
    const { source, dest, target } = await scene();
    const backup = await cli(['backup', '--source', source, '--dest', dest]);
    expect(backup.code, describeRun(backup)).toBe(0);
    const run = await dryRun(dest, target, []);
    const p = plan(run);
    expect(p.add).toEqual(['./dir/new-inside.txt', './new-dir/', './new-dir/a.txt', './new.txt']);
    expect(p.replace).toEqual(['./link', './other-size.txt', './same-size.txt', './was-dir']);
    expect(p.remove).toEqual(['./dir/extra.txt', './extra-dir/', './extra-dir/x.txt', './extra-dir/y/', './extra-dir/y/z.txt', './was-dir/inside.txt']);
    expect(p.summary).toMatchObject({ add: 4, replace: 4, remove: 6, unchanged: 5, dryRun: true, mode: 'replace' });
    expect(p.summary.addBytes).toBe('new\n'.length + 'a\n'.length + 'only in the archive\n'.length);
    expect(p.summary.msg).toMatch(/nothing was changed/);
    expect(run.lines.some((l) => l.event === 'restore.plan.snapshot')).toBe(true);
  });

  it('merge: nothing is removed except below a directory the archive replaces with a file', async () => {
    const { source, dest, target } = await scene();
    const backup = await cli(['backup', '--source', source, '--dest', dest]);
    expect(backup.code, describeRun(backup)).toBe(0);
    const p = plan(await dryRun(dest, target, ['--mode', 'merge', '--no-snapshot']));
    expect(p.add).toEqual(['./dir/new-inside.txt', './new-dir/', './new-dir/a.txt', './new.txt']);
    expect(p.replace).toEqual(['./link', './other-size.txt', './same-size.txt', './was-dir']);
    expect(p.remove).toEqual(['./was-dir/inside.txt']);
  });

  it('works for an archive without manifest (hashing it in the pass), with --allow-unverified', async () => {
    const { source, dest, target } = await scene();
    tool('tar', ['czf', path.join(dest, 'plain.tar.gz'), '-C', source, '.']);
    const before = treeState(target);
    const run = await cli(['restore', '--dest', dest, '--archive', 'plain.tar.gz', '--target', target, '--dry-run', '--allow-unverified']);
    expect(run.code, describeRun(run)).toBe(0);
    const p = plan(run);
    expect(p.add).toEqual(['./dir/new-inside.txt', './new-dir/', './new-dir/a.txt', './new.txt']);
    expect(p.replace).toEqual(['./link', './other-size.txt', './same-size.txt', './was-dir']);
    expect(p.summary).toMatchObject({ remove: 6, unchanged: 5 });
    expect(treeState(target)).toBe(before);
  });

  it('sorts an index larger than memory holds on disk, and a path archived twice counts as its last copy', { timeout: 60_000 }, async () => {
    const { source, dest, target } = await scene();
    const many = 40_000;
    fs.mkdirSync(path.join(source, 'many'));
    for (let i = 0; i < many; i++) fs.writeFileSync(path.join(source, 'many', `f${(i * 7919) % many}`), i % 3 === 0 ? `${i}\n` : '');
    const archive = path.join(dest, 'plain.tar');
    tool('tar', ['cf', archive, '-C', source, '.']);
    const later = await tempDir('later');
    writeTree(later, { 'dir/same.txt': 'a later, longer copy\n' });
    tool('tar', ['rf', archive, '-C', later, './dir/same.txt']);
    const run = await cli(['restore', '--dest', dest, '--archive', 'plain.tar', '--target', target, '--dry-run', '--allow-unverified']);
    expect(run.code, describeRun(run)).toBe(0);
    const p = plan(run);
    const manyPaths = ['./many/', ...Array.from({ length: many }, (_, i) => `./many/f${i}`)];
    expect(p.add).toEqual(['./dir/new-inside.txt', ...manyPaths, './new-dir/', './new-dir/a.txt', './new.txt'].sort());
    expect(p.replace).toEqual(['./dir/same.txt', './link', './other-size.txt', './same-size.txt', './was-dir']);
    expect(p.summary).toMatchObject({ add: 4 + many + 1, remove: 6, unchanged: 4 });
  });
});
