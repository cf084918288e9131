import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs, writeTree } from '../helpers/tree.js';
import { type RawEntry, cli, controlEntries, describe as describeRun, listing, rootMtimeMs, treeState, writeArchive } from './support.js';

/**
 * Hand-crafted hostile archives: every one is refused with exit 3, nothing is written into the
 * target (byte-for-byte, its own mtime included), and nothing appears next to it. Each case runs
 * as a foreign archive (--allow-unverified: safety pre-pass), as a pvc-backup archive whose
 * sidecars describe it truthfully (replace: the single verify+extract pass into staging), and
 * in merge mode.
 */

const tempDir = useTempDirs();

interface Case {
  name: string;
  /** `base` is the directory holding DEST, the target and the sentinel; `escape` an absolute path next to the target. */
  entries: (escape: string) => RawEntry[];
  message: RegExp;
  /** Integrity checks may refuse these first (manifest types), so sidecar runs only expect exit 3. */
  sidecars?: boolean;
}

const cases: Case[] = [
  { name: 'absolute path', entries: (escape) => [{ path: './', type: 'Directory' }, { path: escape, data: 'pwned' }], message: /absolute path/ },
  { name: '.. component', entries: () => [{ path: './ok.txt', data: 'ok' }, { path: '../escaped.txt', data: 'pwned' }], message: /"\.\." component/ },
  { name: 'nested .. component', entries: () => [{ path: './a/', type: 'Directory' }, { path: './a/../../escaped.txt', data: 'pwned' }], message: /"\.\." component/ },
  { name: 'symlink escaping with ..', entries: () => [{ path: './up', type: 'SymbolicLink', linkpath: '../' }, { path: './up/escaped.txt', data: 'pwned' }], message: /points outside the target/ },
  { name: 'absolute symlink', entries: (escape) => [{ path: './abs', type: 'SymbolicLink', linkpath: path.dirname(escape) }, { path: './abs/escaped.txt', data: 'pwned' }], message: /absolute path/ },
  {
    name: 'symlink chain escaping',
    entries: () => [{ path: './d/', type: 'Directory' }, { path: './d/up', type: 'SymbolicLink', linkpath: '..' }, { path: './esc', type: 'SymbolicLink', linkpath: 'd/up/..' }],
    message: /outside the target/,
  },
  {
    name: 'symlink chain escaping, defined backwards',
    entries: () => [{ path: './esc', type: 'SymbolicLink', linkpath: 'd/up/..' }, { path: './d/', type: 'Directory' }, { path: './d/up', type: 'SymbolicLink', linkpath: '..' }],
    message: /through other symlinks of the archive points outside/,
  },
  { name: 'hard link outside (relative)', entries: () => [{ path: './h', type: 'Link', linkpath: '../sentinel.txt' }], message: /hard link to "\.\.\/sentinel\.txt", outside/ },
  { name: 'hard link outside (absolute)', entries: (escape) => [{ path: './h', type: 'Link', linkpath: path.join(path.dirname(escape), 'sentinel.txt') }], message: /hard link to .*outside/ },
  { name: 'hard link to a later entry', entries: () => [{ path: './h', type: 'Link', linkpath: './later' }, { path: './later', data: 'x' }], message: /not a regular file earlier/ },
  { name: 'character device', entries: () => [{ path: './ok.txt', data: 'ok' }, { path: './null', type: 'CharacterDevice', mode: 0o666 }], message: /character device/, sidecars: false },
  { name: 'block device', entries: () => [{ path: './sda', type: 'BlockDevice', mode: 0o660 }], message: /block device/, sidecars: false },
  { name: 'FIFO', entries: () => [{ path: './pipe', type: 'FIFO' }], message: /FIFO/, sidecars: false },
  {
    name: 'write through a symlink made by the archive',
    entries: () => [{ path: './sub/', type: 'Directory' }, { path: './link', type: 'SymbolicLink', linkpath: 'sub' }, { path: './link/planted.txt', data: 'x' }],
    message: /through the symlink \.\/link/,
  },
  {
    name: 'directory entry over a symlink',
    entries: () => [{ path: './link', type: 'SymbolicLink', linkpath: '.' }, { path: './link/', type: 'Directory' }, { path: './link/x', data: 'x' }],
    message: /would replace a symlink/,
  },
];

async function setup() {
  const base = await tempDir('hostile');
  const dest = path.join(base, 'dest');
  const target = path.join(base, 'target');
  fs.mkdirSync(dest);
  fs.mkdirSync(target);
  fs.writeFileSync(path.join(base, 'sentinel.txt'), 'outside the target\n');
  writeTree(target, { 'current.txt': 'the data of today\n', 'dir/inner.txt': 'inner\n', 'sub/': '' });
  fs.symlinkSync('current.txt', path.join(target, 'link-to-current'));
  return { base, dest, target, escape: path.join(base, 'escaped-abs.txt') };
}

type Variant = 'foreign-replace' | 'foreign-merge' | 'sidecars-replace' | 'sidecars-merge';

