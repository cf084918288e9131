import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tool } from '../helpers/cli.js';
import { buildRichTree, snapshotTree, useTempDirs, writeTree } from '../helpers/tree.js';
import { cli, controlEntries, describe as describeRun, listing, rootMtimeMs, treeState } from './support.js';

/**
 * Damaged archives and archives made by other tools: a restore verifies before anything in the
 * target changes, so every integrity failure exits 3 with the target byte-for-byte as it was
 * (its own mtime included) and no snapshot in DEST.
 */

const tempDir = useTempDirs();
const fixtures = useTempDirs('file');

let source: string;
let pristine: string;
let gz: string;
let zst: string;

beforeAll(async () => {
  source = await fixtures('src');
  pristine = await fixtures('pristine');
  buildRichTree(source, { bigFileBytes: 2 * 1024 * 1024 });
  for (const compression of ['gzip', 'zstd']) {
    const run = await cli(['backup', '--source', source, '--dest', pristine, '--compression', compression]);
    expect(run.code, describeRun(run)).toBe(0);
  }
  gz = listing(pristine).find((n) => n.endsWith('.tar.gz'))!;
  zst = listing(pristine).find((n) => n.endsWith('.tar.zst'))!;
});

/** A DEST holding copies of the pristine archives (to damage), and a target with today's data. */
async function scene() {
  const dest = await tempDir('dest');
  for (const name of listing(pristine)) fs.copyFileSync(path.join(pristine, name), path.join(dest, name));
  const target = await tempDir('target');
  writeTree(target, { 'today.txt': 'the data of today\n', 'dir/notes.md': '# notes\n', 'hello.txt': 'hello, today\n' });
  return { dest, target };
}

async function expectUntouched(dest: string, target: string, args: string[], message: RegExp) {
  const before = treeState(target);
  const mtime = rootMtimeMs(target);
  const destBefore = listing(dest);
  for (const mode of ['replace', 'merge']) {
    const run = await cli(['restore', '--dest', dest, '--target', target, '--mode', mode, ...args]);
    const context = `${mode}\n${describeRun(run)}`;
    expect(run.code, context).toBe(3);
    const error = run.lines.find((l) => l.level === 'error')?.msg;
    expect(error, context).toMatch(message);
    // The failure names the archive, and no line claims a verification that failed.
    const archive = args.includes('--archive') ? args[args.indexOf('--archive') + 1]! : undefined;
    if (archive) expect(error, context).toContain(archive);
    expect(run.lines.filter((l) => l.verified === true).map((l) => l.event), context).toEqual([]);
    expect(treeState(target), context).toBe(before);
    expect(Math.abs(rootMtimeMs(target) - mtime), context).toBeLessThanOrEqual(1);
    expect(controlEntries(target), context).toEqual([]);
    expect(listing(dest), context).toEqual(destBefore);
  }
}

function damage(file: string, at: number): void {
  const fd = fs.openSync(file, 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, at);
  byte[0] = byte[0]! ^ 0x5a;
  fs.writeSync(fd, byte, 0, 1, at);
  fs.closeSync(fd);
}

