import fs from 'node:fs';
import path from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, test } from 'vitest';
import { ageCli, ageKeygen } from '../helpers/age.js';
import { jsonLines, runCli } from '../helpers/cli.js';
import { type Rgw, useRgw } from '../helpers/rgw.js';
import { buildRichTree, isRoot, snapshotTree, useTempDirs } from '../helpers/tree.js';
import { listKeys } from '../repository/support.js';

/**
 * Encryption with the bucket, through the real CLI against a real Ceph RGW: a bucket-only
 * encrypted backup publishes the encrypted archive, its `.sha256`, the plain info record and the
 * encrypted manifest; verify and restore --remote need the identity for the full check.
 */

const rgw = useRgw();
const tmp = useTempDirs();
const json = ['--log-format', 'json'];

async function getObject(r: Rgw, bucket: string, key: string): Promise<Buffer> {
  const out = await r.client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

describe('encrypted archives in the bucket', () => {
  test('bucket-only backup, verify with and without the key, restore --remote with the key', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const remote = `s3://${bucket}/enc`;
    const source = await tmp('src');
    buildRichTree(source, { bigFileBytes: 3 * 1024 * 1024 });
    fs.writeFileSync(path.join(source, 'secret-plan-name.txt'), 'the plan\n');
    const key = ageKeygen();
    const identityFile = path.join(await tmp('keys'), 'key.txt');
    fs.writeFileSync(identityFile, key.file, { mode: 0o600 });

    const backup = await runCli(['backup', '--source', source, '--remote', remote, '--compression', 'zstd', '--age-recipient', key.recipient, ...json]);
    expect(backup.code, backup.stdout + backup.stderr).toBe(0);
    const name = jsonLines(backup.stdout).at(-1)!.archive as string;
    expect(name).toMatch(/\.tar\.zst\.age$/);
    const stem = name.replace(/\.tar\.zst\.age$/, '');
    expect(await listKeys(r.client(), bucket)).toEqual([`enc/${name}`, `enc/${name}.sha256`, `enc/${stem}.info.json`, `enc/${stem}.manifest.json.age`].sort());
    // No file name in plain text in the bucket: the manifest is encrypted, the info record names none.
    for (const object of [name, `${stem}.manifest.json.age`, `${stem}.info.json`]) {
      expect((await getObject(r, bucket, `enc/${object}`)).includes('secret-plan-name')).toBe(false);
    }
    // By hand: age -d of the object is the zstd archive.
    const plain = ageCli(['-d', '-i', identityFile], await getObject(r, bucket, `enc/${name}`));
    expect(plain.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe(true);

    const list = await runCli(['list', '--remote', remote, '--json']);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { name: string; encrypted: boolean }[]).map((a) => [a.name, a.encrypted])).toEqual([[name, true]]);

    const checksumOnly = await runCli(['verify', '--remote', remote, ...json]);
    expect(checksumOnly.code, checksumOnly.stdout + checksumOnly.stderr).toBe(0);
    expect(jsonLines(checksumOnly.stdout).some((l) => l.event === 'verify.checksum-only')).toBe(true);
    const full = await runCli(['verify', '--remote', remote, '--age-identity-file', identityFile, ...json]);
    expect(full.code, full.stdout + full.stderr).toBe(0);
    expect(jsonLines(full.stdout).some((l) => l.event === 'verify.ok' && l.archive === name)).toBe(true);

    const target = await tmp('target');
    const dest = await tmp('dest');
    const refused = await runCli(['restore', '--remote', remote, '--dest', dest, '--target', target, '--no-snapshot', ...json]);
    expect(refused.code).toBe(2);
    expect(fs.readdirSync(target)).toEqual([]);
    const restore = await runCli(['restore', '--remote', remote, '--dest', dest, '--target', target, '--no-snapshot', '--age-identity-file', identityFile, ...json]);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(snapshotTree(target, { owner: isRoot, root: false })).toEqual(snapshotTree(source, { owner: isRoot, root: false }));
  }, 180_000);
});
