import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { expect, test } from 'vitest';
import { IntegrityError } from '../../runner/errors.js';
import { copyArchive } from '../../runner/repository/copy.js';
import { LocalRepository } from '../../runner/repository/local.js';
import { manifestName, sha256Name } from '../../runner/store/naming.js';
import { useRgw } from '../helpers/rgw.js';
import { useTempDirs } from '../helpers/tree.js';
import { bucketSubject, publish, readAll, sha256 } from './support.js';

/** The off-site copy of a proven archive (directory → bucket) and the way back. */

const rgw = useRgw();
const tempDir = useTempDirs();
const MiB = 1024 * 1024;
const NAME = 'backup-20240101T000000Z.tar.zst';

test('directory → bucket → directory: same bytes, same sidecars, sha256 metadata set with the upload', async () => {
  const r = rgw();
  const local = new LocalRepository(await tempDir('local'));
  const data = await publish(local, NAME, randomBytes(19 * MiB));
  const bucket = await bucketSubject(r, 'offsite');
  const stored = await copyArchive(local, bucket.repo, NAME);
  expect(stored).toMatchObject({ name: NAME, size: data.length, sha256: sha256(data), location: `s3://${bucket.bucket}/offsite/${NAME}` });
  expect(await bucket.stored()).toEqual([NAME, manifestName(NAME), sha256Name(NAME)]);
  expect((await r.client().send(new HeadObjectCommand({ Bucket: bucket.bucket, Key: `offsite/${NAME}` }))).Metadata).toEqual({ sha256: sha256(data) });
  for (const sidecar of [sha256Name(NAME), manifestName(NAME)]) expect((await bucket.repo.readSmall(sidecar))!.equals((await local.readSmall(sidecar))!)).toBe(true);

  const back = new LocalRepository(await tempDir('back'));
  await copyArchive(bucket.repo, back, NAME);
  expect((await readAll(back, NAME)).equals(data)).toBe(true);
  expect(fs.readdirSync((back as LocalRepository).dir).sort()).toEqual([NAME, manifestName(NAME), sha256Name(NAME)]);
});

test('a source that does not match its checksum is not copied', async () => {
  const dir = await tempDir('local');
  const local = new LocalRepository(dir);
  const data = await publish(local, NAME, randomBytes(12 * MiB));
  const bad = Buffer.from(data);
  bad[9 * MiB] = bad[9 * MiB]! ^ 0x80;
  fs.writeFileSync(path.join(dir, NAME), bad);
  const bucket = await bucketSubject(rgw(), 'offsite');
  const failure = await copyArchive(local, bucket.repo, NAME).catch((e: unknown) => e);
  expect(failure).toBeInstanceOf(IntegrityError);
  expect((failure as Error).message).toMatch(/does not match its checksum .* nothing was copied to s3:\/\//);
  expect(await bucket.stored()).toEqual([]);
  expect(await bucket.unfinished()).toEqual([]);
});

test('an archive without its sidecars is not copied', async () => {
  const dir = await tempDir('local');
  fs.writeFileSync(path.join(dir, NAME), 'x');
  const bucket = await bucketSubject(rgw(), 'offsite');
  await expect(copyArchive(new LocalRepository(dir), bucket.repo, NAME)).rejects.toThrow(/has no backup-20240101T000000Z\.tar\.zst\.sha256; only verified archives are copied/);
});
