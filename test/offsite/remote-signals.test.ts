import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { describe, expect, test } from 'vitest';
import { cleanEnv, jsonLines, repoRoot, runCli } from '../helpers/cli.js';
import { startJsonChild } from '../helpers/child.js';
import { type Rgw, useRgw } from '../helpers/rgw.js';
import { useTempDirs } from '../helpers/tree.js';
import { listKeys } from '../repository/support.js';

/**
 * A bucket upload stopped mid-way by a real signal, through the real CLI: SIGTERM aborts the
 * multipart upload before the process exits 143; after SIGKILL nothing is visible either, and
 * the next run aborts the upload the killed one left.
 */

const rgw = useRgw();
const tmp = useTempDirs();
const MiB = 1024 * 1024;
const cli = path.join(repoRoot, 'runner/cli.ts');

async function bigSource(): Promise<string> {
  const source = await tmp('src');
  // Incompressible, so the upload takes a few seconds even on a quiet machine.
  for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(source, `part-${i}.bin`), randomBytes(40 * MiB));
  return source;
}

async function uploads(r: Rgw, bucket: string) {
  return (await r.client().send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
}

function startBackup(r: Rgw, source: string, remote: string, dest?: string) {
  const args = ['backup', '--source', source, '--remote', remote, '--compression', 'none', '--log-format', 'json', '--progress-interval', '1s'];
  if (dest) args.push('--dest', dest);
  return startJsonChild(cli, args, { env: cleanEnv(r.env()) });
}

/** Waits until the child has sent some of the archive (a progress line past the first part). */
async function midUpload(child: ReturnType<typeof startBackup>): Promise<void> {
  for (;;) {
    const line = await child.next('backup.progress', 'offsite.start');
    if (line.event === 'offsite.start' || (line.bytes as number) > 12 * MiB) return;
  }
}

describe('signals during a bucket upload', () => {
  test('SIGTERM: the upload is aborted before the run exits 143; no object, no multipart upload left', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const source = await bigSource();
    const child = startBackup(r, source, `s3://${bucket}/p`);
    await midUpload(child);
    expect(await uploads(r, bucket)).toHaveLength(1);
    child.proc.kill('SIGTERM');
    await child.exited;
    expect(child.proc.signalCode ?? child.proc.exitCode).toMatch(/^(SIGTERM|143)$/);
    expect(child.events.some((e) => e.event === 'stopped')).toBe(true);
    expect(await uploads(r, bucket)).toEqual([]);
    expect(await listKeys(r.client(), bucket)).toEqual([]);
  }, 180_000);

  test('SIGKILL: nothing is visible; the next run aborts the leftover upload and succeeds', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const source = await bigSource();
    const child = startBackup(r, source, `s3://${bucket}/p`);
    await midUpload(child);
    child.proc.kill('SIGKILL');
    await child.exited;
    expect(await uploads(r, bucket)).toHaveLength(1);
    // The killed run's lock stays until it is stale.
    expect((await listKeys(r.client(), bucket)).filter((k) => !k.includes('.pvc-backup.lock'))).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const next = await runCli(['backup', '--source', source, '--remote', `s3://${bucket}/p`, '--compression', 'none', '--lock-stale-after', '2s', '--log-format', 'json'], {
      timeoutMs: 170_000,
    });
    expect(next.code, next.stdout + next.stderr).toBe(0);
    const lines = jsonLines(next.stdout);
    expect(lines.some((l) => l.event === 'offsite.leftover-removed')).toBe(true);
    expect(await uploads(r, bucket)).toEqual([]);
    const name = lines.at(-1)!.archive as string;
    expect(await listKeys(r.client(), bucket)).toEqual([`p/${name}`, `p/${name}.manifest.json`, `p/${name}.sha256`]);
  }, 240_000);

  test('SIGTERM during the off-site copy (--dest and --remote): the local archive stays, the upload is aborted', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const source = await bigSource();
    const dest = await tmp('dest');
    const child = startBackup(r, source, `s3://${bucket}/p`, dest);
    await child.next('offsite.start');
    // Let the first parts go out.
    for (let i = 0; i < 50 && (await uploads(r, bucket)).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    child.proc.kill('SIGTERM');
    await child.exited;
    expect(await uploads(r, bucket)).toEqual([]);
    expect((await listKeys(r.client(), bucket)).filter((k) => !k.includes('.pvc-backup.lock'))).toEqual([]);
    const local = fs.readdirSync(dest).filter((n) => /\.tar$/.test(n));
    expect(local).toHaveLength(1);
    const verify = await runCli(['verify', '--dest', dest]);
    expect(verify.code, verify.stderr).toBe(0);
  }, 240_000);
});