async function refused(c: Case, variant: Variant): Promise<void> {
  const { base, dest, target, escape } = await setup();
  const sidecars = variant.startsWith('sidecars');
  const name = sidecars ? 'backup-20200101T000000Z.tar' : 'hostile.tar.gz';
  writeArchive(dest, name, c.entries(escape), { sidecars });
  const before = treeState(target);
  const beforeMtime = rootMtimeMs(target);
  const around = listing(base);
  const destBefore = listing(dest);
  const args = ['restore', '--dest', dest, '--archive', name, '--target', target, '--mode', variant.endsWith('merge') ? 'merge' : 'replace'];
  if (!sidecars) args.push('--allow-unverified');
  const run = await cli(args);
  const context = `${c.name} (${variant})\n${describeRun(run)}`;
  expect(run.code, context).toBe(3);
  const error = run.lines.find((l) => l.level === 'error')?.msg ?? '';
  if (!sidecars || c.sidecars !== false) expect(error, context).toMatch(c.message);
  // One line that names the archive, then says why.
  expect(error.startsWith(`${name}: `), context).toBe(true);
  expect(error, context).toMatch(/^[^:]+: (refusing to restore|.*differs from the manifest)/);
  expect(treeState(target), context).toBe(before);
  expect(Math.abs(rootMtimeMs(target) - beforeMtime), context).toBeLessThanOrEqual(1);
  expect(controlEntries(target), context).toEqual([]);
  expect(listing(base), context).toEqual(around);
  expect(fs.existsSync(escape), context).toBe(false);
  expect(fs.readFileSync(path.join(base, 'sentinel.txt'), 'utf8')).toBe('outside the target\n');
  // No snapshot of a restore that never happened, no lock left behind.
  expect(listing(dest), context).toEqual(destBefore);
}

describe('hostile archives are refused (exit 3) and nothing is written', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const variants: Variant[] = ['foreign-replace', 'foreign-merge', 'sidecars-replace', 'sidecars-merge'];
      await Promise.all(variants.map((v) => refused(c, v)));
    });
  }

  it('a hostile dry run is refused too and prints no plan', async () => {
    const { dest, target } = await setup();
    writeArchive(dest, 'hostile.tar', [{ path: '../escaped.txt', data: 'x' }]);
    const run = await cli(['restore', '--dest', dest, '--archive', 'hostile.tar', '--target', target, '--dry-run', '--allow-unverified']);
    expect(run.code, describeRun(run)).toBe(3);
    expect(run.lines.some((l) => l.event.startsWith('restore.plan')), describeRun(run)).toBe(false);
  });
});

describe('odd but safe archives are restored', () => {
  it("inside links, link chains, implicit parents, duplicates (the later entry wins) and names like restore's own", async () => {
    const { base, dest, target } = await setup();
    const entries: RawEntry[] = [
      { path: './', type: 'Directory', mode: 0o750 },
      { path: './a/', type: 'Directory' },
      { path: './a/file.txt', data: 'first' },
      { path: './a/file.txt', data: 'second, longer' },
      { path: './a/hard', type: 'Link', linkpath: './a/file.txt' },
      { path: './a/rel', type: 'SymbolicLink', linkpath: '../b/../a/file.txt' },
      { path: './self', type: 'SymbolicLink', linkpath: '.' },
      { path: './dangling', type: 'SymbolicLink', linkpath: 'no/such/file' },
      { path: './deep/implicit/parents.txt', data: 'no directory entries above me' },
      { path: 'no-dot-prefix.txt', data: 'plain' },
      { path: './.pvc-backup-restore-evil/x', data: 'only a name: ordinary data' },
    ];
    writeArchive(dest, 'odd.tar', entries);
    const run = await cli(['restore', '--dest', dest, '--archive', 'odd.tar', '--target', target, '--allow-unverified', '--no-snapshot']);
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.lines.filter((l) => l.event === 'restore.unverified')).toHaveLength(1);
    expect(listing(target)).toEqual(['.pvc-backup-restore-evil', 'a', 'dangling', 'deep', 'no-dot-prefix.txt', 'self']);
    expect(fs.readFileSync(path.join(target, '.pvc-backup-restore-evil/x'), 'utf8')).toBe('only a name: ordinary data');
    expect(fs.readFileSync(path.join(target, 'a/file.txt'), 'utf8')).toBe('second, longer');
    expect(fs.statSync(path.join(target, 'a/hard')).ino).toBe(fs.statSync(path.join(target, 'a/file.txt')).ino);
    expect(fs.readlinkSync(path.join(target, 'a/rel'))).toBe('../b/../a/file.txt');
    expect(fs.readFileSync(path.join(target, 'deep/implicit/parents.txt'), 'utf8')).toBe('no directory entries above me');
    expect(fs.statSync(target).mode & 0o7777).toBe(0o750);
    expect(listing(base)).toEqual(['dest', 'sentinel.txt', 'target']);
  });
});
