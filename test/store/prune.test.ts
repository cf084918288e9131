import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { deleteArchive, findOrphanedSidecars, removeFiles } from '../../runner/store/prune.js';
import { makeArchive, names, useTempDirs } from './support.js';

const tempDir = useTempDirs();
const A = 'backup-20260101T000000Z.tar.gz';

describe('deleteArchive', () => {
  it('deletes the archive and both sidecars and returns what it removed, archive first', async () => {
    const dir = await tempDir('prune');
    await makeArchive(dir, A);
    await makeArchive(dir, 'backup-20260102T000000Z.tar.gz');
    expect(await deleteArchive(dir, A)).toEqual([A, `${A}.sha256`, `${A}.manifest.json`]);
    expect(await names(dir)).toEqual(['backup-20260102T000000Z.tar.gz', 'backup-20260102T000000Z.tar.gz.manifest.json', 'backup-20260102T000000Z.tar.gz.sha256']);
  });

  it('tolerates missing files (an orphaned sidecar, a missing manifest)', async () => {
    const dir = await tempDir('prune');
    await writeFile(path.join(dir, `${A}.sha256`), 'x');
    expect(await deleteArchive(dir, A)).toEqual([`${A}.sha256`]);
    expect(await names(dir)).toEqual([]);
  });

  it('has already deleted the archive when a sidecar cannot be deleted (never an archive without its checksum)', async () => {
    const dir = await tempDir('prune');
    await makeArchive(dir, A, { sha256: false });
    await mkdir(path.join(dir, `${A}.sha256`)); // unlink fails on a directory
    await writeFile(path.join(dir, `${A}.sha256`, 'x'), 'x');
    await expect(deleteArchive(dir, A)).rejects.toThrow();
    expect(await names(dir)).toEqual([`${A}.manifest.json`, `${A}.sha256`]);
  });
});

describe('findOrphanedSidecars', () => {
  it('finds sidecars of this prefix whose archive is gone, and nothing else', async () => {
    const dir = await tempDir('prune');
    await makeArchive(dir, A);
    for (const name of [
      'backup-20260102T000000Z.tar.gz.sha256',
      'backup-20260103T000000Z-2.tar.zst.manifest.json',
      'backup-pre-restore-20260104T000000Z.tar.gz.sha256', // other prefix
      'other-20260104T000000Z.tar.gz.sha256', // other prefix
      'notes.sha256', // not the pattern
      'backup-latest.tar.gz.manifest.json', // not the pattern
    ]) {
      await writeFile(path.join(dir, name), 'x');
    }
    await mkdir(path.join(dir, 'backup-20260105T000000Z.tar.gz.sha256')); // not a regular file
    expect(await findOrphanedSidecars(dir, 'backup')).toEqual(['backup-20260102T000000Z.tar.gz.sha256', 'backup-20260103T000000Z-2.tar.zst.manifest.json']);
    expect(await findOrphanedSidecars(dir, 'backup-pre-restore')).toEqual(['backup-pre-restore-20260104T000000Z.tar.gz.sha256']);
  });
});

describe('removeFiles', () => {
  it('removes the named files, skips ones already gone, and reports ones it cannot remove', async () => {
    const dir = await tempDir('prune');
    await writeFile(path.join(dir, 'a'), 'x');
    await writeFile(path.join(dir, 'b'), 'x');
    await mkdir(path.join(dir, 'd'));
    await writeFile(path.join(dir, 'd', 'x'), 'x');
    const outcome = await removeFiles(dir, ['a', 'missing', 'd']);
    expect(outcome.removed).toEqual(['a']);
    expect(outcome.failed.map((f) => f.name)).toEqual(['d']);
    expect(await names(dir)).toEqual(['b', 'd']);
  });
});
