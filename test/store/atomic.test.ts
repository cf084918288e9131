import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fsyncDirectory, removeLeftoverPartials, writeFileAtomic } from '../../runner/store/atomic.js';
import { names, useTempDirs } from './support.js';

const tempDir = useTempDirs();

describe('writeFileAtomic', () => {
  it('writes the file under its final name and leaves no partial', async () => {
    const dir = await tempDir('atomic');
    await writeFileAtomic(dir, 'a.tar.gz.sha256', 'abc  a.tar.gz\n');
    expect(await readFile(path.join(dir, 'a.tar.gz.sha256'), 'utf8')).toBe('abc  a.tar.gz\n');
    expect(await names(dir)).toEqual(['a.tar.gz.sha256']);
  });

  it('replaces an existing file and writes binary data exactly', async () => {
    const dir = await tempDir('atomic');
    await writeFile(path.join(dir, 'm.json'), 'old content that is longer than the new one');
    const bytes = new Uint8Array([0, 1, 2, 255, 10]);
    await writeFileAtomic(dir, 'm.json', bytes);
    expect(new Uint8Array(await readFile(path.join(dir, 'm.json')))).toEqual(bytes);
    expect(await names(dir)).toEqual(['m.json']);
  });

  it('overwrites a leftover partial of the same name', async () => {
    const dir = await tempDir('atomic');
    await writeFile(path.join(dir, '.x.partial'), 'garbage from a killed run, longer than the data');
    await writeFileAtomic(dir, 'x', 'new');
    expect(await readFile(path.join(dir, 'x'), 'utf8')).toBe('new');
    expect(await names(dir)).toEqual(['x']);
  });

  it('removes its partial and rethrows when the rename fails', async () => {
    const dir = await tempDir('atomic');
    await mkdir(path.join(dir, 'taken'));
    await writeFile(path.join(dir, 'taken', 'inside'), 'x'); // a non-empty directory cannot be replaced by a file
    await expect(writeFileAtomic(dir, 'taken', 'data')).rejects.toThrow();
    expect(await names(dir)).toEqual(['taken']);
    expect((await stat(path.join(dir, 'taken'))).isDirectory()).toBe(true);
  });

  it('rejects names that are not plain file names', async () => {
    const dir = await tempDir('atomic');
    await expect(writeFileAtomic(dir, '../escape', 'x')).rejects.toThrow(/plain file name/);
    await expect(writeFileAtomic(dir, '', 'x')).rejects.toThrow(/plain file name/);
  });

  it('fails on a missing directory', async () => {
    const dir = await tempDir('atomic');
    await expect(writeFileAtomic(path.join(dir, 'missing'), 'x', 'data')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('fsyncDirectory', () => {
  it('syncs an existing directory and fails on a missing one', async () => {
    const dir = await tempDir('atomic');
    await expect(fsyncDirectory(dir)).resolves.toBeUndefined();
    await expect(fsyncDirectory(path.join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('removeLeftoverPartials', () => {
  it('removes only hidden .partial files and returns their names', async () => {
    const dir = await tempDir('atomic');
    const partials = ['.backup-20260101T000000Z.tar.gz.partial', '.backup-20260101T000000Z.tar.gz.sha256.partial', '.m.json.partial'];
    const keep = ['backup-20260101T000000Z.tar.gz', 'notes.partial', '.hidden', '.partial', 'x.partial.txt', '.pvc-backup.lock'];
    for (const name of [...partials, ...keep]) await writeFile(path.join(dir, name), 'x');
    await mkdir(path.join(dir, '.staging.partial')); // a directory is not a leftover file
    const removed = await removeLeftoverPartials(dir);
    expect(removed).toEqual([...partials].sort());
    expect(await names(dir)).toEqual([...keep, '.staging.partial'].sort());
  });

  it('returns an empty list when there is nothing to remove', async () => {
    const dir = await tempDir('atomic');
    expect(await removeLeftoverPartials(dir)).toEqual([]);
  });
});
