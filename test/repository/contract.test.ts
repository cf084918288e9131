import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { LockHeldError } from '../../runner/errors.js';
import { manifestName, sha256Name } from '../../runner/store/naming.js';
import { useRgw } from '../helpers/rgw.js';
import { useTempDirs } from '../helpers/tree.js';
import { type Subject, bucketSubject, feed, localSubject, publish, readAll, sha256 } from './support.js';

/**
 * The behaviour every repository must have, run against the backup directory and against a
 * real bucket (Ceph RGW). Where the two differ on purpose (an archive without its manifest),
 * the test says so.
 */

const rgw = useRgw();
const tempDir = useTempDirs();

const subjects: [string, () => Promise<Subject>][] = [
  ['directory', async () => localSubject(await tempDir('repo'))],
  ['bucket', () => bucketSubject(rgw())],
  ['bucket root', () => bucketSubject(rgw(), '')],
];

describe.each(subjects)('%s', (kind, make) => {
  test('lists archives of one prefix newest first: by the time in the name, then the same-second sequence (numerically)', async () => {
    const s = await make();
    const names = [
      'backup-20240101T000000Z.tar.gz',
      'backup-20240101T000000Z-2.tar.zst',
      'backup-20240101T000000Z-10.tar.gz',
      'backup-20240101T000000Z-9.tar',
      'backup-20231231T235959Z.tar.gz',
      'backup-20240102T000000Z.tar.gz',
    ];
    for (const n of names) await publish(s.repo, n);
    await publish(s.repo, 'backup-pre-restore-20250101T000000Z.tar.gz');
    const listing = await s.repo.list('backup');
    expect(listing.archives.map((a) => a.name)).toEqual([
      'backup-20240102T000000Z.tar.gz',
      'backup-20240101T000000Z-10.tar.gz',
      'backup-20240101T000000Z-9.tar',
      'backup-20240101T000000Z-2.tar.zst',
      'backup-20240101T000000Z.tar.gz',
      'backup-20231231T235959Z.tar.gz',
    ]);
    expect(listing.archives.every((a) => a.hasSha256 && a.hasManifest && a.size === 3000)).toBe(true);
    expect(listing.archives[2]!.compression).toBe('none');
    expect((await s.repo.list('backup-pre-restore')).archives.map((a) => a.name)).toEqual(['backup-pre-restore-20250101T000000Z.tar.gz']);
  });

  test('nothing is visible before commit; commit publishes the archive with its sidecars; the bytes read back', async () => {
    const s = await make();
    const name = 'app-20240301T101010Z.tar.zst';
    const data = randomBytes(20 * 1024 * 1024 + 12345); // more than two 8 MiB parts
    const sink = await s.repo.createArchive(name, { sizeHint: data.length });
    await feed(sink, data);
    expect(sink.bytes).toBe(data.length);
    expect((await s.repo.list('app')).archives).toEqual([]);
    expect(await s.repo.stat(name)).toBeUndefined();
    expect(await s.stored()).not.toContain(name);
    const stored = await sink.commit({ sha256: sha256(data), manifest: '{"format":1}\n' });
    expect(stored).toMatchObject({ name, size: data.length, sha256: sha256(data) });
    expect(await s.stored()).toEqual(expect.arrayContaining([name, sha256Name(name), manifestName(name)]));
    expect(await s.unfinished()).toEqual([]);
    expect((await s.repo.stat(name))?.size).toBe(data.length);
    const back = await readAll(s.repo, name);
    expect(back.equals(data)).toBe(true);
    expect((await s.repo.readSmall(sha256Name(name)))?.toString()).toBe(`${sha256(data)}  ${name}\n`);
    expect((await s.repo.readSmall(manifestName(name)))?.toString()).toBe('{"format":1}\n');
    expect(await s.repo.readSmall('app-20240301T101010Z.tar.zst.missing')).toBeUndefined();
  });

  test('abort discards everything written, and an archive name is never overwritten', async () => {
    const s = await make();
    const name = 'app-20240301T101010Z.tar.gz';
    const before = await s.stored();
    const sink = await s.repo.createArchive(name);
    await feed(sink, randomBytes(18 * 1024 * 1024));
    await sink.abort();
    await sink.abort(); // idempotent
    expect(await s.stored()).toEqual(before);
    expect(await s.unfinished()).toEqual([]);
    await publish(s.repo, name);
    await expect(s.repo.createArchive(name)).rejects.toThrow(/already exists/);
  });

  test(kind === 'directory' ? 'an archive without its manifest is listed as such' : 'an archive without its manifest object is never listed as valid', async () => {
    const s = await make();
    await publish(s.repo, 'backup-20240101T000000Z.tar.gz');
    await publish(s.repo, 'backup-20240102T000000Z.tar.gz');
    await s.repo.deleteFiles([manifestName('backup-20240102T000000Z.tar.gz')]);
    const listing = await s.repo.list('backup');
    if (kind === 'directory') {
      // As before the repository existed: a hand-placed or legacy archive stays visible, marked.
      expect(listing.archives.map((a) => [a.name, a.hasManifest])).toEqual([
        ['backup-20240102T000000Z.tar.gz', false],
        ['backup-20240101T000000Z.tar.gz', true],
      ]);
      expect(listing.incomplete).toEqual([]);
    } else {
      expect(listing.archives.map((a) => a.name)).toEqual(['backup-20240101T000000Z.tar.gz']);
      expect(listing.incomplete.map((a) => [a.name, a.hasSha256, a.hasManifest])).toEqual([['backup-20240102T000000Z.tar.gz', true, false]]);
    }
  });

  test('deletes an archive with its sidecars; foreign files, other prefixes and nested keys stay', async () => {
    const s = await make();
    await publish(s.repo, 'backup-20240101T000000Z.tar.gz');
    await publish(s.repo, 'backup-20240102T000000Z.tar.gz');
    await publish(s.repo, 'other-20240101T000000Z.tar.gz');
    const foreign = ['notes.txt', 'backup-latest.tar.gz', 'backup-20240101T000000Z.tar.gz.bak', 'backup-2024.tar.gz'];
    for (const f of foreign) await s.putRaw(f, 'not ours');
    const before = await s.stored();
    const outcome = await s.repo.deleteArchive('backup-20240101T000000Z.tar.gz');
    expect(outcome).toEqual({
      status: 'deleted',
      removed: ['backup-20240101T000000Z.tar.gz', 'backup-20240101T000000Z.tar.gz.sha256', 'backup-20240101T000000Z.tar.gz.manifest.json'],
    });
    const gone = new Set(outcome.removed);
    expect(await s.stored()).toEqual(before.filter((n) => !gone.has(n)));
    expect((await s.repo.list('backup')).archives.map((a) => a.name)).toEqual(['backup-20240102T000000Z.tar.gz']);
    expect((await s.repo.list('other')).archives).toHaveLength(1);
    // Deleting again is not an error: nothing is there to delete.
    expect(await s.repo.deleteArchive('backup-20240101T000000Z.tar.gz')).toEqual({ status: 'deleted', removed: expect.any(Array) });
  });

  test('lists sidecars whose archive is gone as orphans, and deletes them by name', async () => {
    const s = await make();
    await publish(s.repo, 'backup-20240101T000000Z.tar.gz');
    await s.putRaw('backup-20231201T000000Z.tar.gz.sha256', 'x');
    await s.putRaw('backup-20231202T000000Z.tar.zst.manifest.json', '{}');
    await s.putRaw('other-20231201T000000Z.tar.gz.sha256', 'x');
    await s.putRaw('random.sha256', 'x');
    const { orphans } = await s.repo.list('backup');
    expect(orphans).toEqual(['backup-20231201T000000Z.tar.gz.sha256', 'backup-20231202T000000Z.tar.zst.manifest.json']);
    const outcome = await s.repo.deleteFiles([...orphans, 'backup-19990101T000000Z.tar.gz.sha256']);
    expect(outcome.failed).toEqual([]);
    expect(outcome.removed).toEqual(expect.arrayContaining(orphans));
    expect((await s.repo.list('backup')).orphans).toEqual([]);
    expect(await s.stored()).toEqual(expect.arrayContaining(['other-20231201T000000Z.tar.gz.sha256', 'random.sha256']));
  });

  test('an encrypted archive: its info record and encrypted manifest are published, listed, deleted with it, and orphans when it is gone', async () => {
    const s = await make();
    const name = 'backup-20240101T000000Z.tar.zst.age';
    const data = randomBytes(5000);
    const sink = await s.repo.createArchive(name);
    await feed(sink, data);
    await sink.commit({ sha256: sha256(data), manifest: Buffer.from('age-encryption.org/v1 (sealed manifest)'), info: '{"encrypted":true}\n' });
    expect(await s.stored()).toEqual(
      expect.arrayContaining([name, `${name}.sha256`, 'backup-20240101T000000Z.manifest.json.age', 'backup-20240101T000000Z.info.json']),
    );
    const [listed] = (await s.repo.list('backup')).archives;
    expect(listed).toMatchObject({ name, encrypted: true, compression: 'zstd', hasSha256: true, hasManifest: true });
    expect((await s.repo.readSmall('backup-20240101T000000Z.info.json'))?.toString()).toBe('{"encrypted":true}\n');
    await s.putRaw('backup-20231201T000000Z.info.json', '{}');
    await s.putRaw('backup-20231201T000000Z.manifest.json.age', 'x');
    await s.putRaw('notes.info.json', 'not ours');
    expect((await s.repo.list('backup')).orphans).toEqual(['backup-20231201T000000Z.info.json', 'backup-20231201T000000Z.manifest.json.age']);
    const outcome = await s.repo.deleteArchive(name);
    expect(outcome).toEqual({ status: 'deleted', removed: [name, `${name}.sha256`, 'backup-20240101T000000Z.info.json', 'backup-20240101T000000Z.manifest.json.age'] });
  });

  test('removes what interrupted runs left, and nothing else', async () => {
    const s = await make();
    await s.leaveInterrupted('backup-20240101T000000Z.tar.gz');
    await s.leaveInterrupted('backup-20240101T000000Z.tar.gz.manifest.json');
    await s.leaveInterrupted('foreign-upload.bin');
    expect(await s.unfinished()).toHaveLength(3);
    const removed = await s.repo.removeLeftovers();
    expect(removed.length).toBe(kind === 'directory' ? 3 : 2);
    const left = await s.unfinished();
    if (kind === 'directory') expect(left).toEqual([]);
    else expect(left).toEqual([expect.stringMatching(/foreign-upload\.bin$/)]);
  });

  test('a sidecar can be written from a stream or a file, also one larger than a part', async () => {
    const s = await make();
    const dir = await tempDir('src');
    const big = randomBytes(9 * 1024 * 1024 + 7);
    const file = `${dir}/manifest.json`;
    (await import('node:fs')).writeFileSync(file, big);
    await s.repo.putSidecar('backup-20240101T000000Z.tar.gz.manifest.json', { file });
    expect((await s.repo.readSmall('backup-20240101T000000Z.tar.gz.manifest.json'))!.equals(big)).toBe(true);
    const { Readable } = await import('node:stream');
    await s.repo.putSidecar('backup-20240102T000000Z.tar.gz.manifest.json', { stream: Readable.from([big.subarray(0, 5), big.subarray(5)]) });
    expect(sha256((await s.repo.readSmall('backup-20240102T000000Z.tar.gz.manifest.json'))!)).toBe(sha256(big));
    expect(await s.unfinished()).toEqual([]);
  });

  test('a flipped byte in a stored archive is seen when reading it back', async () => {
    const s = await make();
    const name = 'backup-20240101T000000Z.tar';
    const data = await publish(s.repo, name, randomBytes(100_000));
    const expected = (await s.repo.readSmall(sha256Name(name)))!.toString().split(' ')[0];
    expect(sha256(await readAll(s.repo, name))).toBe(expected);
    const bad = Buffer.from(data);
    bad[54_321] = bad[54_321]! ^ 0x10;
    await s.putRaw(name, bad);
    const back = await readAll(s.repo, name);
    expect(back.length).toBe(data.length);
    expect(sha256(back)).not.toBe(expected);
  });

  test('one lock per repository: a second taker gets exit 4 until the first releases', async () => {
    const s = await make();
    const first = await s.repo.lock({ command: 'backup', staleSeconds: 600 });
    const held = await s.repo.lock({ command: 'prune', staleSeconds: 600 }).catch((e: unknown) => e);
    expect(held).toBeInstanceOf(LockHeldError);
    expect((held as Error).message).toMatch(/backup/);
    await first.release();
    const second = await s.repo.lock({ command: 'prune', staleSeconds: 600 });
    expect(second.lost).toBe(false);
    await second.release();
    expect((await s.stored()).filter((n) => n.includes('lock'))).toEqual([]);
  });
});
