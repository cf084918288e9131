import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ContentHash } from '../../runner/archive/hash.js';
import { scanForHoles } from '../../runner/archive/sparse.js';
import { BYTES_PER_TURN } from '../../runner/archive/turns.js';
import { cliPath, jsonLines, runCli, shell, shq } from '../helpers/cli.js';
import { sha256File, useTempDirs, writeSparseFile } from '../helpers/tree.js';

/**
 * Holes longer than one slice of work (BYTES_PER_TURN) are hashed in turns of the event loop, so
 * that a huge sparse file does not stop lock heartbeats, progress and signal handlers (the lock
 * case is in test/faults/concurrency.test.ts). These tests prove that the content checksums stay
 * exactly those of `sha256sum`, with data before, between and after such holes.
 */

const tempDir = useTempDirs();
const MiB = 1024 * 1024;

describe('ContentHash.zeros', () => {
  it('hashes a run longer than a slice in turns of the event loop, to the same digest', async () => {
    const length = 3 * BYTES_PER_TURN + 5;
    const hash = new ContentHash();
    hash.update(Buffer.from('before the hole'));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const turns = hash.zeros(length);
    expect(turns).toBeInstanceOf(Promise);
    const ticksAtStart = ticks;
    await turns;
    clearInterval(timer);
    expect(ticks - ticksAtStart).toBeGreaterThanOrEqual(2);
    hash.update(Buffer.from('after the hole'));

    const expected = createHash('sha256').update('before the hole');
    for (let left = length; left > 0; left -= MiB) expected.update(Buffer.alloc(Math.min(left, MiB)));
    expect(hash.digest()).toBe(expected.update('after the hole').digest('hex'));
  });

  it('hashes a run of at most one slice at once', () => {
    const hash = new ContentHash();
    expect(hash.zeros(BYTES_PER_TURN)).toBeUndefined();
    const expected = createHash('sha256');
    for (let left = BYTES_PER_TURN; left > 0; left -= MiB) expected.update(Buffer.alloc(MiB));
    expect(hash.digest()).toBe(expected.digest('hex'));
  });
});

describe('scanForHoles', () => {
  it('lets timers run while it reads a large file, and finds its data', async () => {
    const file = path.join(await tempDir('scan'), 'image');
    writeSparseFile(file, 200 * MiB, [[150 * MiB, Buffer.alloc(8192, 7)]]);
    const fd = fs.openSync(file, 'r');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const extents = await scanForHoles(fd, 200 * MiB);
    clearInterval(timer);
    fs.closeSync(fd);
    expect(extents).toEqual([{ offset: 150 * MiB, length: 8192 }]);
    expect(ticks).toBeGreaterThanOrEqual(2);
  });
});

describe('sparse files with holes longer than a slice', () => {
  it('back up, verify, restore and cat to the bytes and checksums of sha256sum', async () => {
    const source = await tempDir('src');
    // Data before, between and after long holes, in the same stored stream: the piece after a
    // hole arrives in the same chunk as the one before it.
    writeSparseFile(path.join(source, 'vm.img'), 300 * MiB, [
      [0, randomBytes(MiB + 11)],
      [100 * MiB, randomBytes(300 * 1024)],
      [180 * MiB, randomBytes(4096)],
    ]);
    writeSparseFile(path.join(source, 'z-empty-start.img'), 90 * MiB, [[85 * MiB, randomBytes(5000)]]);
    fs.writeFileSync(path.join(source, 'zz-after.txt'), 'a plain file after the sparse ones\n');
    const dest = await tempDir('dest');
    const backup = await runCli(['backup', '--source', source, '--dest', dest, '--compression', 'zstd', '--log-format', 'json']);
    expect(backup.code, backup.stdout + backup.stderr).toBe(0);
    const name = jsonLines(backup.stdout).find((l) => l.event === 'backup.done')!.archive as string;

    const manifest = JSON.parse(fs.readFileSync(path.join(dest, `${name}.manifest.json`), 'utf8')) as { files: { path: string; sha256?: string }[] };
    for (const file of ['vm.img', 'z-empty-start.img', 'zz-after.txt']) {
      expect(manifest.files.find((f) => f.path === `./${file}`)?.sha256, file).toBe(sha256File(path.join(source, file)));
    }

    const verify = await runCli(['verify', '--dest', dest, '--log-format', 'json']);
    expect(verify.code, verify.stdout).toBe(0);

    const target = await tempDir('target');
    const restore = await runCli(['restore', '--dest', dest, '--archive', 'latest', '--target', target, '--log-format', 'json']);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    for (const file of ['vm.img', 'z-empty-start.img', 'zz-after.txt']) {
      expect(sha256File(path.join(target, file)), file).toBe(sha256File(path.join(source, file)));
    }
    // Restored as holes: about the data's allocation, not 300 MiB.
    expect(fs.statSync(path.join(target, 'vm.img')).blocks * 512).toBeLessThan(4 * MiB);

    const out = path.join(await tempDir('cat'), 'vm.img');
    shell(`${shq(process.execPath)} ${shq(cliPath)} cat --dest ${shq(dest)} latest ./vm.img > ${shq(out)}`);
    expect(sha256File(out)).toBe(sha256File(path.join(source, 'vm.img')));
  }, 60_000);

  it('a read that fails while a 32 GiB hole is being hashed ends the run at once, with exit 3', async () => {
    const source = await tempDir('src');
    writeSparseFile(path.join(source, 'disk.img'), 32 * 1024 * MiB, [[0, randomBytes(8192)]]);
    fs.writeFileSync(path.join(source, 'z-after.txt'), 'after the hole\n');
    const dest = await tempDir('dest');
    const backup = await runCli(['backup', '--source', source, '--dest', dest, '--compression', 'none', '--log-format', 'json'], { timeoutMs: 180_000 });
    expect(backup.code, backup.stdout + backup.stderr).toBe(0);
    const name = jsonLines(backup.stdout).find((l) => l.event === 'backup.done')!.archive as string;
    const manifest = JSON.parse(fs.readFileSync(path.join(dest, `${name}.manifest.json`), 'utf8')) as { files: { path: string; offset?: number }[] };
    // The header after the sparse file's data, in the same read: its name no longer matches its checksum.
    const header = manifest.files.find((f) => f.path === './z-after.txt')!.offset!;
    const fd = fs.openSync(path.join(dest, name), 'r+');
    fs.writeSync(fd, Buffer.from('X'), 0, 1, header + 3);
    fs.closeSync(fd);
    const started = Date.now();
    const verify = await runCli(['verify', '--dest', dest, '--log-format', 'json']);
    const seconds = (Date.now() - started) / 1000;
    expect(verify.code, verify.stdout).toBe(3);
    // Hashing the whole hole takes 16 s or more (SHA-256 here runs at about 1.7 GB/s).
    expect(seconds).toBeLessThan(8);
  }, 240_000);
});
