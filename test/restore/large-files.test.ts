import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tool } from '../helpers/cli.js';
import { useMounts } from '../helpers/mounts.js';
import { isRoot, useTempDirs, xattrDump } from '../helpers/tree.js';
import { type RawEntry, cli, describe as describeRun, listing, treeState, writeArchive } from './support.js';

/**
 * Large files are written on the thread pool while the archive reader goes on, so when the next
 * entry arrives a large file's last writes are still in flight. Whatever names that path next
 * (a hard link to it, a later copy of it, a symlink in its place) must wait for them; the file's
 * own mode and mtime must come after its last byte; and a write that fails (a full volume) must
 * fail the restore as clearly as a synchronous one did.
 */

const tempDir = useTempDirs();
const mount = useMounts();
const MiB = 1024 * 1024;
const MTIME = 1_500_000_000;

function large(bytes = 3 * MiB + 17): Buffer {
  return randomBytes(bytes);
}

/**
 * A GNU tar archive (pax, xattrs, nanosecond mtimes) in which each large file is followed at once
 * by an entry that names it: a hard link to it, a later copy of it (small, then large; two later
 * copies), a symlink in its place. Built with `tar -r`, one append per step, as a user who adds to an archive would.
 * The earlier copies carry a user.* xattr and a nanosecond mtime, which are set by path after the
 * file is written: set too early, or on the later copy, they show.
 */
async function racingArchive(base: string): Promise<string> {
  const src = path.join(base, 'src');
  const archive = path.join(base, 'racing.tar');
  fs.mkdirSync(src);
  const put = (rel: string, data: Buffer | string, mode: number, mtime: string, xattr?: string) => {
    fs.writeFileSync(path.join(src, rel), data, { mode });
    fs.chmodSync(path.join(src, rel), mode);
    if (xattr) tool('setfattr', ['-n', 'user.copy', '-v', xattr, path.join(src, rel)]);
    tool('touch', ['-h', '-d', `@${mtime}`, path.join(src, rel)]);
  };
  const tar = (mode: '-cf' | '-rf', ...names: string[]) =>
    tool('tar', ['--format=posix', '--xattrs', '--xattrs-include=*', '--no-recursion', '-C', src, mode, archive, ...names]);

  put('big.bin', large(), 0o640, '1500000001.123456789', 'big');
  fs.linkSync(path.join(src, 'big.bin'), path.join(src, 'big-link.bin'));
  put('thrice.bin', large(), 0o600, '1500000010.1', 'first');
  tar('-cf', '.', './big.bin', './big-link.bin', './thrice.bin');

  // Two small copies right after the large one: both wait for it, and the third for the second.
  put('thrice.bin', 'the second copy\n', 0o640, '1500000011.2', 'second');
  tar('-rf', './thrice.bin');
  fs.rmSync(path.join(src, 'thrice.bin'));
  put('thrice.bin', 'the third copy wins\n', 0o644, '1500000012');
  put('twice.bin', large(), 0o600, '1500000002.000000001', 'first');
  tar('-rf', './thrice.bin', './twice.bin');

  fs.rmSync(path.join(src, 'twice.bin'));
  put('twice.bin', 'the later copy wins\n', 0o644, '1500000003');
  put('twice-large.bin', large(), 0o644, '1500000004.999999999', 'first');
  tar('-rf', './twice.bin', './twice-large.bin');

  fs.rmSync(path.join(src, 'twice-large.bin'));
  put('twice-large.bin', large(2 * MiB + 5), 0o604, '1500000005');
  put('becomes-link', large(), 0o644, '1500000006.5', 'first');
  tar('-rf', './twice-large.bin', './becomes-link');

  fs.rmSync(path.join(src, 'becomes-link'));
  fs.symlinkSync('big.bin', path.join(src, 'becomes-link'));
  fs.mkdirSync(path.join(src, 'sub'));
  put('sub/inner.bin', large(), 0o444, '1500000008.25', 'inner');
  put('last.bin', large(5 * MiB + 1), 0o4755, '1500000009.75');
  fs.chmodSync(path.join(src, 'sub'), 0o555);
  tool('touch', ['-d', '@1500000007', path.join(src, 'sub')]);
  tar('-rf', './becomes-link', './sub', './sub/inner.bin', './last.bin');
  return archive;
}

