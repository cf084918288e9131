import fs from 'node:fs';
import path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, test } from 'vitest';
import { compareNewestFirst, parseArchiveName } from '../../runner/store/naming.js';
import { archivesIn, jsonLines, runCli } from '../helpers/cli.js';
import { type Rgw, useRgw } from '../helpers/rgw.js';
import { buildRichTree, isRoot, snapshotTree, useTempDirs } from '../helpers/tree.js';
import { listKeys } from '../repository/support.js';

/**
 * The off-site flow through the real CLI (a child process) against a real Ceph RGW: both
 * backup layouts, list/verify/prune/restore --remote, damage in the bucket, clear errors.
 */

const rgw = useRgw();
const tmp = useTempDirs();

async function fixture(r: Rgw, keyPrefix = 'team/app') {
  const bucket = await r.bucket();
  const source = await tmp('src');
  buildRichTree(source, { bigFileBytes: 6 * 1024 * 1024 });
  return { bucket, remote: `s3://${bucket}/${keyPrefix}`, source, keyPrefix };
}

function last(stdout: string) {
  return jsonLines(stdout).at(-1)!;
}

async function getObject(r: Rgw, bucket: string, key: string): Promise<Buffer> {
  const out = await r.client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

const json = ['--log-format', 'json'];
const FAKETIME_LIB = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib']
  .map((dir) => path.join(dir, 'faketime/libfaketime.so.1'))
  .find((file) => fs.existsSync(file))!;

describe('bucket only (no --dest)', () => {
  test('backup streams into the bucket; list, verify and restore --remote use it; the restore equals the source', async () => {
    const r = rgw();
    const f = await fixture(r);
    const backup = await runCli(['backup', '--source', f.source, '--remote', f.remote, '--compression', 'zstd', ...json]);
    expect(backup.code, backup.stdout + backup.stderr).toBe(0);
    const done = last(backup.stdout);
    expect(done.event).toBe('backup.done');
    const name = done.archive as string;
    const keys = await listKeys(r.client(), f.bucket);
    expect(keys).toEqual([`${f.keyPrefix}/${name}`, `${f.keyPrefix}/${name}.manifest.json`, `${f.keyPrefix}/${name}.sha256`].sort());
    // By hand: the .sha256 object checks the archive object with sha256sum's format.
    const archive = await getObject(r, f.bucket, `${f.keyPrefix}/${name}`);
    const checksum = (await getObject(r, f.bucket, `${f.keyPrefix}/${name}.sha256`)).toString();
    expect(checksum).toBe(`${(await import('node:crypto')).createHash('sha256').update(archive).digest('hex')}  ${name}\n`);
    expect((await r.client().send(new ListMultipartUploadsCommand({ Bucket: f.bucket }))).Uploads ?? []).toEqual([]);

    const list = await runCli(['list', '--remote', f.remote, '--json']);
    expect(list.code, list.stderr).toBe(0);
    const rows = JSON.parse(list.stdout) as { name: string; verified: string }[];
    expect(rows.map((row) => [row.name, row.verified])).toEqual([[name, 'verified']]);

    const verify = await runCli(['verify', '--remote', f.remote, ...json]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(jsonLines(verify.stdout).some((l) => l.event === 'verify.ok' && l.archive === name)).toBe(true);

    const dest = await tmp('dest');
    const target = await tmp('target');
    const restore = await runCli(['restore', '--remote', f.remote, '--dest', dest, '--target', target, '--archive', 'latest', '--no-snapshot', ...json]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(snapshotTree(target, { owner: isRoot, root: false })).toEqual(snapshotTree(f.source, { owner: isRoot, root: false }));
    // Nothing of the archive's size was written to DEST: only what restore keeps there.
    expect(archivesIn(dest)).toEqual([]);
  }, 180_000);

  test('cat --remote: one file of an archive in the bucket, checked, on stdout; a missing path is exit 2', async () => {
    const r = rgw();
    const f = await fixture(r);
    fs.writeFileSync(path.join(f.source, 'cat-me.txt'), 'one file from the bucket\n');
    const backup = await runCli(['backup', '--source', f.source, '--remote', f.remote, '--compression', 'zstd', ...json]);
    expect(backup.code, backup.stderr).toBe(0);
    const cat = await runCli(['cat', '--remote', f.remote, 'latest', './cat-me.txt', ...json]);
    expect(cat.code, cat.stderr).toBe(0);
    expect(cat.stdout).toBe('one file from the bucket\n');
    expect(jsonLines(cat.stderr).find((l) => l.event === 'cat.checked')).toMatchObject({ path: './cat-me.txt', seeked: false });
    const missing = await runCli(['cat', '--remote', f.remote, 'latest', 'not-there.txt']);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe('');
  }, 180_000);

  test('restore --remote without --dest: the pre-restore snapshot goes to the bucket, the state to a private directory', async () => {
    const r = rgw();
    const f = await fixture(r);
    const backup = await runCli(['backup', '--source', f.source, '--remote', f.remote, ...json]);
    expect(backup.code, backup.stderr).toBe(0);
    const target = await tmp('target');
    fs.writeFileSync(path.join(target, 'current.txt'), 'the data before the restore\n');
    const state = await tmp('state');
    const restore = await runCli(['restore', '--remote', f.remote, '--target', target, ...json], { env: { TMPDIR: state } });
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(snapshotTree(target, { owner: isRoot, root: false })).toEqual(snapshotTree(f.source, { owner: isRoot, root: false }));
    const done = last(restore.stdout);
    expect(done.snapshot).toMatch(/^backup-pre-restore-\d{8}T\d{6}Z\.tar\.zst$/);
    const snapshots = await runCli(['list', '--remote', f.remote, '--prefix', 'backup-pre-restore', '--json']);
    expect((JSON.parse(snapshots.stdout) as { name: string; verified: string }[]).map((row) => [row.name, row.verified])).toEqual([[done.snapshot, 'verified']]);
    // What the restore records stays in its own directory, private to this user; nothing else was left there.
    const dir = path.join(state, 'pvc-backup-restore-state');
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(dir).filter((n) => !n.startsWith('.pvc-backup.lock'))).toEqual([]);
  }, 180_000);

  test('a flipped byte in the bucket object: verify --remote exits 3, restore --remote refuses and leaves the target alone', async () => {
    const r = rgw();
    const f = await fixture(r);
    const backup = await runCli(['backup', '--source', f.source, '--remote', f.remote, ...json]);
    expect(backup.code, backup.stderr).toBe(0);
    const name = last(backup.stdout).archive as string;
    const key = `${f.keyPrefix}/${name}`;
    const bytes = await getObject(r, f.bucket, key);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    const meta = (await r.client().send(new GetObjectCommand({ Bucket: f.bucket, Key: key }))).Metadata;
    await r.client().send(new PutObjectCommand({ Bucket: f.bucket, Key: key, Body: bytes, Metadata: meta }));

    const verify = await runCli(['verify', '--remote', f.remote]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(3);
    expect(verify.stderr + verify.stdout).toContain(name);

    const dest = await tmp('dest');
    const target = await tmp('target');
    fs.writeFileSync(path.join(target, 'keep.txt'), 'current data\n');
    const restore = await runCli(['restore', '--remote', f.remote, '--dest', dest, '--target', target, '--no-snapshot']);
    expect(restore.code, restore.stdout + restore.stderr).toBe(3);
    expect(fs.readdirSync(target)).toEqual(['keep.txt']);
    expect(fs.readFileSync(path.join(target, 'keep.txt'), 'utf8')).toBe('current data\n');
  }, 180_000);

  test('an archive whose manifest object was deleted is never latest, and list marks it', async () => {
    const r = rgw();
    const f = await fixture(r);
    const first = await runCli(['backup', '--source', f.source, '--remote', f.remote, ...json]);
    expect(first.code, first.stderr).toBe(0);
    const older = last(first.stdout).archive as string;
    const second = await runCli(['backup', '--source', f.source, '--remote', f.remote, ...json]);
    expect(second.code, second.stderr).toBe(0);
    const newer = last(second.stdout).archive as string;
    // Two backups can share a second: then the newer one is `…-2`, which sorts before `….tar.zst` as a plain string.
    expect(compareNewestFirst(parseArchiveName(newer)!, parseArchiveName(older)!)).toBeLessThan(0);
    await r.client().send(new DeleteObjectCommand({ Bucket: f.bucket, Key: `${f.keyPrefix}/${newer}.manifest.json` }));

    const list = await runCli(['list', '--remote', f.remote, '--json']);
    const rows = JSON.parse(list.stdout) as { name: string; verified: string }[];
    expect(rows.map((row) => [row.name, row.verified])).toEqual([
      [newer, 'no-manifest'],
      [older, 'verified'],
    ]);
    const verify = await runCli(['verify', '--remote', f.remote, ...json]);
    expect(verify.code, verify.stderr).toBe(0);
    expect(jsonLines(verify.stdout).filter((l) => l.event === 'verify.ok').map((l) => l.archive)).toEqual([older]);

    const dest = await tmp('dest');
    const target = await tmp('target');
    const restore = await runCli(['restore', '--remote', f.remote, '--dest', dest, '--target', target, '--no-snapshot', ...json]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(last(restore.stdout).archive).toBe(older);
  }, 180_000);

  test('prune --remote with same-second names: keep-last counts them in order; dry run deletes nothing; foreign keys stay', async () => {
    const r = rgw();
    const f = await fixture(r);
    // A clock frozen at one second (libfaketime; timers keep the real monotonic clock): every run gets the same name time.
    const frozen = new Date().toISOString().replace('T', ' ').slice(0, 19);
    const env = { LD_PRELOAD: FAKETIME_LIB, FAKETIME: frozen, FAKETIME_DONT_FAKE_MONOTONIC: '1', FAKETIME_NO_CACHE: '1' };
    const names: string[] = [];
    for (let i = 0; i < 3; i++) {
      const run = await runCli(['backup', '--source', f.source, '--remote', f.remote, ...json], { env });
      expect(run.code, run.stdout + run.stderr).toBe(0);
      names.push(last(run.stdout).archive as string);
    }
    expect(names.map((n) => n.replace(/^backup-\d{8}T\d{6}Z/, ''))).toEqual(['.tar.gz', '-2.tar.gz', '-3.tar.gz']);
    await r.client().send(new PutObjectCommand({ Bucket: f.bucket, Key: `${f.keyPrefix}/notes.txt`, Body: 'not ours' }));
    await r.client().send(new PutObjectCommand({ Bucket: f.bucket, Key: `${f.keyPrefix}/backup-20000101T000000Z.tar.gz.sha256`, Body: 'orphan' }));

    const dry = await runCli(['prune', '--remote', f.remote, '--keep-last', '1', '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    const plan = JSON.parse(dry.stdout) as { archives: { name: string; action: string }[] };
    expect(plan.archives.map((a) => [a.name, a.action])).toEqual([
      [names[2], 'keep'],
      [names[1], 'delete'],
      [names[0], 'delete'],
    ]);
    expect((await listKeys(r.client(), f.bucket)).length).toBe(3 * 3 + 2);

    const prune = await runCli(['prune', '--remote', f.remote, '--keep-last', '1', ...json]);
    expect(prune.code, prune.stdout + prune.stderr).toBe(0);
    expect(await listKeys(r.client(), f.bucket)).toEqual(
      [`${f.keyPrefix}/notes.txt`, `${f.keyPrefix}/${names[2]}`, `${f.keyPrefix}/${names[2]}.manifest.json`, `${f.keyPrefix}/${names[2]}.sha256`].sort(),
    );
  }, 240_000);
});

describe('retention refused by the store', () => {
  test('AccessDenied on delete (Object Lock, delete-less credentials) is a warning: the backup succeeds, the old archive stays', async () => {
    const r = rgw();
    const f = await fixture(r);
    const first = await runCli(['backup', '--source', f.source, '--remote', f.remote, ...json]);
    expect(first.code, first.stderr).toBe(0);
    const older = last(first.stdout).archive as string;
    await r.policy(f.bucket, [
      { Effect: 'Deny', Principal: { AWS: ['arn:aws:iam:::user/backup'] }, Action: ['s3:DeleteObject'], Resource: [`arn:aws:s3:::${f.bucket}/${f.keyPrefix}/backup-*`] },
    ]);
    const second = await runCli(['backup', '--source', f.source, '--remote', f.remote, '--keep-last', '1', ...json]);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    const lines = jsonLines(second.stdout);
    expect(lines.find((l) => l.event === 'prune.retained')).toMatchObject({ level: 'warn', archive: older });
    expect(lines.at(-1)!.event).toBe('backup.done');
    expect((await listKeys(r.client(), f.bucket)).filter((k) => k.endsWith(older))).toEqual([`${f.keyPrefix}/${older}`]);
  }, 180_000);
});

describe('directory and bucket (--dest and --remote)', () => {
  test('the archive is made in DEST, then copied; --remote-keep-last prunes the bucket on its own count', async () => {
    const r = rgw();
    const f = await fixture(r);
    const dest = await tmp('dest');
    const names: string[] = [];
    for (let i = 0; i < 3; i++) {
      const run = await runCli(['backup', '--source', f.source, '--dest', dest, '--remote', f.remote, '--keep-last', '3', '--remote-keep-last', '2', ...json]);
      expect(run.code, run.stdout + run.stderr).toBe(0);
      const lines = jsonLines(run.stdout);
      expect(lines.some((l) => l.event === 'offsite.done')).toBe(true);
      names.push(lines.find((l) => l.event === 'backup.done')!.archive as string);
    }
    expect(archivesIn(dest)).toEqual([...names].sort());
    const keys = (await listKeys(r.client(), f.bucket)).filter((k) => !k.endsWith('.sha256') && !k.endsWith('.manifest.json'));
    expect(keys).toEqual(names.slice(1).map((n) => `${f.keyPrefix}/${n}`).sort());
    // The copy is the same bytes as the file in DEST.
    expect((await getObject(r, f.bucket, `${f.keyPrefix}/${names[2]}`)).equals(fs.readFileSync(path.join(dest, names[2]!)))).toBe(true);
  }, 240_000);

  test('a failed upload (missing bucket) fails the run with exit 1 naming the bucket; the local archive stays', async () => {
    const r = rgw();
    const f = await fixture(r);
    const dest = await tmp('dest');
    const run = await runCli(['backup', '--source', f.source, '--dest', dest, '--remote', 's3://no-such-bucket-here/x']);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(run.stderr + run.stdout).toContain('no-such-bucket-here');
    const [archive] = archivesIn(dest);
    expect(archive).toBeDefined();
    const verify = await runCli(['verify', '--dest', dest]);
    expect(verify.code, verify.stderr).toBe(0);
  }, 180_000);
});

describe('errors', () => {
  test('wrong credentials and a missing bucket: one line naming the bucket, exit 1, nothing written', async () => {
    const r = rgw();
    const f = await fixture(r);
    const wrong = await runCli(['backup', '--source', f.source, '--remote', f.remote], { env: { AWS_SECRET_ACCESS_KEY: 'wrong-secret-0000000000000000000000000' } });
    expect(wrong.code, wrong.stdout + wrong.stderr).toBe(1);
    const wrongLine = wrong.stdout.trim().split('\n').at(-1)!;
    expect(wrongLine).toContain(f.bucket);
    expect(wrongLine).not.toContain('wrong-secret');
    const missing = await runCli(['list', '--remote', 's3://no-such-bucket-here/x']);
    expect(missing.code, missing.stdout + missing.stderr).toBe(1);
    expect(missing.stdout + missing.stderr).toContain('no-such-bucket-here');
    expect(await listKeys(r.client(), f.bucket)).toEqual([]);
  }, 120_000);

  test('usage errors: neither --dest nor --remote, a bad URL, an --s3-* flag without --remote', async () => {
    const source = await tmp('src');
    const neither = await runCli(['backup', '--source', source]);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain('--remote');
    const bad = await runCli(['list', '--remote', 'https://bucket/x']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('s3://BUCKET');
    const stray = await runCli(['list', '--dest', source, '--s3-region', 'eu-west-1']);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain('--s3-region applies only with --remote');
  }, 60_000);
});
