import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mountsInside } from '../../runner/restore/plan.js';
import { exactState, isRoot, useTempDirs, writeTree } from '../helpers/tree.js';
import { cli, controlEntries, describe as describeRun, listing } from './support.js';

/**
 * A separate mount anywhere inside the target (a tmpfs two levels down, one at the top, a file
 * bind-mounted over a file) is refused before anything changes, in every mode, naming the mount;
 * its contents survive, nothing is left behind, and once it is unmounted the next restore works.
 */

const tempDir = useTempDirs();
const mounted: string[] = [];

function mount(args: string[], at: string): void {
  const run = spawnSync('mount', [...args, at], { encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  mounted.push(at);
}

function unmount(at: string): void {
  spawnSync('umount', [at]);
  mounted.splice(mounted.indexOf(at), 1);
}

afterEach(() => {
  for (const at of mounted.splice(0).reverse()) spawnSync('umount', [at]);
});

async function scene() {
  const source = await tempDir('src');
  const dest = await tempDir('dest');
  const target = await tempDir('target');
  writeTree(source, { 'a/b/from-archive.txt': 'archive\n', 'top/x.txt': 'x\n', 'conf': 'archive conf\n' });
  const made = await cli(['backup', '--source', source, '--dest', dest]);
  expect(made.code, describeRun(made)).toBe(0);
  writeTree(target, { 'a/keep.txt': 'target\n', 'a/b/': '', 'top/': '', 'conf': 'target conf\n' });
  return { source, dest, target };
}

describe.skipIf(!isRoot)('mount points inside the target', () => {
  it.each([
    ['a tmpfs two levels down', 'a/b'],
    ['a tmpfs at the top level', 'top'],
    ['a file bind-mounted over a file', 'conf'],
  ])('%s is refused before anything changes, in replace, merge and dry-run', async (_what, rel) => {
    const { dest, target } = await scene();
    const at = path.join(target, rel);
    if (rel === 'conf') {
      const elsewhere = path.join(await tempDir('elsewhere'), 'conf');
      fs.writeFileSync(elsewhere, 'mounted conf\n');
      mount(['--bind', elsewhere], at);
    } else {
      mount(['-t', 'tmpfs', 'restore-test'], at);
      writeTree(at, { 'mounted-data.txt': 'lives on the mount\n', 'deep/more.txt': 'more\n' });
    }
    expect(mountsInside(target)).toEqual([at]);
    const before = exactState(target);
    const destBefore = listing(dest);
    for (const args of [[], ['--mode', 'merge'], ['--dry-run']]) {
      const run = await cli(['restore', '--dest', dest, '--archive', 'latest', '--target', target, ...args]);
      const context = `${args.join(' ')}\n${describeRun(run)}`;
      expect(run.code, context).toBe(1);
      const failure = run.lines.at(-1)!;
      expect(failure, context).toMatchObject({ level: 'error', code: 'TARGET_MOUNT' });
      expect(failure.msg, context).toContain(`${at} is a separate mount inside it`);
      // No failure ever reaches the user without a code.
      for (const line of run.lines.filter((l) => l.level === 'error')) expect(line.code, context).toMatch(/^[A-Z_]+$/);
      expect(exactState(target), context).toBe(before);
      expect(controlEntries(target), context).toEqual([]);
      expect(listing(dest), context).toEqual(destBefore);
    }
    // Not wedged: once the mount is gone, the next restore works.
    unmount(at);
    const after = await cli(['restore', '--dest', dest, '--archive', 'latest', '--target', target]);
    expect(after.code, describeRun(after)).toBe(0);
    expect(fs.readFileSync(path.join(target, 'a/b/from-archive.txt'), 'utf8')).toBe('archive\n');
    expect(listing(target)).toEqual(['a', 'conf', 'top']);
  });

  it('a mount next to the target (not inside) is no obstacle', async () => {
    const { dest, target } = await scene();
    const sibling = await tempDir('sibling');
    mount(['-t', 'tmpfs', 'restore-test'], sibling);
    expect(mountsInside(target)).toEqual([]);
    const run = await cli(['restore', '--dest', dest, '--archive', 'latest', '--target', target]);
    expect(run.code, describeRun(run)).toBe(0);
  });
});
