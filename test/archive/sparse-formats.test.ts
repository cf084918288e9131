import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readArchive } from '../../runner/archive/read.js';
import { SparseCursor } from '../../runner/archive/sparse.js';
import type { TarEntry } from '../../runner/archive/tar-reader.js';
import { runCli, tool } from '../helpers/cli.js';
import { useTempDirs } from '../helpers/tree.js';

/**
 * Every GNU tar sparse format is read back to the same content, with its holes: posix 1.0 (what
 * pvc-backup and `tar --sparse --format=posix` write), posix 0.0 and 0.1, and the old gnu format
 * (type S headers, `tar -S` with GNU tar's default format).
 */

const tempDir = useTempDirs();

async function sparseSource(): Promise<{ dir: string; sha256: string; blocks: number }> {
  const dir = await tempDir('sparse-src');
  const file = path.join(dir, 'disk.img');
  const fd = fs.openSync(file, 'w');
  // Six data regions, so the old gnu format needs an extension header (4 fit in the main one).
  for (let i = 0; i < 6; i++) fs.writeSync(fd, Buffer.alloc(8192, 0x41 + i), 0, 8192, i * 3 * 1024 * 1024);
  fs.ftruncateSync(fd, 24 * 1024 * 1024);
  fs.closeSync(fd);
  return { dir, sha256: createHash('sha256').update(fs.readFileSync(file)).digest('hex'), blocks: fs.statSync(file).blocks };
}

async function contentOf(archive: string): Promise<{ entry: TarEntry; sha256: string }> {
  let found: { entry: TarEntry; sha256: string } | undefined;
  await readArchive(archive, 'none', {
    entry(entry) {
      if (!entry.path.endsWith('disk.img')) return undefined;
      const hash = createHash('sha256');
      const cursor = entry.sparse ? new SparseCursor(entry.sparse, entry.size) : undefined;
      const zeros = (_at: number, n: number) => hash.update(Buffer.alloc(n));
      return {
        data: (chunk) => (cursor ? cursor.feed(chunk, (piece) => hash.update(piece), zeros) : hash.update(chunk)),
        end: () => {
          cursor?.finish(zeros);
          found = { entry, sha256: hash.digest('hex') };
        },
      };
    },
  });
  return found!;
}

describe.each([
  ['posix 1.0', ['--format=posix', '--sparse-version=1.0']],
  ['posix 0.1', ['--format=posix', '--sparse-version=0.1']],
  ['posix 0.0', ['--format=posix', '--sparse-version=0.0']],
  ['old gnu (type S)', ['--format=gnu']],
])('GNU tar sparse format %s', (_name, flags) => {
  it('reads the real name, size and extents, and restores the holes', async () => {
    const src = await sparseSource();
    const dest = await tempDir('dest');
    const archive = path.join(dest, 'sparse.tar');
    tool('tar', ['--sparse', ...flags, '-cf', archive, '-C', src.dir, '.']);
    const { entry, sha256 } = await contentOf(archive);
    expect(entry.path).toBe('./disk.img');
    expect(entry.size).toBe(24 * 1024 * 1024);
    expect(entry.sparse?.length).toBe(6);
    expect(entry.storedSize).toBe(6 * 8192);
    expect(sha256).toBe(src.sha256);
    const target = await tempDir('target');
    const run = await runCli(['restore', '--dest', dest, '--archive', 'sparse.tar', '--target', target, '--allow-unverified', '--no-snapshot']);
    expect(run.code, run.stdout).toBe(0);
    const restored = path.join(target, 'disk.img');
    expect(createHash('sha256').update(fs.readFileSync(restored)).digest('hex')).toBe(src.sha256);
    expect(fs.statSync(restored).blocks).toBeLessThanOrEqual(src.blocks + 16);
  });
});