describe('a damaged archive leaves the target untouched (exit 3)', () => {
  it.each([
    ['gzip', () => gz],
    ['zstd', () => zst],
  ])('one flipped byte in the middle (%s)', async (_c, name) => {
    const { dest, target } = await scene();
    const file = path.join(dest, name());
    damage(file, Math.floor(fs.statSync(file).size / 2));
    await expectUntouched(dest, target, ['--archive', name()], /corrupt|checksum|damaged|does not match/);
  });

  it.each([
    ['gzip', () => gz],
    ['zstd', () => zst],
  ])('truncated (%s)', async (_c, name) => {
    const { dest, target } = await scene();
    const file = path.join(dest, name());
    fs.truncateSync(file, Math.floor(fs.statSync(file).size * 0.7));
    await expectUntouched(dest, target, ['--archive', name()], /truncated|corrupt|unexpected end|checksum/);
  });

  it('a flipped byte in the last compressed bytes (the damaged tail)', async () => {
    const { dest, target } = await scene();
    const file = path.join(dest, gz);
    damage(file, fs.statSync(file).size - 12);
    await expectUntouched(dest, target, ['--archive', gz], /corrupt|checksum|damaged/);
  });

  it('a manifest that disagrees with the content', async () => {
    const { dest, target } = await scene();
    const manifestFile = path.join(dest, `${zst}.manifest.json`);
    const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as { files: { path: string; sha256?: string }[] };
    const entry = manifest.files.find((f) => f.path === './hello.txt')!;
    entry.sha256 = '0'.repeat(64);
    fs.writeFileSync(manifestFile, JSON.stringify(manifest));
    await expectUntouched(dest, target, ['--archive', zst], /hello\.txt does not match its checksum/);
  });

  it('a checksum file that disagrees', async () => {
    const { dest, target } = await scene();
    fs.writeFileSync(path.join(dest, `${gz}.sha256`), `${'1'.repeat(64)}  ${gz}\n`);
    await expectUntouched(dest, target, ['--archive', gz], /checksum mismatch/);
  });
});

describe('archives without sidecars', () => {
  it('are refused without --allow-unverified, with a message that names the flag', async () => {
    const { dest, target } = await scene();
    fs.rmSync(path.join(dest, `${gz}.manifest.json`));
    await expectUntouched(dest, target, ['--archive', gz], /--allow-unverified/);
  });

  it('a plain `tar czf` archive is restored with --allow-unverified and a warning', async () => {
    const { dest, target } = await scene();
    tool('tar', ['czf', path.join(dest, 'cronjob-2024-01-01.tar.gz'), '-C', source, '.']);
    await expectUntouched(dest, target, ['--archive', 'cronjob-2024-01-01.tar.gz'], /cannot be verified.*--allow-unverified/);
    const run = await cli(['restore', '--dest', dest, '--target', target, '--archive', 'cronjob-2024-01-01.tar.gz', '--allow-unverified']);
    expect(run.code, describeRun(run)).toBe(0);
    expect(run.lines.filter((l) => l.event === 'restore.unverified')).toHaveLength(1);
    expect(run.lines.find((l) => l.event === 'restore.unverified')!.level).toBe('warn');
    expect(snapshotTree(target, { owner: true })).toEqual(snapshotTree(source, { owner: true }));
    expect(controlEntries(target)).toEqual([]);
  });

  it('a foreign archive whose name lies about its compression is sniffed', async () => {
    const { dest, target } = await scene();
    tool('sh', ['-c', `tar cf - -C '${source}' . | zstd -q -c > '${path.join(dest, 'mislabeled.tar.gz')}'`]);
    const run = await cli(['restore', '--dest', dest, '--target', target, '--archive', 'mislabeled.tar.gz', '--allow-unverified', '--no-snapshot']);
    expect(run.code, describeRun(run)).toBe(0);
    expect(snapshotTree(target)).toEqual(snapshotTree(source));
  });

  it.each(['replace', 'merge'])('a truncated foreign archive fails (%s) and leaves the target untouched', async (mode) => {
    const { dest, target } = await scene();
    const file = path.join(dest, 'cut.tar');
    tool('tar', ['cf', file, '-C', source, '.']);
    // Cut at a header boundary: decompression cannot notice, only the missing end-of-archive marker.
    const cut = tool('sh', ['-c', `tar tvf '${file}' --block-number | tail -3 | head -1 | sed 's/^block \\([0-9]*\\):.*/\\1/'`]).toString().trim();
    fs.truncateSync(file, Number(cut) * 512);
    const before = treeState(target);
    const run = await cli(['restore', '--dest', dest, '--target', target, '--archive', 'cut.tar', '--allow-unverified', '--mode', mode]);
    expect(run.code, describeRun(run)).toBe(3);
    expect(run.lines.find((l) => l.level === 'error')?.msg).toMatch(/truncated/);
    expect(treeState(target)).toBe(before);
  });
});