describe('large files written behind the reader', () => {
  it.each(['replace', 'merge'])('are whole, and what names them next waits for their last write (%s, compared with GNU tar)', async (mode) => {
    const base = await tempDir('large');
    const dest = path.join(base, 'dest');
    const ours = path.join(base, 'ours');
    const gnu = path.join(base, 'gnu');
    for (const dir of [dest, ours, gnu]) fs.mkdirSync(dir);
    const archive = await racingArchive(base);
    fs.renameSync(archive, path.join(dest, 'racing.tar'));

    const run = await cli(['restore', '--dest', dest, '--archive', 'racing.tar', '--target', ours, '--mode', mode, '--allow-unverified', '--no-snapshot']);
    expect(run.code, describeRun(run)).toBe(0);
    tool('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', path.join(dest, 'racing.tar'), '-C', gnu]);

    expect(treeState(ours)).toBe(treeState(gnu));
    expect(xattrDump(ours)).toBe(xattrDump(gnu));
    expect(fs.statSync(path.join(ours, 'big-link.bin')).ino).toBe(fs.statSync(path.join(ours, 'big.bin')).ino);
    expect(fs.statSync(path.join(ours, 'big.bin'), { bigint: true }).mtimeNs).toBe(1_500_000_001_123_456_789n);
    expect(fs.readFileSync(path.join(ours, 'twice.bin'), 'utf8')).toBe('the later copy wins\n');
    expect(fs.statSync(path.join(ours, 'twice-large.bin')).size).toBe(2 * MiB + 5);
    expect(fs.readFileSync(path.join(ours, 'thrice.bin'), 'utf8')).toBe('the third copy wins\n');
    expect(fs.readlinkSync(path.join(ours, 'becomes-link'))).toBe('big.bin');
    // Only the copies that kept their xattr have one (getfattr reads becomes-link's through to
    // big.bin): none went to a later copy of the same path.
    expect(xattrDump(ours).match(/^# file: .*$/gm)).toEqual(['# file: becomes-link', '# file: big-link.bin', '# file: big.bin', '# file: sub/inner.bin']);
    if (isRoot) expect(fs.statSync(path.join(ours, 'last.bin')).mode & 0o7777).toBe(0o4755);
    expect(listing(ours).filter((n) => n.startsWith('.pvc-backup'))).toEqual([]);
  });

  it.skipIf(!isRoot)('a large file that fills the volume part-way fails the restore with exit 1, and the target keeps its data (tmpfs)', async () => {
    const base = await tempDir('full');
    const dest = path.join(base, 'dest');
    const volume = path.join(base, 'volume');
    fs.mkdirSync(dest);
    fs.mkdirSync(volume);
    mount('tmpfs', volume, 'size=8m,mode=0755');
    const target = path.join(volume, 'target');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'current.txt'), 'the data of today\n');
    // 1500 files of 64 bytes take a page each on tmpfs (about 6 MiB) but count as 94 KiB in the
    // free-space estimate, so the 3 MiB file after them runs out of room while it is written.
    const entries: RawEntry[] = [];
    for (let i = 0; i < 1500; i++) entries.push({ path: `./d${i % 30}/f${i}.txt`, data: `${String(i).padStart(63, '0')}\n` });
    entries.push({ path: './big.bin', data: large() });
    const name = writeArchive(dest, 'fills.tar', entries);
    const before = treeState(target);

    const run = await cli(['restore', '--dest', dest, '--archive', name, '--target', target, '--allow-unverified', '--no-snapshot']);
    expect(run.code, describeRun(run)).toBe(1);
    const failure = run.lines.find((l) => l.level === 'error');
    expect(failure?.msg, describeRun(run)).toMatch(/the target volume is full: writing \.\/big\.bin \(3\.0 MiB\) failed after [\d.]+ (KiB|MiB) in 1500 files; free space or enlarge the volume$/);
    expect(treeState(target)).toBe(before);
    expect(listing(target)).toEqual(['current.txt']);
    expect(listing(volume)).toEqual(['target']);
  });
});
